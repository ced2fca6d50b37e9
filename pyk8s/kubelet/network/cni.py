"""A CNI driver calling the plugin binaries directly (what libcni does, without it).

ADD runs the conflist's plugins in order, each with its own config plus `name`,
`cniVersion`, the previous plugin's result as `prevResult` and the `runtimeConfig` of the
capabilities it declares (e.g. `portMappings` for portmap); the final result and the
config are cached per container under `cache_dir/results/<network>-<container>-<ifname>`
(libcni's layout and format, plus the netns path) so that DEL gets the same config and
the result as `prevResult`. A failed ADD deletes what it added, then raises CNIError with
the plugin's error. DEL runs the plugins in reverse order; it is idempotent (an unknown
container is fine), and with the netns gone it passes an empty CNI_NETNS (which the spec
allows): the IPAM allocation is released. The bridge plugin removes its ipMasq chain only
when it still finds the pod's interface (not with the netns gone, nor when the interface
went away earlier, e.g. on a retried DEL): that chain and its POSTROUTING jump are removed
here after every DEL of a network with ipMasq.

Plugins run as asyncio subprocesses with a timeout, at most `max_parallel` at a time."""
from __future__ import annotations

import asyncio
import base64
import hashlib
import ipaddress
import json
import os
import shlex
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from pyk8s.kubelet.network.namespaces import is_namespace_file

Obj = dict[str, Any]

DEFAULT_BIN_DIRS: tuple[str, ...] = ("/usr/lib/cni", "/opt/cni/bin")
DEFAULT_CACHE_DIR = Path("/var/lib/cni")          # libcni's default
PLUGIN_TIMEOUT = 60.0
CACHE_KIND = "cniCacheV1"
# Error codes of the CNI spec.
ERR_INCOMPATIBLE_VERSION = 1
ERR_INVALID_NETNS = 4
ERR_TRY_AGAIN_LATER = 11


class CNIError(Exception):
    """A plugin failed: `msg` / `details` / `code` as in its JSON error; `plugin` is its
    type, `command` ADD / DEL / CHECK / VERSION."""

    def __init__(self, msg: str, *, code: int = 0, details: str = "", plugin: str = "",
                 command: str = "") -> None:
        self.msg, self.code, self.details = msg, code, details
        self.plugin, self.command = plugin, command
        super().__init__(msg + (f"; {details}" if details else ""))


@dataclass
class CNIResult:
    """The ADD result: pod IPs (no prefix length, IPv4 first), the interfaces and the raw
    result of the last plugin."""
    ips: list[str]
    interfaces: list[Obj]
    raw: Obj = field(default_factory=dict)

    @property
    def ip(self) -> str:
        return self.ips[0] if self.ips else ""

    @classmethod
    def from_raw(cls, raw: Obj) -> "CNIResult":
        found: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
        entries = [e.get("address") for e in raw.get("ips") or [] if isinstance(e, dict)]
        # 0.2.0 results: "ip4" / "ip6"
        entries += [raw[k].get("ip") for k in ("ip4", "ip6")
                    if isinstance(raw.get(k), dict)]
        for entry in entries:
            try:   # a malformed entry is skipped (not a ValueError after a successful ADD)
                a = ipaddress.ip_address(str(entry or "").split("/")[0])
            except ValueError:
                continue
            if a not in found:
                found.append(a)
        found.sort(key=lambda a: a.version)                          # stable: v4 first
        interfaces = [i for i in raw.get("interfaces") or [] if isinstance(i, dict)]
        return cls([str(a) for a in found], interfaces, raw)

    def host_interfaces(self) -> list[str]:
        """Host-side interface names (the bridge, the veth's host end)."""
        return [i["name"] for i in self.interfaces if i.get("name") and not i.get("sandbox")]

    def sandbox_interfaces(self) -> list[str]:
        return [i["name"] for i in self.interfaces if i.get("name") and i.get("sandbox")]


