"""Strategies of the kinds served with admission: admissionregistration.k8s.io/v1 webhook
configurations, certificates.k8s.io/v1 CertificateSigningRequests (+approval, +status),
node.k8s.io/v1 RuntimeClasses and apiregistration.k8s.io/v1 APIServices (stored only).
Defaults and a minimal part of upstream's validation."""
from __future__ import annotations

import base64
import copy
from typing import Any

from pyk8s.api.errors import (StatusCause, field_duplicate, field_forbidden, field_invalid,
                              field_not_supported, field_required)
from pyk8s.api.names import is_dns1123_label
from pyk8s.registry.strategy import Strategy

Obj = dict[str, Any]


# -- admissionregistration.k8s.io/v1 ---------------------------------------------------------
def default_webhooks(obj: Obj, mutating: bool) -> None:
    for wh in obj.get("webhooks") or []:
        if not isinstance(wh, dict):
            continue
        wh.setdefault("failurePolicy", "Fail")
        wh.setdefault("matchPolicy", "Equivalent")
        wh.setdefault("namespaceSelector", {})
        wh.setdefault("objectSelector", {})
        wh.setdefault("timeoutSeconds", 10)
        if mutating:
            wh.setdefault("reinvocationPolicy", "Never")
        for r in wh.get("rules") or []:
            if isinstance(r, dict):
                r.setdefault("scope", "*")
        svc = (wh.get("clientConfig") or {}).get("service")
        if isinstance(svc, dict):
            svc.setdefault("port", 443)


def validate_webhooks(obj: Obj, mutating: bool) -> list[StatusCause]:
    errs: list[StatusCause] = []
    seen: set[str] = set()
    for i, wh in enumerate(obj.get("webhooks") or []):
        p = f"webhooks[{i}]"
        if not isinstance(wh, dict):
            errs.append(field_invalid(p, wh, "must be an object"))
            continue
        name = wh.get("name") or ""
        if not name:
            errs.append(field_required(f"{p}.name"))
        elif name.count(".") < 2:
            errs.append(field_invalid(f"{p}.name", name,
                                      "should be a domain with at least three segments "
                                      "separated by dots"))
        elif name in seen:
            errs.append(field_duplicate(f"{p}.name", name))
        seen.add(name)
        cc = wh.get("clientConfig") or {}
        if bool(cc.get("url")) == bool(cc.get("service")):
            errs.append(field_required(f"{p}.clientConfig",
                                       "exactly one of url or service is required"))
        elif cc.get("url") and not str(cc["url"]).startswith("https://"):
            errs.append(field_invalid(f"{p}.clientConfig.url", cc["url"],
                                      "'https' is the only allowed URL scheme"))
        if cc.get("caBundle"):
            try:
                base64.b64decode(cc["caBundle"], validate=True)
            except Exception:
                errs.append(field_invalid(f"{p}.clientConfig.caBundle", "<bytes>",
                                          "must be base64"))
        se = wh.get("sideEffects")
        if se is None:
            errs.append(field_required(f"{p}.sideEffects", "must specify one of None, "
                                                           "NoneOnDryRun"))
        elif se not in ("None", "NoneOnDryRun"):
            errs.append(field_not_supported(f"{p}.sideEffects", se, ["None", "NoneOnDryRun"]))
        versions = wh.get("admissionReviewVersions") or []
        if not versions:
            errs.append(field_required(f"{p}.admissionReviewVersions",
                                       "must specify one of v1, v1beta1"))
        elif not any(v in ("v1", "v1beta1") for v in versions):
            errs.append(field_invalid(f"{p}.admissionReviewVersions", versions,
                                      "must include at least one of v1, v1beta1"))
        fp = wh.get("failurePolicy")
        if fp not in (None, "Fail", "Ignore"):
            errs.append(field_not_supported(f"{p}.failurePolicy", fp, ["Fail", "Ignore"]))
        mp = wh.get("matchPolicy")
        if mp not in (None, "Exact", "Equivalent"):
            errs.append(field_not_supported(f"{p}.matchPolicy", mp, ["Equivalent", "Exact"]))
        ts = wh.get("timeoutSeconds")
        if ts is not None and (not isinstance(ts, int) or not 1 <= ts <= 30):
            errs.append(field_invalid(f"{p}.timeoutSeconds", ts,
                                      "the timeout value must be between 1 and 30 seconds"))
        rp = wh.get("reinvocationPolicy")
        if mutating and rp not in (None, "Never", "IfNeeded"):
            errs.append(field_not_supported(f"{p}.reinvocationPolicy", rp,
                                            ["IfNeeded", "Never"]))
        for j, r in enumerate(wh.get("rules") or []):
            rp_ = f"{p}.rules[{j}]"
            for k in ("operations", "apiGroups", "apiVersions", "resources"):
                if not (r or {}).get(k):
                    errs.append(field_required(f"{rp_}.{k}"))
            for op in (r or {}).get("operations") or []:
                if op not in ("*", "CREATE", "UPDATE", "DELETE", "CONNECT"):
                    errs.append(field_not_supported(f"{rp_}.operations", op,
                                                    ["*", "CONNECT", "CREATE", "DELETE",
                                                     "UPDATE"]))
            sc = (r or {}).get("scope")
            if sc not in (None, "*", "Cluster", "Namespaced"):
                errs.append(field_not_supported(f"{rp_}.scope", sc,
                                                ["*", "Cluster", "Namespaced"]))
    return errs


