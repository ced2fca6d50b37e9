"""Strategies of the kinds served with admission: admissionregistration.k8s.io/v1 webhook
configurations, certificates.k8s.io/v1 CertificateSigningRequests (+approval, +status),
node.k8s.io/v1 RuntimeClasses and apiregistration.k8s.io/v1 APIServices (stored only).
Defaults and a minimal part of upstream's validation."""
from __future__ import annotations

import base64
import copy
import re
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


_CERT_CONDITION_TYPES = ("Approved", "Denied", "Failed")   # status True only, never removed
LEGACY_UNKNOWN_SIGNER = "kubernetes.io/legacy-unknown"


class CSRStrategy(Strategy):
    """Upstream's csrStrategy and its status / approval strategies: the requesting user
    is recorded in the spec; the spec never changes after creation; the main resource keeps
    the status; /status may set status.certificate (once) and conditions other than
    Approved / Denied; /approval changes only the conditions. Approved, Denied and Failed
    conditions are never removed."""

    def prepare_for_create(self, obj: Obj) -> None:
        super().prepare_for_create(obj)
        obj.pop("status", None)  # no pre-approved requests

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
            spec["extra"] = {k: list(v) for k, v in user.extra.items()}

    def prepare_for_update(self, new: Obj, old: Obj) -> None:
        super().prepare_for_update(new, old)   # keeps the status
        new["spec"] = copy.deepcopy(old.get("spec") or {})

    def prepare_for_status_update(self, new: Obj, old: Obj) -> Obj:
        """/status may change anything in status; Approved / Denied conditions keep their
        old values (adding or removing them fails validation)."""
        result = super().prepare_for_status_update(new, old)
        conds = _conditions(result)
        for t in ("Approved", "Denied"):
            old_idx = [i for i, c in enumerate(_conditions(old)) if c.get("type") == t]
            new_idx = [i for i, c in enumerate(conds) if c.get("type") == t]
            if len(old_idx) == len(new_idx):
                for o, n in zip(old_idx, new_idx):
                    conds[n] = copy.deepcopy(_conditions(old)[o])
        _default_and_stamp_conditions(result, old)
        return result

    def prepare_for_approval(self, new: Obj, old: Obj) -> Obj:
        """/approval changes only status.conditions."""
        result = copy.deepcopy(old)
        conds = copy.deepcopy((new.get("status") or {}).get("conditions"))
        if conds:
            result.setdefault("status", {})["conditions"] = conds
        else:
            (result.get("status") or {}).pop("conditions", None)
        result["metadata"]["resourceVersion"] = new.get("metadata", {}).get("resourceVersion")
        _default_and_stamp_conditions(result, old)
        return result

    def validate(self, obj: Obj, old: Obj | None = None) -> list[StatusCause]:
        errs = super().validate(obj, old)
        if old is not None:  # the main resource changes metadata only
            return errs
        spec = obj.get("spec") or {}
        req = spec.get("request")
        if not req:
            errs.append(field_required("spec.request"))
        elif (problem := _csr_request_problem(req)) is not None:
            errs.append(field_invalid("spec.request", "<bytes>", problem))
        signer = spec.get("signerName")
        if not signer:
            errs.append(field_required("spec.signerName"))
        elif signer == LEGACY_UNKNOWN_SIGNER:
            errs.append(field_invalid("spec.signerName", signer,
                                      "the legacy signerName is not allowed via this API "
                                      "version"))
        elif "/" not in signer:
            errs.append(field_invalid("spec.signerName", signer,
                                      "must be a fully qualified domain and path of the "
                                      "form 'example.com/signer-name'"))
        usages = spec.get("usages") or []
        if not usages:
            errs.append(field_required("spec.usages"))
        seen: set[str] = set()
        for i, u in enumerate(usages):
            if u not in KNOWN_USAGES:
                errs.append(field_not_supported(f"spec.usages[{i}]", u, sorted(KNOWN_USAGES)))
            elif u in seen:
                errs.append(field_duplicate(f"spec.usages[{i}]", u))
            seen.add(u)
        es = spec.get("expirationSeconds")
        if es is not None and (not isinstance(es, int) or es < 600):
            errs.append(field_invalid("spec.expirationSeconds", es,
                                      "may not specify a duration less than 600 seconds "
                                      "(10 minutes)"))
        return errs + validate_csr_conditions(obj)

    def validate_status(self, obj: Obj, old: Obj) -> list[StatusCause]:
        return validate_csr_update(obj, old, approval=False)

    def validate_approval(self, obj: Obj, old: Obj) -> list[StatusCause]:
        return validate_csr_update(obj, old, approval=True)


def _conditions(obj: Obj) -> list[Obj]:
    return ((obj.get("status") or {}).get("conditions")) or []


def _default_and_stamp_conditions(new: Obj, old: Obj) -> None:
    """v1 defaulting (status True) and upstream's populateConditionTimestamps."""
    now = _now()
    for c in _conditions(new):
        if not isinstance(c, dict):
            continue
        if not c.get("status"):
            c["status"] = "True"
        c.setdefault("lastUpdateTime", now)
        if not c.get("lastTransitionTime"):
            c["lastTransitionTime"] = next(
                (o["lastTransitionTime"] for o in _conditions(old)
                 if o.get("type") == c.get("type") and o.get("status") == c.get("status")
                 and o.get("lastTransitionTime")), now)


