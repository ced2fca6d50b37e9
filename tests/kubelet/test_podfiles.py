"""/etc/hosts and /etc/resolv.conf of a pod's containers (podfiles.py), as upstream's
kubelet writes them."""
from __future__ import annotations

from typing import Any

from pyk8s.kubelet import podfiles

HOST_RESOLV = "# host\nnameserver 192.0.2.53\nsearch example.org\noptions edns0\n"


def pod(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "web-0", "namespace": "shop", "uid": "u1"},
            "spec": {"containers": [{"name": "c"}], **spec}}


def test_hosts_file() -> None:
    text = podfiles.hosts_file(pod(), ["10.42.0.7"])
    assert text.startswith("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n")
    assert text.endswith("10.42.0.7\tweb-0\n")
    text = podfiles.hosts_file(pod(hostname="db", subdomain="dbs",
                                   hostAliases=[{"ip": "10.1.2.3", "hostnames": ["a", "b"]}]),
                               ["10.42.0.7"])
    assert "10.42.0.7\tdb.dbs.shop.svc.cluster.local\tdb\n" in text
    assert text.endswith("# Entries added by HostAliases.\n10.1.2.3\ta\tb\n")
    assert podfiles.hosts_file(pod(hostNetwork=True), ["1.2.3.4"],
                               host_hosts="127.0.0.1 me") == "127.0.0.1 me\n"


def test_resolv_conf_policies() -> None:
    text, warn = podfiles.resolv_conf(pod(), ["10.96.0.10"], "cluster.local", HOST_RESOLV)
    assert warn is None
    assert text == ("nameserver 10.96.0.10\n"
                    "search shop.svc.cluster.local svc.cluster.local cluster.local "
                    "example.org\noptions ndots:5\n")
    text, warn = podfiles.resolv_conf(pod(dnsPolicy="Default"), ["10.96.0.10"],
                                      "cluster.local", HOST_RESOLV)
    assert text == "nameserver 192.0.2.53\nsearch example.org\noptions edns0\n"
    # ClusterFirst without a cluster DNS: Default, with upstream's warning.
    text, warn = podfiles.resolv_conf(pod(), [], "cluster.local", HOST_RESOLV)
    assert "nameserver 192.0.2.53" in text
    assert warn is not None and 'Falling back to "Default" policy.' in warn
    # hostNetwork: ClusterFirst means Default, ClusterFirstWithHostNet the cluster's DNS.
    text, _ = podfiles.resolv_conf(pod(hostNetwork=True), ["10.96.0.10"], "cluster.local",
                                   HOST_RESOLV)
    assert "192.0.2.53" in text
    text, _ = podfiles.resolv_conf(pod(hostNetwork=True, dnsPolicy="ClusterFirstWithHostNet"),
                                   ["10.96.0.10"], "cluster.local", HOST_RESOLV)
    assert "nameserver 10.96.0.10" in text
    cfg = {"nameservers": ["1.1.1.1"], "searches": ["a.b"],
           "options": [{"name": "ndots", "value": "2"}, {"name": "rotate"}]}
    text, _ = podfiles.resolv_conf(pod(dnsPolicy="None", dnsConfig=cfg), ["10.96.0.10"],
                                   "cluster.local", HOST_RESOLV)
    assert text == "nameserver 1.1.1.1\nsearch a.b\noptions ndots:2 rotate\n"
    text, _ = podfiles.resolv_conf(pod(dnsConfig=cfg), ["10.96.0.10"], "cluster.local",
                                   HOST_RESOLV)
    assert "nameserver 10.96.0.10\nnameserver 1.1.1.1\n" in text
    assert "options ndots:2 rotate" in text


def test_hostname_truncated() -> None:
    p = pod()
    p["metadata"]["name"] = "x" * 62 + "-abc"
    assert podfiles.pod_hostname(p) == "x" * 62