def cni_args(container_id: str, pod: tuple[str, str, str] | None) -> list[tuple[str, str]]:
    """CNI_ARGS as the kubelet / CRI runtimes pass them (IgnoreUnknown first: plugins
    reject keys they do not know otherwise)."""
    args = [("IgnoreUnknown", "1")]
    if pod is not None:
        ns, name, uid = pod
        args += [("K8S_POD_NAMESPACE", ns), ("K8S_POD_NAME", name),
                 ("K8S_POD_INFRA_CONTAINER_ID", container_id), ("K8S_POD_UID", uid)]
    return args


def chain_name(network: str, container_id: str, prefix: str = "") -> str:
    """The plugins' per-container iptables chain (utils.FormatChainName): CNI-<sha512>,
    28 characters."""
    h = hashlib.sha512((network + container_id).encode()).hexdigest()
    return f"CNI-{prefix}{h}"[:28]


def chain_comment(network: str, container_id: str) -> str:
    """The plugins' iptables rule comment (utils.FormatComment)."""
    return f'name: "{network}" id: "{container_id}"'


def find_plugin(plugin_type: str, bin_dirs: Iterable[str | os.PathLike[str]]) -> Path | None:
    if not plugin_type or "/" in plugin_type:
        return None
    for d in bin_dirs:
        p = Path(d) / plugin_type
        if os.access(p, os.X_OK) and p.is_file():
            return p
    return None


def _parse_version(v: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in v.split("."))
    except ValueError:
        return (0,)