def _csr_request_problem(request: Any) -> str | None:
    """Why spec.request (base64 of PEM) is not a signed PKCS#10 request, or None."""
    from cryptography import x509
    try:
        pem = base64.b64decode(request, validate=True)
    except Exception:
        return "PEM block type must be CERTIFICATE REQUEST"
    start = pem.find(b"-----BEGIN ")
    if start < 0 or not pem[start:].startswith(b"-----BEGIN CERTIFICATE REQUEST-----"):
        return "PEM block type must be CERTIFICATE REQUEST"
    try:
        csr = x509.load_pem_x509_csr(pem[start:])
    except ValueError as e:
        return f"asn1: {e}"
    try:
        if not csr.is_signature_valid:
            return "x509: signature verification failure"
    except Exception as e:  # an unsupported signature algorithm
        return str(e)
    return None


def _certificate_problem(value: Any) -> str | None:
    """Why status.certificate (base64 of PEM) is not CERTIFICATE blocks only (upstream's
    validateCertificate), or None."""
    from cryptography import x509
    if not value:
        return None
    try:
        pem = base64.b64decode(value, validate=True).decode("ascii")
    except Exception:
        return "must contain at least one CERTIFICATE PEM block"
    blocks = re.findall(r"-----BEGIN ([^-]*)-----\r?\n(.*?)-----END \1-----", pem, re.S)
    if not blocks:
        return "must contain at least one CERTIFICATE PEM block"
    for kind, body in blocks:
        if kind != "CERTIFICATE":
            return f'only CERTIFICATE PEM blocks are allowed, found "{kind}"'
        if ":" in body.split("\n", 1)[0]:  # "Name: value" header lines
            return "no PEM block headers are permitted"
        try:
            x509.load_pem_x509_certificate(
                f"-----BEGIN CERTIFICATE-----\n{body}-----END CERTIFICATE-----\n".encode())
        except ValueError as e:
            return f"x509: malformed certificate: {e}"
    return None


def validate_csr_conditions(obj: Obj, old: Obj | None = None) -> list[StatusCause]:
    """Upstream's validateConditions (tolerating what the stored object already has)."""
    errs: list[StatusCause] = []
    old_conds = _conditions(old) if old is not None else []
    old_types = [c.get("type") for c in old_conds]
    allow_both = "Approved" in old_types and "Denied" in old_types
    allow_dup = len(old_types) != len(set(old_types))
    allow_empty = "" in old_types or None in old_types
    seen: set[str] = set()
    approved = denied = False
    for i, c in enumerate(_conditions(obj)):
        p = f"status.conditions[{i}]"
        t = c.get("type") or ""
        if not t and not allow_empty:
            errs.append(field_required(f"{p}.type"))
        st = c.get("status")
        allowed = ["True"] if t in _CERT_CONDITION_TYPES else ["False", "True", "Unknown"]
        if not st:
            errs.append(field_required(f"{p}.status"))
        elif st not in allowed:
            errs.append(field_not_supported(f"{p}.status", st, allowed))
        if not allow_both and t in ("Approved", "Denied"):
            approved, denied = approved or t == "Approved", denied or t == "Denied"
            if approved and denied:
                errs.append(field_invalid(f"{p}.type", t,
                                          "Approved and Denied conditions are mutually "
                                          "exclusive"))
        if not allow_dup and t in seen:
            errs.append(field_duplicate(f"{p}.type", t))
        seen.add(t)
    return errs


def validate_csr_update(new: Obj, old: Obj, approval: bool) -> list[StatusCause]:
    """Upstream's ValidateCertificateSigningRequest{Status,Approval}Update: /status may set
    status.certificate once, /approval may add or change Approved / Denied conditions;
    neither may remove an Approved, Denied or Failed condition."""
    errs = validate_csr_conditions(new, old)
    new_cert = (new.get("status") or {}).get("certificate")
    old_cert = (old.get("status") or {}).get("certificate")
    if new_cert != old_cert and _certificate_problem(old_cert) is None and \
            (problem := _certificate_problem(new_cert)) is not None:
        errs.append(field_invalid("status.certificate", "<certificate data>", problem))
    for t in _CERT_CONDITION_TYPES:
        old_c = [c for c in _conditions(old) if c.get("type") == t]
        new_c = [c for c in _conditions(new) if c.get("type") == t]
        if len(new_c) < len(old_c):
            errs.append(field_forbidden("status.conditions",
                                        f'updates may not remove a condition of type "{t}"'))
        elif not approval and t != "Failed":
            if len(new_c) > len(old_c):
                errs.append(field_forbidden("status.conditions",
                                            f'updates may not add a condition of type "{t}"'))
            elif new_c != old_c:
                errs.append(field_forbidden("status.conditions",
                                            f'updates may not modify a condition of type '
                                            f'"{t}"'))
    if (new_cert or "") != (old_cert or ""):
        if approval:
            errs.append(field_forbidden("status.certificate",
                                        "updates may not set certificate content"))
        elif old_cert:
            errs.append(field_forbidden("status.certificate",
                                        "updates may not modify existing certificate content"))
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
