"""Dynamic admission: MutatingWebhookConfiguration / ValidatingWebhookConfiguration.

Like upstream's `k8s.io/apiserver/pkg/admission/plugin/webhook`: configurations are read
from the watch cache (sorted by name), each webhook's rules, namespaceSelector and
objectSelector decide whether it is called; the call is an AdmissionReview v1 POST over
HTTPS (the webhook's caBundle as the trust root) bounded by timeoutSeconds; a failed call
obeys failurePolicy (Fail by default). Mutating webhooks run in order and their JSONPatch
responses are applied (reinvocationPolicy IfNeeded: called once more when a later webhook
changed the object); validating webhooks run concurrently.
"""
from __future__ import annotations

import asyncio
import base64
import copy
import logging
import ssl
from typing import Any

import aiohttp
import orjson

from pyk8s.api import errors, meta, patch as patching
from pyk8s.api.selectors import SelectorError, label_selector_from_dict
from pyk8s.apiserver.admission.chain import CREATE, DELETE, Attributes, Plugin

log = logging.getLogger("pyk8s.apiserver.admission.webhook")

Obj = dict[str, Any]
GROUP = "admissionregistration.k8s.io"
_NO_SIDE_EFFECTS = ("None", "NoneOnDryRun")


def _rule_matches(rule: Obj, attrs: Attributes, namespaced: bool) -> bool:
    ops = rule.get("operations") or []
    if "*" not in ops and attrs.operation not in ops:
        return False
    groups = rule.get("apiGroups") or []
    if "*" not in groups and attrs.group not in groups:
        return False
    versions = rule.get("apiVersions") or []
    if "*" not in versions and attrs.version not in versions:
        return False
    scope = rule.get("scope") or "*"
    if scope == "Cluster" and namespaced or scope == "Namespaced" and not namespaced:
        return False
    want = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
    for r in rule.get("resources") or []:
        res, _, sub = r.partition("/")
        if r == "*/*" or r == want:
            return True
        if res == "*" and sub and sub == attrs.subresource:
            return True
        if r == "*" and not attrs.subresource:
            return True
        if res == attrs.resource and sub == "*" and attrs.subresource:
            return True
    return False


def _equivalent_rule_matches(rule: Obj, attrs: Attributes, namespaced: bool) -> bool:
    """matchPolicy Equivalent: a rule naming another version of the same resource matches
    (pyk8s sends the object in the request's version)."""
    loose = dict(rule, apiVersions=["*"])
    return _rule_matches(loose, attrs, namespaced)


def _selector_matches(sel: Obj | None, labels: dict[str, str]) -> bool:
    if not sel:
        return True
    try:
        return label_selector_from_dict(sel).matches(labels)
    except SelectorError:
        return False


def _labels(obj: Obj | None) -> dict[str, str]:
    return ((obj or {}).get("metadata") or {}).get("labels") or {}


class _Failure(Exception):
    pass