class CNINetwork:
    """One CNI network (a conflist dict: `name`, `cniVersion`, `plugins`)."""

    def __init__(self, conflist: Obj, bin_dirs: Sequence[str | os.PathLike[str]] = DEFAULT_BIN_DIRS,
                 cache_dir: str | os.PathLike[str] | None = None, *,
                 timeout: float = PLUGIN_TIMEOUT, max_parallel: int = 8) -> None:
        if not conflist.get("name") or not conflist.get("plugins"):
            raise ValueError("a CNI conflist needs a name and plugins")
        for p in conflist["plugins"]:
            if not isinstance(p, dict) or not p.get("type"):
                raise ValueError(f"a CNI plugin config needs a type: {p!r}")
        self.conflist = conflist
        self.name: str = conflist["name"]
        self.cni_version: str = conflist.get("cniVersion") or "0.4.0"
        self.bin_dirs = [str(d) for d in bin_dirs]
        self.cache_dir = Path(cache_dir) if cache_dir is not None else DEFAULT_CACHE_DIR
        self.timeout = timeout
        self.max_parallel = max_parallel
        self._sem: asyncio.Semaphore | None = None
        self._sem_loop: asyncio.AbstractEventLoop | None = None

    # -- cache --------------------------------------------------------------------------
    def cache_path(self, container_id: str, ifname: str) -> Path:
        return cache_path(self.cache_dir, self.name, container_id, ifname)

    def cached(self, container_id: str, ifname: str = "eth0") -> Obj | None:
        return read_cache(self.cache_path(container_id, ifname))

    def cached_result(self, container_id: str, ifname: str = "eth0") -> CNIResult | None:
        entry = self.cached(container_id, ifname)
        if not entry or not isinstance(entry.get("result"), dict):
            return None
        return CNIResult.from_raw(entry["result"])

    def _write_cache(self, container_id: str, ifname: str, netns: str,
                     args: list[tuple[str, str]], caps: Obj, result: Obj) -> None:
        p = self.cache_path(container_id, ifname)
        p.parent.mkdir(parents=True, exist_ok=True)
        entry = {"kind": CACHE_KIND, "containerId": container_id,
                 "config": base64.b64encode(json.dumps(self.conflist).encode()).decode(),
                 "ifName": ifname, "networkName": self.name, "netns": netns,
                 "cniArgs": [list(a) for a in args], "capabilityArgs": caps,
                 "result": result}
        tmp = p.with_name(p.name + ".tmp")
        tmp.write_text(json.dumps(entry))
        os.replace(tmp, p)

    # -- running plugins ------------------------------------------------------------------
    def _semaphore(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if self._sem is None or self._sem_loop is not loop:
            self._sem, self._sem_loop = asyncio.Semaphore(self.max_parallel), loop
        return self._sem

    def _stdin(self, plugin: Obj, conflist: Obj, prev: Obj | None, caps: Obj) -> bytes:
        conf = {k: v for k, v in plugin.items() if k != "runtimeConfig"}
        conf["name"] = conflist["name"]
        conf["cniVersion"] = conflist.get("cniVersion") or self.cni_version
        runtime = {k: caps[k] for k, on in (plugin.get("capabilities") or {}).items()
                   if on and k in caps}
        if runtime:
            conf["runtimeConfig"] = runtime
        if prev is not None:
            conf["prevResult"] = prev
        return json.dumps(conf).encode()

    async def _run(self, plugin_type: str, command: str, container_id: str, netns: str,
                   ifname: str, args: list[tuple[str, str]], stdin: bytes) -> bytes:
        exe = find_plugin(plugin_type, self.bin_dirs)
        if exe is None:
            raise CNIError(f'failed to find plugin "{plugin_type}" in path {self.bin_dirs}',
                           plugin=plugin_type, command=command)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}
        env.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        env.update(CNI_COMMAND=command, CNI_CONTAINERID=container_id, CNI_NETNS=netns,
                   CNI_IFNAME=ifname, CNI_PATH=os.pathsep.join(self.bin_dirs),
                   CNI_ARGS=";".join(f"{k}={v}" for k, v in args))
        # The config goes in through a file, not a pipe: a plugin may exit without reading
        # it (VERSION), and uvloop then fails the pipe write instead of ignoring EPIPE.
        with tempfile.TemporaryFile() as config:
            config.write(stdin)
            config.seek(0)
            out, err, rc = await self._exec(exe, plugin_type, command, config, env)
        if rc != 0:
            raise _plugin_error(plugin_type, command, rc, out, err)
        return out

    async def _exec(self, exe: Path, plugin_type: str, command: str, stdin: Any,
                    env: dict[str, str]) -> tuple[bytes, bytes, int]:
        async with self._semaphore():
            proc = await asyncio.create_subprocess_exec(
                str(exe), stdin=stdin, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, env=env)
            try:
                out, err = await asyncio.wait_for(proc.communicate(), self.timeout)
            except (asyncio.TimeoutError, asyncio.CancelledError) as e:
                if proc.returncode is None:
                    proc.kill()
                await proc.wait()
                if isinstance(e, asyncio.CancelledError):
                    raise
                raise CNIError(f"plugin {plugin_type} ({command}) timed out after "
                               f"{self.timeout:g}s", code=ERR_TRY_AGAIN_LATER,
                               plugin=plugin_type, command=command) from None
        return out, err, proc.returncode or 0

    # -- commands ---------------------------------------------------------------------------
    async def add(self, container_id: str, netns_path: str, ifname: str = "eth0",
                  port_mappings: Sequence[Obj] = (),
                  pod: tuple[str, str, str] | None = None) -> CNIResult:
        """Attach the container's netns. `pod` = (namespace, name, uid) for CNI_ARGS."""
        args = cni_args(container_id, pod)
        caps: Obj = {"portMappings": [dict(m) for m in port_mappings]}
        plugins: list[Obj] = self.conflist["plugins"]
        prev: Obj | None = None
        for i, plugin in enumerate(plugins):
            try:
                out = await self._run(plugin["type"], "ADD", container_id, netns_path, ifname,
                                      args, self._stdin(plugin, self.conflist, prev, caps))
                try:
                    result = json.loads(out)
                    if not isinstance(result, dict):
                        raise ValueError("not an object")
                except ValueError as e:
                    raise CNIError(f"plugin {plugin['type']} returned an invalid result: {e}",
                                   plugin=plugin["type"], command="ADD") from None
                prev = result
            except BaseException:
                # Undo what was added (the failed plugin may have done part of its work).
                try:
                    await asyncio.shield(self._delete(
                        self.conflist, plugins[:i + 1], container_id, netns_path, ifname,
                        args, prev, caps))
                except Exception:
                    pass
                raise
        assert prev is not None
        try:
            self._write_cache(container_id, ifname, netns_path, args, caps, prev)
        except OSError:
            # Not cached, the attachment could never be DELeted with its config and
            # result: undo it now.
            try:
                await asyncio.shield(self._delete(self.conflist, plugins, container_id,
                                                  netns_path, ifname, args, prev, caps))
            except Exception:
                pass
            raise
        return CNIResult.from_raw(prev)

    async def delete(self, container_id: str, netns_path: str | None = None,
                     ifname: str = "eth0") -> None:
        """Detach the container (plugins in reverse order, with the cached config and
        result). Idempotent. `netns_path` None or no longer a namespace: CNI_NETNS=""."""
        entry = self.cached(container_id, ifname)
        conflist, prev, caps = self.conflist, None, {}
        args = cni_args(container_id, None)
        if entry:
            conflist = _decode_config(entry) or self.conflist
            prev = entry.get("result") if isinstance(entry.get("result"), dict) else None
            caps = entry.get("capabilityArgs") or {}
            args = [tuple(a) for a in entry.get("cniArgs") or []] or args  # type: ignore[misc]
        await self._delete(conflist, conflist["plugins"], container_id, netns_path, ifname,
                           args, prev, caps)
        self.cache_path(container_id, ifname).unlink(missing_ok=True)

    async def _delete(self, conflist: Obj, plugins: list[Obj], container_id: str,
                      netns_path: str | None, ifname: str, args: list[tuple[str, str]],
                      prev: Obj | None, caps: Obj) -> None:
        netns = netns_path if netns_path and is_namespace_file(netns_path) else ""
        first: CNIError | None = None
        for plugin in reversed(plugins):
            try:
                await self._run(plugin["type"], "DEL", container_id, netns, ifname, args,
                                self._stdin(plugin, conflist, prev, caps))
            except CNIError as e:
                first = first or e
        # Not only with the netns gone: the plugin skips its teardown whenever the pod's
        # interface is missing, which leaked the chain (cheap when already removed).
        if any(p.get("ipMasq") for p in plugins):
            ips = CNIResult.from_raw(prev).ips if prev else []
            await remove_ipmasq(conflist["name"], container_id, ips)
        if first is not None:
            raise first

    async def check(self, container_id: str, netns_path: str, ifname: str = "eth0") -> None:
        """CHECK (spec ≥ 0.4.0) with the cached result; raises CNIError."""
        if _parse_version(self.cni_version) < (0, 4, 0):
            return
        entry = self.cached(container_id, ifname)
        if not entry or not isinstance(entry.get("result"), dict):
            raise CNIError(f"no cached result for container {container_id}", command="CHECK")
        conflist = _decode_config(entry) or self.conflist
        args = [tuple(a) for a in entry.get("cniArgs") or []]  # type: ignore[misc]
        for plugin in conflist["plugins"]:
            await self._run(plugin["type"], "CHECK", container_id, netns_path, ifname,
                            args, self._stdin(plugin, conflist, entry["result"],
                                              entry.get("capabilityArgs") or {}))