class WebhookConfigurationStrategy(Strategy):
    @property
    def mutating(self) -> bool:
        return self.info.kind == "MutatingWebhookConfiguration"

    def default(self, obj: Obj) -> None:
        super().default(obj)
        default_webhooks(obj, self.mutating)

    def validate(self, obj: Obj, old: Obj | None = None) -> list[StatusCause]:
        return super().validate(obj, old) + validate_webhooks(obj, self.mutating)


# -- certificates.k8s.io/v1 --------------------------------------------------------------------
KNOWN_USAGES = ("signing", "digital signature", "content commitment", "key encipherment",
                "key agreement", "data encipherment", "cert sign", "crl sign",
                "encipher only", "decipher only", "any", "server auth", "client auth",
                "code signing", "email protection", "s/mime", "ipsec end system",
                "ipsec tunnel", "ipsec user", "timestamping", "ocsp signing",
                "microsoft sgc", "netscape sgc")


class CSRStrategy(Strategy):
    def prepare_for_create(self, obj: Obj) -> None:
        super().prepare_for_create(obj)
        obj.pop("status", None)

    def set_user(self, obj: Obj, user: Any) -> None:
        """Upstream: the requesting user is recorded in the spec, whatever was sent."""
        spec = obj.setdefault("spec", {})
        for k in ("username", "uid", "groups", "extra"):
            spec.pop(k, None)
        if user is None:
            return
        spec["username"] = user.username
        if user.uid:
            spec["uid"] = user.uid
        if user.groups:
            spec["groups"] = list(user.groups)
        if user.extra:
            spec["extra"] = copy.deepcopy(user.extra)

    def prepare_for_update(self, new: Obj, old: Obj) -> None:
        super().prepare_for_update(new, old)
        new["spec"] = copy.deepcopy(old.get("spec") or {})

    def prepare_for_status_update(self, new: Obj, old: Obj) -> Obj:
        """/status may change anything in status but the approval conditions."""
        result = super().prepare_for_status_update(new, old)
        conds = [c for c in ((old.get("status") or {}).get("conditions") or [])
                 if c.get("type") in ("Approved", "Denied")]
        others = [c for c in ((result.get("status") or {}).get("conditions") or [])
                  if c.get("type") not in ("Approved", "Denied")]
        if conds or others:
            result.setdefault("status", {})["conditions"] = conds + others
        return result

    def prepare_for_approval(self, new: Obj, old: Obj) -> Obj:
        """/approval changes only status.conditions."""
        result = copy.deepcopy(old)
        conds = (new.get("status") or {}).get("conditions")
        if conds:
            result.setdefault("status", {})["conditions"] = conds
        else:
            (result.get("status") or {}).pop("conditions", None)
        result["metadata"]["resourceVersion"] = new.get("metadata", {}).get("resourceVersion")
        for c in conds or []:
            c.setdefault("status", "True")
            c.setdefault("lastUpdateTime", _now())
            c.setdefault("lastTransitionTime", c["lastUpdateTime"])
        return result

    def validate(self, obj: Obj, old: Obj | None = None) -> list[StatusCause]:
        errs = super().validate(obj, old)
        spec = obj.get("spec") or {}
        if old is None:
            req = spec.get("request")
            if not req:
                errs.append(field_required("spec.request"))
            else:
                try:
                    pem = base64.b64decode(req, validate=True)
                    if b"CERTIFICATE REQUEST" not in pem:
                        raise ValueError
                except Exception:
                    errs.append(field_invalid("spec.request", "<bytes>",
                                              "PEM block type must be CERTIFICATE REQUEST"))
            if not spec.get("signerName"):
                errs.append(field_required("spec.signerName"))
            elif "/" not in spec["signerName"]:
                errs.append(field_invalid("spec.signerName", spec["signerName"],
                                          "must be a fully qualified domain and path of the "
                                          "form 'example.com/signer-name'"))
            usages = spec.get("usages") or []
            if not usages:
                errs.append(field_required("spec.usages"))
            for i, u in enumerate(usages):
                if u not in KNOWN_USAGES:
                    errs.append(field_not_supported(f"spec.usages[{i}]", u, list(KNOWN_USAGES)))
            es = spec.get("expirationSeconds")
            if es is not None and (not isinstance(es, int) or es < 600):
                errs.append(field_invalid("spec.expirationSeconds", es,
                                          "may not specify a duration less than 600 seconds "
                                          "(10 minutes)"))
        return errs + validate_csr_conditions(obj)

    def validate_status(self, obj: Obj, old: Obj) -> list[StatusCause]:
        return validate_csr_conditions(obj)


