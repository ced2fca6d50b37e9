"""A container's environment and command line as upstream's kubelet makes them
(kubelet_pods.go makeEnvironmentVariables): `envFrom` (ConfigMaps / Secrets, with
`prefix`, `optional`) first, then `env` in order (`value` with `$(VAR)` expansion against
the variables before it, `valueFrom` configMapKeyRef / secretKeyRef / fieldRef /
resourceFieldRef); then `$(VAR)` expansion of `command` and `args`.

ConfigMaps and Secrets come through an `ObjectGetter` (the kubelet's: GET with its client,
with a short cache). What is missing and not optional raises `ContainerConfigError`, the
container waits with reason CreateContainerConfigError and upstream's message."""
from __future__ import annotations

import base64
import math
import re
import time
from fractions import Fraction
from typing import Any, Awaitable, Callable

Obj = dict[str, Any]

# (kind "configmap"|"secret", namespace, name) -> the object, or None when not found.
ObjectGetter = Callable[[str, str, str], Awaitable[Obj | None]]


class ContainerConfigError(Exception):
    """The container's configuration cannot be made (upstream's ErrCreateContainerConfig)."""
    reason = "CreateContainerConfigError"


def expand(s: str, env: dict[str, str]) -> str:
    """Upstream's `$(VAR)` expansion (third_party/forked/golang/expansion): `$(VAR)` becomes
    VAR's value when VAR is defined, stays as written otherwise; `$$` escapes a `$`; a `$`
    followed by anything else is kept."""
    out: list[str] = []
    i, n = 0, len(s)
    while i < n:
        ch = s[i]
        if ch != "$" or i + 1 >= n:
            out.append(ch)
            i += 1
            continue
        nxt = s[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "(":
            end = s.find(")", i + 2)
            if end < 0:  # unterminated: kept as written
                out.append(s[i:])
                break
            name = s[i + 2:end]
            out.append(env[name] if name in env else s[i:end + 1])
            i = end + 1
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def container_argv(container: Obj, env: dict[str, str]) -> list[str]:
    return [expand(str(a), env) for a in (container.get("command") or [])] + \
           [expand(str(a), env) for a in (container.get("args") or [])]


# -- the downward API -------------------------------------------------------------------
_SUBSCRIPT = re.compile(r"^metadata\.(labels|annotations)\['(.*)'\]$")


def _format_map(m: dict[str, str]) -> str:
    """Upstream's fieldpath.FormatMap: sorted `k="v"` lines (Go %q quoting, close enough)."""
    import json
    return "\n".join(f"{k}={json.dumps(m[k], ensure_ascii=False)}" for k in sorted(m))


def pod_field(pod: Obj, path: str, pod_ip: str = "", host_ip: str = "",
              allow_maps: bool = False) -> str:
    """The value of a `fieldRef.fieldPath` (upstream's podFieldSelectorRuntimeValue and
    fieldpath.ExtractFieldPathAsString). `allow_maps`: whole `metadata.labels` /
    `metadata.annotations` (downwardAPI volumes only)."""
    md, spec, st = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
    m = _SUBSCRIPT.match(path)
    if m:
        return str((md.get(m.group(1)) or {}).get(m.group(2), ""))
    if allow_maps and path in ("metadata.labels", "metadata.annotations"):
        return _format_map(md.get(path.split(".")[1]) or {})
    pod_ip = pod_ip or st.get("podIP", "")
    host_ip = host_ip or st.get("hostIP", "")
    simple = {"metadata.name": md.get("name", ""), "metadata.namespace": md.get("namespace", ""),
              "metadata.uid": md.get("uid", ""), "spec.nodeName": spec.get("nodeName", ""),
              "spec.serviceAccountName": spec.get("serviceAccountName", ""),
              "status.hostIP": host_ip, "status.podIP": pod_ip,
              "status.hostIPs": ",".join([i.get("ip", "") for i in st.get("hostIPs") or []]
                                         or ([host_ip] if host_ip else [])),
              "status.podIPs": ",".join([i.get("ip", "") for i in st.get("podIPs") or []]
                                        if not pod_ip or st.get("podIP") == pod_ip
                                        else [pod_ip]) or pod_ip}
    if path in simple:
        return str(simple[path])
    raise ContainerConfigError(f"unsupported fieldPath: {path}")


def _quantity(v: Any) -> Fraction:
    from pyk8s.api.validation import parse_quantity
    q = parse_quantity(v if v is not None else "0")
    return q if q is not None else Fraction(0)


def resource_value(pod: Obj, ref: Obj, container_name: str,
                   allocatable: dict[str, Any] | None = None) -> str:
    """`resourceFieldRef` (upstream's ExtractContainerResourceValue after
    MergeContainerResourceLimits: an unset limit is the node's allocatable): the quantity
    divided by `divisor`, rounded up; cpu in whole units of the divisor."""
    name = ref.get("containerName") or container_name
    spec = pod.get("spec") or {}
    ctr = next((c for c in (spec.get("containers") or []) + (spec.get("initContainers") or [])
                if c.get("name") == name), None)
    if ctr is None:
        raise ContainerConfigError(f"container {name} not found")
    resource = ref.get("resource") or ""
    kind, _, rname = resource.partition(".")
    if kind not in ("limits", "requests") or rname not in ("cpu", "memory",
                                                            "ephemeral-storage"):
        raise ContainerConfigError(f"unsupported container resource : {resource}")
    res = (ctr.get("resources") or {}).get(kind) or {}
    value = res.get(rname)
    if value is None and kind == "limits":
        value = (allocatable or {}).get(rname)
    q = _quantity(value)
    divisor = _quantity(ref.get("divisor") or "1")
    if divisor <= 0:
        divisor = Fraction(1)
    if rname == "cpu":   # convertResourceCPUToString: in millicores, then ceil
        return str(math.ceil(Fraction(math.ceil(q * 1000), math.ceil(divisor * 1000))))
    return str(math.ceil(q / divisor))


# -- ConfigMaps and Secrets -------------------------------------------------------------
def object_data(kind: str, obj: Obj) -> dict[str, bytes]:
    """A ConfigMap's data + binaryData, or a Secret's data (base64) + stringData, as bytes."""
    out: dict[str, bytes] = {}
    if kind == "secret":
        for k, v in (obj.get("data") or {}).items():
            out[k] = base64.b64decode(v or "")
        for k, v in (obj.get("stringData") or {}).items():
            out[k] = str(v).encode()
    else:
        for k, v in (obj.get("data") or {}).items():
            out[k] = str(v).encode()
        for k, v in (obj.get("binaryData") or {}).items():
            out[k] = base64.b64decode(v or "")
    return out


KIND_NAMES = {"configmap": "ConfigMap", "secret": "Secret"}


async def get_object(getter: ObjectGetter, kind: str, ns: str, name: str,
                     optional: bool) -> Obj | None:
    obj = await getter(kind, ns, name)
    if obj is None and not optional:
        raise ContainerConfigError(f'{kind} "{name}" not found')
    return obj


# Services whose variables every pod gets, whatever enableServiceLinks says.
MASTER_SERVICES = ("kubernetes",)


def _env_name(name: str) -> str:
    return name.upper().replace("-", "_")


def _cluster_ip_set(svc: Obj) -> bool:
    ip = (svc.get("spec") or {}).get("clusterIP") or ""
    return ip not in ("", "None")


def service_variables(services: list[Obj]) -> dict[str, str]:
    """Upstream's envvars.FromServices: `<NAME>_SERVICE_HOST`, `_SERVICE_PORT` (first
    port), `_SERVICE_PORT_<PORT NAME>`, and Docker link variables (`<NAME>_PORT`,
    `<NAME>_PORT_<port>_<PROTO>` with `_PROTO`, `_PORT`, `_ADDR`)."""
    out: dict[str, str] = {}
    for svc in services:
        spec = svc.get("spec") or {}
        ports = spec.get("ports") or []
        if not _cluster_ip_set(svc) or not ports:
            continue
        prefix, ip = _env_name(svc["metadata"]["name"]), spec["clusterIP"]
        out[prefix + "_SERVICE_HOST"] = ip
        out[prefix + "_SERVICE_PORT"] = str(ports[0].get("port"))
        for sp in ports:
            if sp.get("name"):
                out[f"{prefix}_SERVICE_PORT_{_env_name(sp['name'])}"] = str(sp.get("port"))
        host = f"[{ip}]" if ":" in ip else ip
        for i, sp in enumerate(ports):
            proto = (sp.get("protocol") or "TCP").lower()
            url = f"{proto}://{host}:{sp.get('port')}"
            if i == 0:
                out[prefix + "_PORT"] = url
            pp = f"{prefix}_PORT_{sp.get('port')}_{proto.upper()}"
            out[pp] = url
            out[pp + "_PROTO"] = proto
            out[pp + "_PORT"] = str(sp.get("port"))
            out[pp + "_ADDR"] = ip
    return out


def service_environment(pod: Obj, services: list[Obj]) -> dict[str, str]:
    """Upstream's getServiceEnvVarMap: the master services of `default` always, and with
    `enableServiceLinks` (default true) every Service of the pod's namespace."""
    ns = (pod.get("metadata") or {}).get("namespace") or "default"
    links = (pod.get("spec") or {}).get("enableServiceLinks")
    links = True if links is None else bool(links)
    chosen: dict[str, Obj] = {}
    for svc in services:
        md = svc.get("metadata") or {}
        name = md.get("name") or ""
        if not _cluster_ip_set(svc):
            continue
        if md.get("namespace") == "default" and name in MASTER_SERVICES:
            chosen.setdefault(name, svc)
        elif md.get("namespace") == ns and links:
            chosen[name] = svc
    return service_variables(list(chosen.values()))


async def make_environment(pod: Obj, container: Obj, getter: ObjectGetter,
                           pod_ip: str = "", host_ip: str = "",
                           allocatable: dict[str, Any] | None = None,
                           service_env: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """The container's environment, in order (later entries override earlier ones).
    `service_env` (see service_environment) can be referenced by `$(VAR)` and fills in the
    names the container does not set, as upstream."""
    ns = (pod.get("metadata") or {}).get("namespace") or "default"
    service_env = service_env or {}
    env: dict[str, str] = {}
    for src in container.get("envFrom") or []:
        prefix = src.get("prefix") or ""
        for key, kind in (("configMapRef", "configmap"), ("secretRef", "secret")):
            ref = src.get(key)
            if not ref:
                continue
            obj = await get_object(getter, kind, ns, ref.get("name") or "",
                                   bool(ref.get("optional")))
            if obj is None:
                continue
            for k, v in object_data(kind, obj).items():
                env[prefix + k] = v.decode(errors="replace")
    for e in container.get("env") or []:
        name = e.get("name")
        if not name:
            continue
        vf = e.get("valueFrom")
        if not vf:
            env[name] = expand(str(e.get("value") or ""), {**service_env, **env})
            continue
        if vf.get("fieldRef"):
            env[name] = pod_field(pod, vf["fieldRef"].get("fieldPath") or "", pod_ip, host_ip)
        elif vf.get("resourceFieldRef"):
            env[name] = resource_value(pod, vf["resourceFieldRef"], container.get("name", ""),
                                       allocatable)
        else:
            for key, kind in (("configMapKeyRef", "configmap"), ("secretKeyRef", "secret")):
                ref = vf.get(key)
                if not ref:
                    continue
                optional = bool(ref.get("optional"))
                oname = ref.get("name") or ""
                obj = await get_object(getter, kind, ns, oname, optional)
                if obj is None:
                    break
                data = object_data(kind, obj)
                k = ref.get("key") or ""
                if k not in data:
                    if optional:
                        break
                    raise ContainerConfigError(
                        f"couldn't find key {k} in {KIND_NAMES[kind]} {ns}/{oname}")
                env[name] = data[k].decode(errors="replace")
                break
    for k, v in service_env.items():
        env.setdefault(k, v)
    return list(env.items())


class CachedGetter:
    """ConfigMaps / Secrets (and, for volumes, PersistentVolumeClaims / PersistentVolumes:
    kinds "persistentvolumeclaim" / "persistentvolume", namespace "" for the latter) by GET
    through the kubelet's client, cached for `ttl` seconds (upstream's TTL-based
    configMapManager). A callable `ObjectGetter`."""

    def __init__(self, client: Any, ttl: float = 1.0) -> None:
        self.client, self.ttl = client, ttl
        self._cache: dict[tuple[str, str, str], tuple[float, Obj | None]] = {}

    async def __call__(self, kind: str, ns: str, name: str) -> Obj | None:
        from pyk8s.client.rest import NotFound, resource_path
        key = (kind, ns, name)
        hit = self._cache.get(key)
        now = time.monotonic()
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        plural = {"configmap": "configmaps", "secret": "secrets",
                  "persistentvolumeclaim": "persistentvolumeclaims",
                  "persistentvolume": "persistentvolumes"}[kind]
        try:
            obj: Obj | None = await self.client.get(resource_path("", "v1", plural, ns or None,
                                                                  name))
        except NotFound:
            obj = None
        except Exception as e:   # Forbidden, unreachable: the container waits, retried
            raise ContainerConfigError(f"getting {kind} {ns}/{name}: {e}") from None
        self._cache[key] = (now, obj)
        return obj