# -- module functions ---------------------------------------------------------------------
def cache_path(cache_dir: Path, network: str, container_id: str, ifname: str) -> Path:
    return Path(cache_dir) / "results" / f"{network}-{container_id}-{ifname}"


def read_cache(path: Path) -> Obj | None:
    try:
        entry = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return entry if isinstance(entry, dict) else None


def _decode_config(entry: Obj) -> Obj | None:
    raw = entry.get("config")
    try:
        conf = json.loads(base64.b64decode(raw)) if isinstance(raw, str) else raw
    except (ValueError, TypeError):
        return None
    if isinstance(conf, dict) and conf.get("name") and conf.get("plugins"):
        return conf
    return None


def cached_entries(cache_dir: Path) -> list[tuple[Path, Obj]]:
    out = []
    d = Path(cache_dir) / "results"
    if d.is_dir():
        for p in sorted(d.iterdir()):
            if p.name.endswith(".tmp"):
                p.unlink(missing_ok=True)
                continue
            entry = read_cache(p)
            if entry is not None:
                out.append((p, entry))
    return out


async def delete_all_cached(cache_dir: Path,
                            bin_dirs: Sequence[str | os.PathLike[str]] = DEFAULT_BIN_DIRS,
                            keep: Iterable[str] = ()) -> list[tuple[str, Obj, CNIError | None]]:
    """DEL every container cached under `cache_dir` (with its cached config and netns)
    but those in `keep`: cleanup after a crash or at shutdown. Returns (container id,
    config, error or None)."""
    done = []
    kept = set(keep)
    for path, entry in cached_entries(cache_dir):
        conf = _decode_config(entry)
        cid, ifname = entry.get("containerId"), entry.get("ifName") or "eth0"
        if cid in kept:
            continue
        if conf is None or not cid:
            path.unlink(missing_ok=True)
            continue
        net = CNINetwork(conf, bin_dirs, cache_dir)
        try:
            await net.delete(cid, entry.get("netns") or None, ifname)
            done.append((cid, conf, None))
        except CNIError as e:
            done.append((cid, conf, e))
    return done


