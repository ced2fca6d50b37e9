"""The files the kubelet manages for a pod's containers: /etc/hosts (upstream's
managedHostsFileContent, hostAliases) and /etc/resolv.conf by dnsPolicy (upstream's
pkg/kubelet/network/dns: ClusterFirst, ClusterFirstWithHostNet, Default, None +
dnsConfig)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Obj = dict[str, Any]

MAX_NAMESERVERS = 3
MAX_SEARCH = 32


def pod_hostname(pod: Obj) -> str:
    """spec.hostname, else the pod's name (at most 63 characters, no trailing '-' or
    '.', as upstream's GeneratePodHostNameAndDomain)."""
    spec = pod.get("spec") or {}
    name = spec.get("hostname") or (pod.get("metadata") or {}).get("name", "")
    if len(name) > 63:
        name = name[:63].rstrip("-.")
    return name


def pod_domain(pod: Obj, cluster_domain: str) -> str:
    spec = pod.get("spec") or {}
    sub = spec.get("subdomain")
    if not sub:
        return ""
    ns = (pod.get("metadata") or {}).get("namespace", "default")
    return f"{sub}.{ns}.svc.{cluster_domain}"


def hosts_file(pod: Obj, pod_ips: list[str], cluster_domain: str = "cluster.local",
               host_hosts: str | None = None) -> str:
    """/etc/hosts of the pod's containers. hostNetwork pods get the node's own file."""
    spec = pod.get("spec") or {}
    if spec.get("hostNetwork") and host_hosts is not None:
        out = host_hosts if host_hosts.endswith("\n") or not host_hosts else host_hosts + "\n"
    else:
        lines = ["# Kubernetes-managed hosts file.",
                 "127.0.0.1\tlocalhost",
                 "::1\tlocalhost ip6-localhost ip6-loopback",
                 "fe00::0\tip6-localnet",
                 "fe00::0\tip6-mcastprefix",
                 "fe00::1\tip6-allnodes",
                 "fe00::2\tip6-allrouters"]
        hostname = pod_hostname(pod)
        domain = pod_domain(pod, cluster_domain)
        for ip in pod_ips:
            if domain:
                lines.append(f"{ip}\t{hostname}.{domain}\t{hostname}")
            else:
                lines.append(f"{ip}\t{hostname}")
        out = "\n".join(lines) + "\n"
    aliases = spec.get("hostAliases") or []
    if aliases:
        out += "\n# Entries added by HostAliases.\n"
        for a in aliases:
            names = a.get("hostnames") or []
            if a.get("ip") and names:
                out += f"{a['ip']}\t" + "\t".join(names) + "\n"
    return out


@dataclass
class ResolvConf:
    nameservers: list[str] = field(default_factory=list)
    searches: list[str] = field(default_factory=list)
    options: list[str] = field(default_factory=list)

    def render(self) -> str:
        out = [f"nameserver {n}" for n in self.nameservers[:MAX_NAMESERVERS]]
        if self.searches:
            out.append("search " + " ".join(self.searches[:MAX_SEARCH]))
        if self.options:
            out.append("options " + " ".join(self.options))
        return "\n".join(out) + "\n"


def parse_resolv_conf(text: str) -> ResolvConf:
    rc = ResolvConf()
    for line in text.splitlines():
        parts = line.split("#", 1)[0].split()
        if not parts:
            continue
        if parts[0] == "nameserver" and len(parts) > 1:
            rc.nameservers.append(parts[1])
        elif parts[0] in ("search", "domain"):
            rc.searches = parts[1:]
        elif parts[0] == "options":
            rc.options.extend(parts[1:])
    return rc


def _merge_options(base: list[str], extra: list[Obj]) -> list[str]:
    out: dict[str, str] = {}
    for o in base:
        k, sep, v = o.partition(":")
        out[k] = o
    for o in extra:
        name = o.get("name")
        if name:
            out[name] = f"{name}:{o['value']}" if o.get("value") is not None else name
    return list(out.values())


def dns_policy(pod: Obj, cluster_dns: list[str]) -> tuple[str, str | None]:
    """(effective policy, MissingClusterDNS message or None)."""
    spec = pod.get("spec") or {}
    policy = spec.get("dnsPolicy") or "ClusterFirst"
    host_net = bool(spec.get("hostNetwork"))
    if policy == "ClusterFirstWithHostNet":
        policy = "ClusterFirst"
    elif policy == "ClusterFirst" and host_net:
        policy = "Default"
    if policy == "ClusterFirst" and not cluster_dns:
        md = pod.get("metadata") or {}
        msg = (f'pod: "{md.get("name")}_{md.get("namespace")}({md.get("uid")})". kubelet does '
               f'not have ClusterDNS IP configured and cannot create Pod using "ClusterFirst" '
               f'policy. Falling back to "Default" policy.')
        return "Default", msg
    return policy, None


def resolv_conf(pod: Obj, cluster_dns: list[str], cluster_domain: str,
                host_resolv: str) -> tuple[str, str | None]:
    """(resolv.conf text, MissingClusterDNS warning or None)."""
    policy, warning = dns_policy(pod, cluster_dns)
    host = parse_resolv_conf(host_resolv)
    if policy == "None":
        rc = ResolvConf()
    elif policy == "ClusterFirst":
        ns = (pod.get("metadata") or {}).get("namespace", "default")
        d = cluster_domain
        rc = ResolvConf(list(cluster_dns), [f"{ns}.svc.{d}", f"svc.{d}", d] + host.searches,
                        ["ndots:5"])
    else:   # Default: the node's resolver configuration
        rc = host
    cfg = (pod.get("spec") or {}).get("dnsConfig") or {}
    for n in cfg.get("nameservers") or []:
        if n not in rc.nameservers:
            rc.nameservers.append(n)
    for s in cfg.get("searches") or []:
        if s not in rc.searches:
            rc.searches.append(s)
    rc.options = _merge_options(rc.options, cfg.get("options") or [])
    return rc.render(), warning


def read_host_file(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""