def validate_csr_conditions(obj: Obj) -> list[StatusCause]:
    errs: list[StatusCause] = []
    types: set[str] = set()
    for i, c in enumerate((obj.get("status") or {}).get("conditions") or []):
        t = c.get("type")
        if not t:
            errs.append(field_required(f"status.conditions[{i}].type"))
        elif t in ("Approved", "Denied", "Failed") and t in types:
            errs.append(field_duplicate(f"status.conditions[{i}].type", t))
        types.add(str(t))
        if t in ("Approved", "Denied") and c.get("status") not in (None, "True"):
            errs.append(field_not_supported(f"status.conditions[{i}].status",
                                            c.get("status"), ["True"]))
    if "Approved" in types and "Denied" in types:
        errs.append(field_invalid("status.conditions", "Approved",
                                  "Approved and Denied conditions are mutually exclusive"))
    return errs


def _now() -> str:
    from pyk8s.api import meta
    return meta.rfc3339()


# -- node.k8s.io/v1 ------------------------------------------------------------------------------
class RuntimeClassStrategy(Strategy):
    def validate(self, obj: Obj, old: Obj | None = None) -> list[StatusCause]:
        errs = super().validate(obj, old)
        handler = obj.get("handler")
        if not handler:
            errs.append(field_required("handler"))
        elif msgs := is_dns1123_label(str(handler)):
            errs.append(field_invalid("handler", handler, "; ".join(msgs)))
        if old is not None and old.get("handler") != handler:
            errs.append(field_invalid("handler", handler, "field is immutable"))
        oh = obj.get("overhead")
        if oh is not None and not isinstance(oh.get("podFixed", {}), dict):
            errs.append(field_invalid("overhead.podFixed", oh.get("podFixed"), "must be a map"))
        return errs


# -- apiregistration.k8s.io/v1 ----------------------------------------------------------------------
class APIServiceStrategy(Strategy):
    def default(self, obj: Obj) -> None:
        super().default(obj)
        svc = (obj.get("spec") or {}).get("service")
        if isinstance(svc, dict):
            svc.setdefault("port", 443)

    def validate(self, obj: Obj, old: Obj | None = None) -> list[StatusCause]:
        errs = super().validate(obj, old)
        spec = obj.get("spec") or {}
        name = (obj.get("metadata") or {}).get("name") or ""
        version, group = spec.get("version") or "", spec.get("group") or ""
        if not version:
            errs.append(field_required("spec.version"))
        if name and name != (f"{version}.{group}" if group else version):
            errs.append(field_invalid("metadata.name", name,
                                      f'must be `spec.version+"."+spec.group`: '
                                      f'"{version}.{group}"'))
        for f in ("groupPriorityMinimum", "versionPriority"):
            v = spec.get(f)
            if v is None or not isinstance(v, int) or v <= 0:
                errs.append(field_invalid(f"spec.{f}", v, "must be positive and less than "
                                          "1000000" if f == "versionPriority" else
                                          "must be positive and less than 20000"))
        if spec.get("service") is None and spec.get("caBundle"):
            errs.append(field_forbidden("spec.caBundle", "local APIServices may not have a "
                                        "caBundle"))
        if spec.get("insecureSkipTLSVerify") and spec.get("caBundle"):
            errs.append(field_invalid("spec.insecureSkipTLSVerify", True,
                                      "may not be true if caBundle is present"))
        return errs


STRATEGIES: dict[tuple[str, str], type[Strategy]] = {
    ("admissionregistration.k8s.io", "MutatingWebhookConfiguration"):
        WebhookConfigurationStrategy,
    ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration"):
        WebhookConfigurationStrategy,
    ("certificates.k8s.io", "CertificateSigningRequest"): CSRStrategy,
    ("node.k8s.io", "RuntimeClass"): RuntimeClassStrategy,
    ("apiregistration.k8s.io", "APIService"): APIServiceStrategy,
}