async def plugin_versions(plugin_type: str,
                          bin_dirs: Sequence[str | os.PathLike[str]] = DEFAULT_BIN_DIRS,
                          timeout: float = 10.0) -> list[str]:
    """CNI_COMMAND=VERSION: the spec versions the plugin supports."""
    net = CNINetwork({"name": "version", "plugins": [{"type": plugin_type}]}, bin_dirs,
                     timeout=timeout)
    out = await net._run(plugin_type, "VERSION", "", "", "", [],
                         json.dumps({"cniVersion": "1.0.0"}).encode())
    try:
        return [str(v) for v in json.loads(out).get("supportedVersions") or []]
    except (ValueError, AttributeError):
        raise CNIError(f"plugin {plugin_type}: invalid VERSION output", plugin=plugin_type,
                       command="VERSION") from None


def _plugin_error(plugin_type: str, command: str, rc: int, out: bytes, err: bytes) -> CNIError:
    for stream in (out, err):
        try:
            e = json.loads(stream)
        except ValueError:
            continue
        if isinstance(e, dict) and ("msg" in e or "code" in e):
            try:   # a malformed code must still give a CNIError (DEL goes on after one)
                code = int(e.get("code") or 0)
            except (TypeError, ValueError):
                code = 0
            return CNIError(str(e.get("msg") or f"error code {e.get('code')}"),
                            code=code, details=str(e.get("details") or ""),
                            plugin=plugin_type, command=command)
    text = (err or out).decode(errors="replace").strip() or f"exit status {rc}"
    return CNIError(f"plugin {plugin_type} failed ({command}): {text[-2000:]}",
                    plugin=plugin_type, command=command)


async def _iptables(binary: str, *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        binary, "-w", "5", *args, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    return proc.returncode or 0, out.decode(errors="replace")


async def remove_ipmasq(network: str, container_id: str, ips: Sequence[str] = ()) -> None:
    """Remove the bridge plugin's ipMasq chain of a container and the POSTROUTING rules
    jumping to it (what its DEL does only when it can still see the interface)."""
    chain = chain_name(network, container_id)
    families = {"iptables"} | {"ip6tables" for a in ips if ":" in a}
    for binary in sorted(families):
        try:
            rc, out = await _iptables(binary, "-t", "nat", "-S", "POSTROUTING")
        except (OSError, asyncio.TimeoutError):
            continue
        if rc != 0:
            continue
        for line in out.splitlines():
            words = shlex.split(line)
            if words[:2] == ["-A", "POSTROUTING"] and "-j" in words \
                    and words[words.index("-j") + 1:words.index("-j") + 2] == [chain]:
                await _iptables(binary, "-t", "nat", "-D", *words[1:])
        rc, _ = await _iptables(binary, "-t", "nat", "-F", chain)
        if rc == 0:
            await _iptables(binary, "-t", "nat", "-X", chain)