class Webhooks(Plugin):
    """Both dynamic admission plugins: `mutating` picks the configuration kind."""

    def __init__(self, server: Any, mutating: bool) -> None:
        self.server = server
        self.mutating = mutating
        self.validating = not mutating
        self.name = "MutatingAdmissionWebhook" if mutating else "ValidatingAdmissionWebhook"
        self.plural = ("mutatingwebhookconfigurations" if mutating
                       else "validatingwebhookconfigurations")
        self._session: aiohttp.ClientSession | None = None
        self._ssl: dict[str, ssl.SSLContext] = {}

    def handles(self, attrs: Attributes) -> bool:
        # upstream never sends admissionregistration objects to webhooks
        return attrs.group != GROUP

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- matching ------------------------------------------------------------------------
    async def _webhooks(self, attrs: Attributes) -> list[Obj]:
        configs = await self.server.list_objects(GROUP, "v1", self.plural, None)
        if not configs:
            return []
        namespaced = self.server.is_namespaced(attrs.group, attrs.version, attrs.resource)
        out: list[Obj] = []
        ns_labels: dict[str, str] | None = None
        for cfg in sorted(configs, key=lambda c: c["metadata"]["name"]):
            for wh in cfg.get("webhooks") or []:
                rules = wh.get("rules") or []
                equivalent = (wh.get("matchPolicy") or "Equivalent") == "Equivalent"
                if not any(_rule_matches(r, attrs, namespaced) or
                           (equivalent and _equivalent_rule_matches(r, attrs, namespaced))
                           for r in rules):
                    continue
                if not (_selector_matches(wh.get("objectSelector"), _labels(attrs.object)) or
                        attrs.old_object is not None and
                        _selector_matches(wh.get("objectSelector"), _labels(attrs.old_object))):
                    continue
                nsel = wh.get("namespaceSelector")
                if nsel and (nsel.get("matchLabels") or nsel.get("matchExpressions")):
                    if attrs.group == "" and attrs.resource == "namespaces":
                        labels = _labels(attrs.object or attrs.old_object)
                    elif namespaced and attrs.namespace:
                        if ns_labels is None:
                            ns_labels = await self.server.namespace_labels(attrs.namespace)
                        labels = ns_labels
                    else:
                        labels = None  # cluster-scoped: always matches
                    if labels is not None and not _selector_matches(nsel, labels):
                        continue
                out.append(dict(wh, _configuration=cfg["metadata"]["name"]))
        return out

    # -- phases ----------------------------------------------------------------------------
    async def admit(self, attrs: Attributes) -> None:
        hooks = await self._webhooks(attrs)
        if not hooks:
            return
        called_ifneeded: list[tuple[int, Obj]] = []
        for i, wh in enumerate(hooks):
            changed = await self._call_mutating(wh, attrs)
            if wh.get("reinvocationPolicy") == "IfNeeded":
                called_ifneeded.append((i, wh))
            if changed:
                # a later change makes earlier IfNeeded webhooks run again
                for j, prev in called_ifneeded:
                    if j < i:
                        prev["_reinvoke"] = True
        for _, wh in called_ifneeded:
            if wh.pop("_reinvoke", False):
                await self._call_mutating(wh, attrs)

    async def validate(self, attrs: Attributes) -> None:
        hooks = await self._webhooks(attrs)
        if not hooks:
            return
        results = await asyncio.gather(*(self._call(wh, attrs) for wh in hooks),
                                       return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                raise r

    async def _call_mutating(self, wh: Obj, attrs: Attributes) -> bool:
        resp = await self._call(wh, attrs)
        if not resp or not resp.get("patch"):
            return False
        if resp.get("patchType") not in ("JSONPatch",):
            raise errors.InternalError(
                f'Internal error occurred: admission webhook "{wh.get("name")}" returned a '
                f'patch of unsupported type {resp.get("patchType")!r}')
        try:
            ops = orjson.loads(base64.b64decode(resp["patch"]))
            new = patching.apply_json_patch(copy.deepcopy(attrs.object), ops)
        except Exception as e:
            raise errors.InternalError(
                f'Internal error occurred: JSON patch of admission webhook "{wh.get("name")}" '
                f"could not be applied: {e}") from None
        if not isinstance(new, dict):
            raise errors.InternalError(
                f'Internal error occurred: admission webhook "{wh.get("name")}" patch did not '
                "yield an object")
        if new == attrs.object:
            return False
        attrs.object = new
        attrs.mutated = True
        return True

    # -- the call ----------------------------------------------------------------------------
    def _review(self, attrs: Attributes) -> Obj:
        user = attrs.user.as_dict() if attrs.user is not None else \
            {"username": "system:anonymous", "groups": ["system:unauthenticated"]}
        req: Obj = {
            "uid": meta.new_uid(),
            "kind": {"group": attrs.group, "version": attrs.version, "kind": attrs.kind},
            "resource": {"group": attrs.group, "version": attrs.version,
                         "resource": attrs.resource},
            "requestKind": {"group": attrs.group, "version": attrs.version,
                            "kind": attrs.kind},
            "requestResource": {"group": attrs.group, "version": attrs.version,
                                "resource": attrs.resource},
            "name": attrs.name, "operation": attrs.operation, "userInfo": user,
            "object": attrs.object if attrs.operation != DELETE else None,
            "oldObject": attrs.old_object, "dryRun": attrs.dry_run,
            "options": _options(attrs),
        }
        if attrs.subresource:
            req["subResource"] = attrs.subresource
            req["requestSubResource"] = attrs.subresource
        if attrs.namespace:
            req["namespace"] = attrs.namespace
        return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": req}

    def _ssl_context(self, ca_bundle: str | None) -> ssl.SSLContext:
        key = ca_bundle or ""
        ctx = self._ssl.get(key)
        if ctx is None:
            if ca_bundle:
                pem = base64.b64decode(ca_bundle).decode()
                ctx = ssl.create_default_context(cadata=pem)
            else:
                ctx = ssl.create_default_context()
            self._ssl[key] = ctx
        return ctx

    async def _call(self, wh: Obj, attrs: Attributes) -> Obj | None:
        name = wh.get("name", "")
        if attrs.dry_run and wh.get("sideEffects") not in _NO_SIDE_EFFECTS:
            raise errors.BadRequest(f'admission webhook "{name}" does not support dry run')
        cc = wh.get("clientConfig") or {}
        url = cc.get("url")
        server_hostname: str | None = None
        timeout = float(wh.get("timeoutSeconds") or 10)
        review = self._review(attrs)
        try:
            if not url and cc.get("service"):
                svc = cc["service"]
                server_hostname = f"{svc.get('name')}.{svc.get('namespace')}.svc"
                url = f"https://{server_hostname}:{svc.get('port', 443)}{svc.get('path') or ''}"
                url = await self._service_url(svc) or url
            if self._session is None:
                self._session = aiohttp.ClientSession()
            async with self._session.post(
                    url, data=orjson.dumps(review),
                    headers={"Content-Type": "application/json",
                             "Accept": "application/json"},
                    ssl=self._ssl_context(cc.get("caBundle")),
                    server_hostname=server_hostname,
                    timeout=aiohttp.ClientTimeout(total=timeout)) as r:
                body = await r.read()
                if r.status != 200:
                    raise _Failure(f"expected response code 200, got {r.status}")
            out = orjson.loads(body)
            resp = out.get("response")
            if not isinstance(resp, dict):
                raise _Failure("webhook response was absent")
            if resp.get("uid") != review["request"]["uid"]:
                raise _Failure(f"expected response.uid={review['request']['uid']!r}, got "
                               f"{resp.get('uid')!r}")
        except (aiohttp.ClientError, asyncio.TimeoutError, _Failure, ValueError, ssl.SSLError,
                OSError) as e:
            why = "context deadline exceeded" if isinstance(e, asyncio.TimeoutError) else str(e)
            if (wh.get("failurePolicy") or "Fail") == "Ignore":
                log.warning("failed calling webhook %s (ignored): %s", name, why)
                return None
            raise errors.InternalError(
                f'Internal error occurred: failed calling webhook "{name}": failed to call '
                f'webhook: Post "{url}": {why}') from None
        if not resp.get("allowed"):
            raise _denied(name, resp.get("status") or {})
        return resp

    async def _service_url(self, svc: Obj) -> str | None:
        """A service reference resolved to one of its ready endpoints (pyk8s routes to
        endpoints, as upstream's --enable-aggregator-routing; cluster IPs are not routable
        here). TLS still verifies the name `<service>.<namespace>.svc`."""
        ns, name, port = svc.get("namespace"), svc.get("name"), int(svc.get("port") or 443)
        service = next((o for o in await self.server.list_objects("", "v1", "services", ns)
                        if o["metadata"]["name"] == name), None)
        endpoints = next((o for o in await self.server.list_objects("", "v1", "endpoints", ns)
                          if o["metadata"]["name"] == name), None)
        if service is None or endpoints is None:
            raise _Failure(f'service "{ns}/{name}" has no endpoints')
        sp = next((p for p in (service.get("spec") or {}).get("ports") or []
                   if int(p.get("port") or 0) == port), None)
        if sp is None:
            raise _Failure(f'service "{ns}/{name}" has no port {port}')
        for subset in endpoints.get("subsets") or []:
            ports = subset.get("ports") or []
            ep = next((p for p in ports if p.get("name", "") == sp.get("name", "")), None) \
                or (ports[0] if len(ports) == 1 else None)
            for addr in subset.get("addresses") or []:
                if ep is not None and addr.get("ip"):
                    host = addr["ip"] if ":" not in addr["ip"] else f"[{addr['ip']}]"
                    return f"https://{host}:{ep['port']}{svc.get('path') or ''}"
        raise _Failure(f'service "{ns}/{name}" has no ready endpoints')


def _denied(name: str, status: Obj) -> errors.ApiError:
    denied_by = f'admission webhook "{name}" denied the request'
    code = int(status.get("code") or 0)
    if code < 400:
        code = 400
    if status.get("message"):
        msg = f"{denied_by}: {status['message']}"
    elif status.get("reason"):
        msg = f"{denied_by}: {status['reason']}"
    else:
        msg = f"{denied_by} without explanation"
    return errors.ApiError(msg, code=code, reason=status.get("reason") or "",
                           details=status.get("details"))


def _options(attrs: Attributes) -> Obj:
    kind = {CREATE: "CreateOptions", DELETE: "DeleteOptions"}.get(attrs.operation,
                                                                   "UpdateOptions")
    out: Obj = {"kind": kind, "apiVersion": "meta.k8s.io/v1"}
    if attrs.dry_run:
        out["dryRun"] = ["All"]
    return out
