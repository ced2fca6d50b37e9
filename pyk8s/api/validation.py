"""Upstream-shaped validation of API objects.

`validate(group, kind, obj, old)` returns the `StatusCause`s upstream's validation
(pkg/apis/*/validation and k8s.io/apimachinery/pkg/api/validation) would report, with the
same field paths and message texts, or `[]` for a valid object. `old` is given on update.

Validation runs on decoded, pruned and *defaulted* objects, as upstream does: fields that
`defaults.apply_defaults` fills (restartPolicy, dnsPolicy, imagePullPolicy, protocols, ...)
are required only when present but empty; an absent one is left alone.

Layout: small checkers for names and values (`is_*`, each returning upstream's message
strings), shared validators for metadata, label selectors and pod specs, then one function
per kind collected in `_VALIDATORS`. Unknown kinds (custom resources) get metadata checks.
"""
from __future__ import annotations

import base64
import binascii
import copy
import ipaddress
import json
import re
from fractions import Fraction
from typing import Any, Callable

from pyk8s.api.catalogue import BUILTIN
from pyk8s.api.names import (DNS1123_SUBDOMAIN_FMT, NON_NEGATIVE, IP_ERR, matches_fully, inclusive_range_error,
                              is_config_map_key, is_dns1035_label, is_dns1123_label,
                              is_dns1123_subdomain, is_qualified_name,
                              is_relaxed_env_var_name, is_valid_ip, is_valid_label_value,
                              is_valid_path_segment_name, is_valid_percent,
                              is_valid_port_name, is_valid_port_num, name_is_dns1035_label,
                              name_is_dns_label, name_is_dns_subdomain, name_is_path_segment)
from pyk8s.api.errors import (StatusCause, cause, field_duplicate, field_forbidden,
                              field_invalid, field_not_supported, field_required)

Errs = list[StatusCause]
NameFn = Callable[[str, bool], list[str]]

# ---------------------------------------------------------------------------------------
# Field paths and typed access
# ---------------------------------------------------------------------------------------


def _child(path: str, *names: str) -> str:
    for n in names:
        path = f"{path}.{n}" if path else n
    return path


def _idx(path: str, i: int) -> str:
    return f"{path}[{i}]"


def _key(path: str, k: str) -> str:
    return f"{path}[{k}]"


def _d(v: Any) -> dict:
    return v if isinstance(v, dict) else {}


def _l(v: Any) -> list:
    return v if isinstance(v, list) else []


def _s(v: Any) -> str:
    return v if isinstance(v, str) else ""


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _str_map(v: Any) -> dict[str, str]:
    return {k: x for k, x in v.items() if isinstance(x, str)} if isinstance(v, dict) else {}


# ---------------------------------------------------------------------------------------
# Error constructors beyond pyk8s.api.errors (values formatted like Go's %#v)
# ---------------------------------------------------------------------------------------


def _q(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def _goval(v: Any) -> str:
    """Roughly Go's `%#v` for the values upstream puts in messages."""
    if isinstance(v, dict):
        if all(isinstance(x, str) for x in v.values()):
            return "map[string]string{" + ", ".join(
                f"{_q(k)}:{_q(x)}" for k, x in sorted(v.items())) + "}"
        return json.dumps(v, sort_keys=True, separators=(",", ":"))
    if isinstance(v, list):
        if all(isinstance(x, str) for x in v):
            return "[]string{" + ", ".join(_q(x) for x in v) + "}"
        return json.dumps(v, sort_keys=True, separators=(",", ":"))
    if isinstance(v, str):
        return _q(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    return str(v)


def _go_string_map(v: Any) -> str:
    m = _str_map(v)
    if not isinstance(v, dict):
        return "map[string]string(nil)"
    return "map[string]string{" + ", ".join(f"{_q(k)}:{_q(x)}" for k, x in sorted(m.items())) + "}"


def _go_selector(sel: Any) -> str:
    """`v1.LabelSelector{MatchLabels:map[string]string{"app":"x"}, MatchExpressions:...}`."""
    sel = _d(sel)
    exprs = _l(sel.get("matchExpressions"))
    if exprs:
        parts = []
        for e in exprs:
            e = _d(e)
            vals = _l(e.get("values"))
            vs = ("[]string{" + ", ".join(_q(_s(x)) for x in vals) + "}") if vals \
                else "[]string(nil)"
            parts.append(f"v1.LabelSelectorRequirement{{Key:{_q(_s(e.get('key')))}, "
                         f"Operator:{_q(_s(e.get('operator')))}, Values:{vs}}}")
        ex = "[]v1.LabelSelectorRequirement{" + ", ".join(parts) + "}"
    else:
        ex = "[]v1.LabelSelectorRequirement(nil)"
    return f"v1.LabelSelector{{MatchLabels:{_go_string_map(sel.get('matchLabels'))}, " \
           f"MatchExpressions:{ex}}}"


def _invalid(field: str, value: Any, detail: str) -> StatusCause:
    if isinstance(value, (dict, list)):
        return cause(field, f"Invalid value: {_goval(value)}: {detail}")
    return field_invalid(field, value, detail)


def _invalid_raw(field: str, shown: str, detail: str) -> StatusCause:
    """Invalid with a value already formatted the way upstream prints it."""
    return cause(field, f"Invalid value: {shown}: {detail}")


def _not_found(field: str, value: Any) -> StatusCause:
    return cause(field, f"Not found: {_goval(value)}", "FieldValueNotFound")


def _too_long(field: str, max_bytes: int) -> StatusCause:
    return cause(field, f"Too long: must have at most {max_bytes} bytes", "FieldValueTooLong")


def _too_many(field: str, actual: int, maximum: int) -> StatusCause:
    return cause(field, f"Too many: {actual}: must have at most {maximum} items",
                 "FieldValueTooMany")


def _immutable(field: str, value: Any) -> StatusCause:
    return _invalid(field, value, FIELD_IMMUTABLE)


FIELD_IMMUTABLE = "field is immutable"

# ---------------------------------------------------------------------------------------
# Quantities (k8s.io/apimachinery/pkg/api/resource)
# ---------------------------------------------------------------------------------------

QUANTITY_ERR = ("quantities must match the regular expression "
                "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")
_QUANTITY_RE = re.compile(r"([+-]?)([0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
                          r"(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?[0-9]+)?")
_SUFFIX = {
    "": Fraction(1), "n": Fraction(1, 10**9), "u": Fraction(1, 10**6), "m": Fraction(1, 1000),
    "k": Fraction(10**3), "M": Fraction(10**6), "G": Fraction(10**9), "T": Fraction(10**12),
    "P": Fraction(10**15), "E": Fraction(10**18),
    "Ki": Fraction(2**10), "Mi": Fraction(2**20), "Gi": Fraction(2**30), "Ti": Fraction(2**40),
    "Pi": Fraction(2**50), "Ei": Fraction(2**60),
}


def parse_quantity(value: Any) -> Fraction | None:
    """A resource.Quantity as an exact Fraction, or None when it does not parse."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Fraction(value)
    if isinstance(value, float):
        return Fraction(str(value))
    if not isinstance(value, str):
        return None
    m = _QUANTITY_RE.fullmatch(value.strip())
    if not m:
        return None
    sign, num, suffix = m.group(1), m.group(2), m.group(3) or ""
    amount = Fraction(num)
    if suffix[:1] in ("e", "E"):
        mult = Fraction(10) ** int(suffix[1:])
    else:
        mult = _SUFFIX[suffix]
    q = amount * mult
    return -q if sign == "-" else q


def _qstr(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


# ---------------------------------------------------------------------------------------
# Cron schedules (robfig/cron ParseStandard, as CronJob validation uses)
# ---------------------------------------------------------------------------------------

_CRON_FIELDS = (  # (min, max, names)
    (0, 59, {}), (0, 23, {}), (1, 31, {}),
    (1, 12, {m: i + 1 for i, m in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"))}),
    (0, 6, {d: i for i, d in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}),
)
_CRON_DESCRIPTORS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight",
                     "@hourly"}
_DURATION_RE = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?(?:ns|us|µs|ms|s|m|h))+")


def _cron_int(expr: str) -> int:
    try:
        n = int(expr, 10)
    except ValueError:
        raise ValueError(f'failed to parse int from {expr}: strconv.Atoi: parsing "{expr}": '
                         "invalid syntax") from None
    if n < 0:
        raise ValueError(f"negative number ({n}) not allowed: {expr}")
    return n


def _cron_range(expr: str, lo: int, hi: int, names: dict[str, int]) -> None:
    range_and_step = expr.split("/")
    low_high = range_and_step[0].split("-")
    single = len(low_high) == 1

    def value(s: str) -> int:
        return names[s.lower()] if s.lower() in names else _cron_int(s)

    if low_high[0] in ("*", "?"):
        start, end = lo, hi
    else:
        start = value(low_high[0])
        if len(low_high) == 1:
            end = start
        elif len(low_high) == 2:
            end = value(low_high[1])
        else:
            raise ValueError(f"too many hyphens: {expr}")
    if len(range_and_step) == 2:
        step = _cron_int(range_and_step[1])
        if single and low_high[0] not in ("*", "?"):
            end = hi
        if step <= 0:
            raise ValueError(f"step of range should be a positive number: {expr}")
    elif len(range_and_step) > 2:
        raise ValueError(f"too many slashes: {expr}")
    if start < lo:
        raise ValueError(f"beginning of range ({start}) below minimum ({lo}): {expr}")
    if end > hi:
        raise ValueError(f"end of range ({end}) above maximum ({hi}): {expr}")
    if start > end:
        raise ValueError(f"beginning of range ({start}) beyond end of range ({end}): {expr}")


def parse_cron_schedule(spec: str) -> str | None:
    """None for a valid standard cron spec, else robfig/cron's error text."""
    if not spec:
        return "empty spec string"
    if spec.startswith("TZ=") or spec.startswith("CRON_TZ="):
        i = spec.find(" ")
        spec = spec[i:].strip() if i >= 0 else ""
    if spec.startswith("@"):
        if spec.startswith("@every "):
            d = spec[len("@every "):]
            if not _DURATION_RE.fullmatch(d):
                return f'failed to parse duration {spec}: time: invalid duration "{d}"'
            return None
        return None if spec in _CRON_DESCRIPTORS else f"unrecognized descriptor: {spec}"
    fields = spec.split()
    if len(fields) != 5:
        shown = "[" + " ".join(fields) + "]"
        return f"expected exactly 5 fields, found {len(fields)}: {shown}"
    try:
        for f, (lo, hi, names) in zip(fields, _CRON_FIELDS):
            for part in f.split(","):
                _cron_range(part, lo, hi, names)
    except ValueError as e:
        return str(e)
    return None


# ---------------------------------------------------------------------------------------
# Generic field validators
# ---------------------------------------------------------------------------------------


def validate_nonnegative(value: Any, path: str) -> Errs:
    v = _int(value)
    return [_invalid(path, v, NON_NEGATIVE)] if v is not None and v < 0 else []


def _validate_dns1123_label(value: str, path: str) -> Errs:
    return [_invalid(path, value, m) for m in is_dns1123_label(value)]


def _validate_dns1123_subdomain(value: str, path: str) -> Errs:
    return [_invalid(path, value, m) for m in is_dns1123_subdomain(value)]


def _validate_qualified_name(value: str, path: str) -> Errs:
    return [_invalid(path, value, m) for m in is_qualified_name(value)]


def validate_labels(labels: Any, path: str) -> Errs:
    errs: Errs = []
    for k, v in _d(labels).items():
        errs += [_invalid(path, k, m) for m in is_qualified_name(k)]
        if isinstance(v, str):
            errs += [_invalid(path, v, m) for m in is_valid_label_value(v)]
    return errs


TOTAL_ANNOTATION_SIZE_LIMIT = 256 * (1 << 10)


def validate_annotations(annotations: Any, path: str) -> Errs:
    errs: Errs = []
    total = 0
    for k, v in _d(annotations).items():
        errs += [_invalid(path, k, m) for m in is_qualified_name(k.lower())]
        total += len(k.encode()) + len(_s(v).encode())
    if total > TOTAL_ANNOTATION_SIZE_LIMIT:
        errs.append(_too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT))
    return errs


def _validate_port_num_or_name(port: Any, path: str) -> Errs:
    if isinstance(port, str):
        return [_invalid(path, port, m) for m in is_valid_port_name(port)]
    if _int(port) is not None:
        return [_invalid(path, port, m) for m in is_valid_port_num(port)]
    return []


def _port_or_zero(port: Any) -> Any:
    """An absent IntOrString port is Go's zero value, the integer 0."""
    return 0 if port is None else port


def _validate_positive_int_or_percent(value: Any, path: str) -> Errs:
    if isinstance(value, str):
        return [_invalid(path, value, m) for m in is_valid_percent(value)]
    return validate_nonnegative(value, path)


def _int_or_percent_value(value: Any) -> int:
    if isinstance(value, str):
        try:
            return int(value.rstrip("%"))
        except ValueError:
            return 0
    return _int(value) or 0


def _not_more_than_100_percent(value: Any, path: str) -> Errs:
    if isinstance(value, str) and not is_valid_percent(value) and _int_or_percent_value(value) > 100:
        return [_invalid(path, value, "must not be greater than 100%")]
    return []


def _enum(value: Any, path: str, supported: list[str], *, required_detail: str = "") -> Errs:
    """Absent: fine (defaulted elsewhere); "": Required; unknown: NotSupported."""
    if value is None:
        return []
    if value == "":
        return [field_required(path, required_detail)]
    if value not in supported:
        return [field_not_supported(path, value, supported)]
    return []


# ---------------------------------------------------------------------------------------
# Object metadata (apimachinery ValidateObjectMeta / ValidateObjectMetaUpdate)
# ---------------------------------------------------------------------------------------

_STANDARD_FINALIZERS = {"kubernetes", "orphan", "foregroundDeletion"}


def validate_owner_references(refs: Any, path: str) -> Errs:
    errs: Errs = []
    first_controller = ""
    for ref in _l(refs):
        ref = _d(ref)
        api_version = _s(ref.get("apiVersion"))
        version = api_version.rsplit("/", 1)[-1]
        if not version:
            errs.append(_invalid(_child(path, "apiVersion"), api_version,
                                 "version must not be empty"))
        if not _s(ref.get("kind")):
            errs.append(_invalid(_child(path, "kind"), _s(ref.get("kind")),
                                 "kind must not be empty"))
        if not _s(ref.get("name")):
            errs.append(_invalid(_child(path, "name"), _s(ref.get("name")),
                                 "name must not be empty"))
        if not _s(ref.get("uid")):
            errs.append(_invalid(_child(path, "uid"), _s(ref.get("uid")), "uid must not be empty"))
        if ref.get("controller") is True:
            current = f"{_s(ref.get('kind'))}/{_s(ref.get('name'))}"
            if first_controller:
                errs.append(_invalid(path, refs, "Only one reference can have Controller set to "
                                     f'true. Found "true" in references for {first_controller} '
                                     f"and {current}"))
            else:
                first_controller = current
    return errs


def validate_finalizers(finalizers: Any, path: str, *, builtin: bool) -> Errs:
    names = [f for f in _l(finalizers) if isinstance(f, str)]
    errs: Errs = []
    for f in names:
        errs += [_invalid(path, f, m) for m in is_qualified_name(f)]
    if "orphan" in names and "foregroundDeletion" in names:
        errs.append(_invalid(path, names, "finalizer orphan and foregroundDeletion cannot be "
                                          "both set"))
    if builtin:
        for i, f in enumerate(names):
            if "/" not in f and f not in _STANDARD_FINALIZERS:
                errs.append(_invalid(_idx(path, i), f, "name is neither a standard finalizer "
                                                       "name nor is it fully qualified"))
    return errs


def validate_object_meta(meta: Any, namespaced: bool | None, name_fn: NameFn, *,
                         builtin: bool = True, path: str = "metadata") -> Errs:
    meta = _d(meta)
    errs: Errs = []
    generate = _s(meta.get("generateName"))
    if generate:
        errs += [_invalid(_child(path, "generateName"), generate, m)
                 for m in name_fn(generate, True)]
    name = _s(meta.get("name"))
    if not name:
        errs.append(field_required(_child(path, "name"), "name or generateName is required"))
    else:
        errs += [_invalid(_child(path, "name"), name, m) for m in name_fn(name, False)]
    namespace = _s(meta.get("namespace"))
    if namespaced is True and not namespace:
        errs.append(field_required(_child(path, "namespace")))
    elif namespaced is False and namespace:
        errs.append(field_forbidden(_child(path, "namespace"), "not allowed on this type"))
    elif namespace:
        errs += [_invalid(_child(path, "namespace"), namespace, m)
                 for m in is_dns1123_label(namespace)]
    errs += validate_nonnegative(meta.get("generation"), _child(path, "generation"))
    errs += _validate_meta_common(meta, path, builtin=builtin)
    return errs


def _validate_meta_common(meta: dict, path: str, *, builtin: bool) -> Errs:
    errs = validate_labels(meta.get("labels"), _child(path, "labels"))
    errs += validate_annotations(meta.get("annotations"), _child(path, "annotations"))
    errs += validate_owner_references(meta.get("ownerReferences"), _child(path, "ownerReferences"))
    errs += validate_finalizers(meta.get("finalizers"), _child(path, "finalizers"),
                                builtin=builtin)
    return errs


def validate_object_meta_update(new: Any, old: Any, *, builtin: bool = True,
                                path: str = "metadata") -> Errs:
    new, old = _d(new), _d(old)
    errs: Errs = []
    if old.get("deletionTimestamp"):
        old_finalizers = {f for f in _l(old.get("finalizers")) if isinstance(f, str)}
        extra = sorted({f for f in _l(new.get("finalizers")) if isinstance(f, str)}
                       - old_finalizers)
        if extra:
            errs.append(field_forbidden(
                _child(path, "finalizers"),
                "no new finalizers can be added if the object is being deleted, found new "
                f"finalizers {_goval([str(x) for x in extra])}"))
    ng, og = _int(new.get("generation")), _int(old.get("generation"))
    if ng is not None and og is not None and ng < og:
        errs.append(_invalid(_child(path, "generation"), ng, "must not be decremented"))
    for f in ("name", "namespace", "uid", "creationTimestamp", "deletionTimestamp",
              "deletionGracePeriodSeconds"):
        # Upstream's BeforeUpdate carries uid, creationTimestamp and the deletion fields over
        # from the stored object when the request omits them; only a different value fails.
        if f not in ("name", "namespace") and new.get(f) in (None, ""):
            continue
        if (new.get(f) or None) != (old.get(f) or None):
            errs.append(_immutable(_child(path, f), new.get(f)))
    errs += _validate_meta_common(new, path, builtin=builtin)
    return errs


# ---------------------------------------------------------------------------------------
# Label selectors
# ---------------------------------------------------------------------------------------

_SELECTOR_OPS = ("In", "NotIn", "Exists", "DoesNotExist")


def validate_label_selector(sel: Any, path: str) -> Errs:
    if sel is None:
        return []
    sel = _d(sel)
    errs: Errs = []
    for i, expr in enumerate(_l(sel.get("matchExpressions"))):
        p = _idx(_child(path, "matchExpressions"), i)
        expr = _d(expr)
        op, values = expr.get("operator"), _l(expr.get("values"))
        if op in ("In", "NotIn"):
            if not values:
                errs.append(field_required(_child(p, "values"),
                                           "must be specified when `operator` is 'In' or 'NotIn'"))
        elif op in ("Exists", "DoesNotExist"):
            if values:
                errs.append(field_forbidden(_child(p, "values"), "may not be specified when "
                                            "`operator` is 'Exists' or 'DoesNotExist'"))
        else:
            errs.append(_invalid(_child(p, "operator"), _s(op), "not a valid selector operator"))
        key = _s(expr.get("key"))
        errs += [_invalid(_child(p, "key"), key, m) for m in is_qualified_name(key)]
        for j, v in enumerate(values):
            if isinstance(v, str):
                errs += [_invalid(_idx(_child(p, "values"), j), v, m)
                         for m in is_valid_label_value(v)]
    errs += validate_labels(sel.get("matchLabels"), _child(path, "matchLabels"))
    return errs


def selector_is_empty(sel: Any) -> bool:
    sel = _d(sel)
    return not _d(sel.get("matchLabels")) and not _l(sel.get("matchExpressions"))


def selector_matches(sel: Any, labels: Any) -> bool:
    """metav1.LabelSelectorAsSelector(sel).Matches(labels); a nil selector matches nothing."""
    if sel is None:
        return False
    sel, labels = _d(sel), _str_map(labels)
    for k, v in _d(sel.get("matchLabels")).items():
        if labels.get(k) != v:
            return False
    for expr in _l(sel.get("matchExpressions")):
        expr = _d(expr)
        key, op, values = _s(expr.get("key")), expr.get("operator"), _l(expr.get("values"))
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


# ---------------------------------------------------------------------------------------
# Pod specs (pkg/apis/core/validation)
# ---------------------------------------------------------------------------------------

_PROTOCOLS = ["SCTP", "TCP", "UDP"]
_RESTART_POLICIES = ["Always", "OnFailure", "Never"]
_DNS_POLICIES = ["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"]
_PULL_POLICIES = ["Always", "IfNotPresent", "Never"]
_TAINT_EFFECTS = ["NoSchedule", "PreferNoSchedule", "NoExecute"]
_FILE_MODE_ERR = "must be a number between 0 and 0777 (octal), both inclusive"
_STANDARD_CONTAINER_RESOURCES = {"cpu", "memory", "ephemeral-storage"}
_STANDARD_RESOURCES = _STANDARD_CONTAINER_RESOURCES | {
    "pods", "services", "replicationcontrollers", "resourcequotas", "secrets", "configmaps",
    "persistentvolumeclaims", "storage", "requests.cpu", "requests.memory",
    "requests.storage", "requests.ephemeral-storage", "limits.cpu", "limits.memory",
    "limits.ephemeral-storage", "services.nodeports", "services.loadbalancers"}
_ENV_FIELD_PATHS = ["metadata.annotations", "metadata.labels", "metadata.name",
                    "metadata.namespace", "metadata.uid", "spec.nodeName",
                    "spec.serviceAccountName", "status.hostIP", "status.hostIPs",
                    "status.podIP", "status.podIPs"]
_VOLUME_SOURCES = (
    "hostPath", "emptyDir", "gcePersistentDisk", "awsElasticBlockStore", "gitRepo", "secret",
    "nfs", "iscsi", "glusterfs", "persistentVolumeClaim", "rbd", "flexVolume", "cinder",
    "cephfs", "flocker", "downwardAPI", "fc", "azureFile", "configMap", "vsphereVolume",
    "quobyte", "azureDisk", "photonPersistentDisk", "projected", "portworxVolume", "scaleIO",
    "storageos", "csi", "ephemeral", "image")


def _validate_volume_source(vol: dict, path: str) -> Errs:
    present = [s for s in _VOLUME_SOURCES if vol.get(s) is not None]
    if not present:
        return [field_required(path, "must specify a volume type")]
    errs: Errs = [field_forbidden(_child(path, s), "may not specify more than 1 volume type")
                  for s in present[1:]]
    src, kind = _d(vol.get(present[0])), present[0]
    p = _child(path, kind)
    if kind in ("secret", "configMap", "downwardAPI", "projected"):
        mode = _int(src.get("defaultMode"))
        if mode is not None and not 0 <= mode <= 0o777:
            errs.append(_invalid(_child(p, "defaultMode"), mode, _FILE_MODE_ERR))
    if kind == "configMap" and not _s(src.get("name")):
        errs.append(field_required(_child(p, "name")))
    elif kind == "secret" and not _s(src.get("secretName")):
        errs.append(field_required(_child(p, "secretName")))
    elif kind == "hostPath":
        if not _s(src.get("path")):
            errs.append(field_required(_child(p, "path")))
        host_path_types = ["", "BlockDevice", "CharDevice", "Directory", "DirectoryOrCreate",
                           "File", "FileOrCreate", "Socket"]
        if src.get("type") is not None and src.get("type") not in host_path_types:
            errs.append(field_not_supported(_child(p, "type"), src.get("type"), host_path_types))
    elif kind == "persistentVolumeClaim" and not _s(src.get("claimName")):
        errs.append(field_required(_child(p, "claimName")))
    elif kind == "nfs":
        if not _s(src.get("server")):
            errs.append(field_required(_child(p, "server")))
        if not _s(src.get("path")):
            errs.append(field_required(_child(p, "path")))
        elif not _s(src.get("path")).startswith("/"):
            errs.append(_invalid(_child(p, "path"), src.get("path"), "must be an absolute path"))
    elif kind == "emptyDir":
        size = src.get("sizeLimit")
        if size is not None:
            errs += _validate_quantity(size, _child(p, "sizeLimit"))
    for i, item in enumerate(_l(src.get("items"))):
        ip = _idx(_child(p, "items"), i)
        item = _d(item)
        if kind in ("secret", "configMap"):
            if not _s(item.get("key")):
                errs.append(field_required(_child(ip, "key")))
        if not _s(item.get("path")):
            errs.append(field_required(_child(ip, "path")))
        else:
            errs += _validate_local_descending_path(_s(item.get("path")), _child(ip, "path"))
    return errs


def _validate_local_descending_path(value: str, path: str) -> Errs:
    errs: Errs = []
    if value.startswith("/"):
        errs.append(_invalid(path, value, "must be a relative path"))
    if ".." in value.replace("\\", "/").split("/"):
        errs.append(_invalid(path, value, "must not contain '..'"))
    return errs


def _validate_volumes(volumes: Any, path: str) -> tuple[set[str], Errs]:
    names: set[str] = set()
    errs: Errs = []
    for i, vol in enumerate(_l(volumes)):
        p = _idx(path, i)
        vol = _d(vol)
        errs += _validate_volume_source(vol, p)
        name = _s(vol.get("name"))
        if not name:
            errs.append(field_required(_child(p, "name")))
        else:
            errs += _validate_dns1123_label(name, _child(p, "name"))
        if name in names:
            errs.append(field_duplicate(_child(p, "name"), name))
        else:
            names.add(name)
    return names, errs


def _validate_container_ports(ports: Any, path: str) -> Errs:
    errs: Errs = []
    names: set[str] = set()
    for i, port in enumerate(_l(ports)):
        p = _idx(path, i)
        port = _d(port)
        name = _s(port.get("name"))
        if name:
            msgs = is_valid_port_name(name)
            if msgs:
                errs += [_invalid(_child(p, "name"), name, m) for m in msgs]
            elif name in names:
                errs.append(field_duplicate(_child(p, "name"), name))
            else:
                names.add(name)
        cp = port.get("containerPort")
        if not cp:
            errs.append(field_required(_child(p, "containerPort")))
        else:
            errs += [_invalid(_child(p, "containerPort"), cp, m) for m in is_valid_port_num(cp)]
        hp = port.get("hostPort")
        if hp:
            errs += [_invalid(_child(p, "hostPort"), hp, m) for m in is_valid_port_num(hp)]
        errs += _enum(port.get("protocol"), _child(p, "protocol"), _PROTOCOLS)
    return errs


def _validate_key_selector(ref: dict, path: str) -> Errs:
    errs = [_invalid(_child(path, "name"), _s(ref.get("name")), m)
            for m in is_dns1123_subdomain(_s(ref.get("name")))]
    key = _s(ref.get("key"))
    if not key:
        errs.append(field_required(_child(path, "key")))
    else:
        errs += [_invalid(_child(path, "key"), key, m) for m in is_config_map_key(key)]
    return errs


def _validate_env_value_from(ev: dict, path: str) -> Errs:
    vf = ev.get("valueFrom")
    if vf is None:
        return []
    vf = _d(vf)
    errs: Errs = []
    sources = 0
    if vf.get("fieldRef") is not None:
        sources += 1
        ref = _d(vf["fieldRef"])
        fp, p = _s(ref.get("fieldPath")), _child(path, "fieldRef")
        if not ref.get("apiVersion") and "apiVersion" in ref:
            errs.append(field_required(_child(p, "apiVersion")))
        if not fp:
            errs.append(field_required(_child(p, "fieldPath")))
        else:
            base = fp.split("[", 1)[0]
            subscripted = "[" in fp and base in ("metadata.labels", "metadata.annotations")
            if not subscripted and fp not in _ENV_FIELD_PATHS:
                errs.append(field_not_supported(_child(p, "fieldPath"), fp, _ENV_FIELD_PATHS))
    if vf.get("resourceFieldRef") is not None:
        sources += 1
        if not _s(_d(vf["resourceFieldRef"]).get("resource")):
            errs.append(field_required(_child(path, "resourceFieldRef", "resource")))
    for ref_key in ("configMapKeyRef", "secretKeyRef"):
        if vf.get(ref_key) is not None:
            sources += 1
            errs += _validate_key_selector(_d(vf[ref_key]), _child(path, ref_key))
    if sources == 0:
        errs.append(_invalid(path, "", "must specify one of: `fieldRef`, `resourceFieldRef`, "
                                       "`configMapKeyRef` or `secretKeyRef`"))
    elif _s(ev.get("value")):
        errs.append(_invalid(path, "", "may not be specified when `value` is not empty"))
    elif sources > 1:
        errs.append(_invalid(path, "", "may not have more than one field specified at a time"))
    return errs


def _validate_env(env: Any, path: str) -> Errs:
    errs: Errs = []
    for i, ev in enumerate(_l(env)):
        p = _idx(path, i)
        ev = _d(ev)
        name = _s(ev.get("name"))
        if not name:
            errs.append(field_required(_child(p, "name")))
        else:
            errs += [_invalid(_child(p, "name"), name, m) for m in is_relaxed_env_var_name(name)]
        errs += _validate_env_value_from(ev, _child(p, "valueFrom"))
    return errs


def _validate_env_from(env_from: Any, path: str) -> Errs:
    errs: Errs = []
    for i, src in enumerate(_l(env_from)):
        p = _idx(path, i)
        src = _d(src)
        prefix = _s(src.get("prefix"))
        if prefix:
            errs += [_invalid(_child(p, "prefix"), prefix, m)
                     for m in is_relaxed_env_var_name(prefix)]
        refs = [k for k in ("configMapRef", "secretRef") if src.get(k) is not None]
        if not refs:
            errs.append(_invalid(p, "", "must specify one of: `configMapRef` or `secretRef`"))
        elif len(refs) > 1:
            errs.append(_invalid(p, "", "may not have more than one field specified at a time"))
        for k in refs:
            name = _s(_d(src[k]).get("name"))
            errs += [_invalid(_child(p, k, "name"), name, m) for m in is_dns1123_subdomain(name)]
    return errs


def _validate_volume_mounts(mounts: Any, volumes: set[str], path: str) -> Errs:
    errs: Errs = []
    mount_points: set[str] = set()
    for i, mnt in enumerate(_l(mounts)):
        p = _idx(path, i)
        mnt = _d(mnt)
        name, mount_path = _s(mnt.get("name")), _s(mnt.get("mountPath"))
        if not name:
            errs.append(field_required(_child(p, "name")))
        if name not in volumes:
            errs.append(_not_found(_child(p, "name"), name))
        if not mount_path:
            errs.append(field_required(_child(p, "mountPath")))
        if mount_path in mount_points:
            errs.append(_invalid(_child(p, "mountPath"), mount_path, "must be unique"))
        mount_points.add(mount_path)
        sub = _s(mnt.get("subPath"))
        if sub:
            errs += _validate_local_descending_path(sub, _child(p, "subPath"))
        errs += _enum(mnt.get("mountPropagation"), _child(p, "mountPropagation"),
                      ["Bidirectional", "HostToContainer", "None"])
    return errs


def _validate_quantity(value: Any, path: str) -> Errs:
    q = parse_quantity(value)
    if q is None:
        return [_invalid(path, _qstr(value), QUANTITY_ERR)]
    if q < 0:
        return [_invalid(path, _qstr(value), NON_NEGATIVE)]
    return []


def _is_integer_resource(name: str) -> bool:
    return "/" in name and not name.startswith("kubernetes.io/") and ".kubernetes.io/" not in name


def _validate_container_resource_name(name: str, path: str) -> Errs:
    errs = [_invalid(path, name, m) for m in is_qualified_name(name)]
    if errs:
        return errs
    if "/" not in name:
        if name not in _STANDARD_RESOURCES and not name.startswith("hugepages-"):
            errs.append(_invalid(path, name, "must be a standard resource type or fully qualified"))
        if name not in _STANDARD_CONTAINER_RESOURCES and not name.startswith("hugepages-"):
            errs.append(_invalid(path, name, "must be a standard resource for containers"))
    return errs


def _validate_resources(res: Any, path: str) -> Errs:
    res = _d(res)
    errs: Errs = []
    limits, requests = _d(res.get("limits")), _d(res.get("requests"))
    lim_path, req_path = _child(path, "limits"), _child(path, "requests")
    for name, value in limits.items():
        p = _key(lim_path, name)
        errs += _validate_container_resource_name(name, p)
        errs += _validate_resource_value(name, value, p)
    for name, value in requests.items():
        p = _key(req_path, name)
        errs += _validate_container_resource_name(name, p)
        errs += _validate_resource_value(name, value, p)
        overcommit = name in _STANDARD_CONTAINER_RESOURCES
        if name not in limits:
            if not overcommit:
                errs.append(field_required(lim_path,
                                           "Limit must be set for non overcommitable resources"))
            continue
        req, lim = parse_quantity(value), parse_quantity(limits[name])
        if req is None or lim is None:
            continue
        if req != lim and not overcommit:
            errs.append(_invalid(req_path, _qstr(value),
                                 f"must be equal to {name} limit of {_qstr(limits[name])}"))
        elif req > lim:
            errs.append(_invalid(req_path, _qstr(value), f"must be less than or equal to {name} "
                                                         f"limit of {_qstr(limits[name])}"))
    return errs


def _validate_resource_value(name: str, value: Any, path: str) -> Errs:
    errs = _validate_quantity(value, path)
    q = parse_quantity(value)
    if not errs and q is not None and _is_integer_resource(name) and q.denominator != 1:
        errs.append(_invalid(path, _qstr(value), "must be an integer"))
    return errs


_HANDLER_TYPES = ("exec", "httpGet", "tcpSocket", "grpc", "sleep")


def _validate_handler(handler: dict, path: str, allowed: tuple[str, ...] = _HANDLER_TYPES) -> Errs:
    errs: Errs = []
    found = 0
    for t in allowed:
        if handler.get(t) is None:
            continue
        if found:
            errs.append(field_forbidden(_child(path, t), "may not specify more than 1 handler type"))
            continue
        found += 1
        h, p = _d(handler[t]), _child(path, t)
        if t == "exec" and not _l(h.get("command")):
            errs.append(field_required(_child(p, "command")))
        elif t == "httpGet":
            if "path" in h and not _s(h.get("path")):
                errs.append(field_required(_child(p, "path")))
            errs += _validate_port_num_or_name(_port_or_zero(h.get("port")), _child(p, "port"))
            errs += _enum(h.get("scheme"), _child(p, "scheme"), ["HTTP", "HTTPS"])
        elif t == "tcpSocket":
            errs += _validate_port_num_or_name(_port_or_zero(h.get("port")), _child(p, "port"))
        elif t == "grpc":
            errs += [_invalid(_child(p, "port"), h.get("port"), m)
                     for m in is_valid_port_num(h.get("port"))]
        elif t == "sleep":
            secs = _int(h.get("seconds"))
            if secs is not None and secs <= 0:
                errs.append(_invalid(_child(p, "seconds"), secs, "must be greater than 0"))
    if not found:
        errs.append(field_required(path, "must specify a handler type"))
    return errs


def _validate_probe(probe: Any, path: str, *, success_must_be_one: bool) -> Errs:
    if probe is None:
        return []
    probe = _d(probe)
    errs = _validate_handler(probe, path, ("exec", "httpGet", "tcpSocket", "grpc"))
    for f in ("initialDelaySeconds", "timeoutSeconds", "periodSeconds", "successThreshold",
              "failureThreshold"):
        errs += validate_nonnegative(probe.get(f), _child(path, f))
    tgp = _int(probe.get("terminationGracePeriodSeconds"))
    if tgp is not None and tgp <= 0:
        errs.append(_invalid(_child(path, "terminationGracePeriodSeconds"), tgp,
                             "must be greater than 0"))
    st = _int(probe.get("successThreshold"))
    if success_must_be_one and st is not None and st != 1:
        errs.append(_invalid(_child(path, "successThreshold"), st, "must be 1"))
    return errs


def _validate_lifecycle(lifecycle: Any, path: str) -> Errs:
    errs: Errs = []
    for hook in ("postStart", "preStop"):
        h = _d(lifecycle).get(hook)
        if h is not None:
            errs += _validate_handler(_d(h), _child(path, hook))
    return errs


def _validate_container_common(ctr: dict, volumes: set[str], path: str) -> Errs:
    errs: Errs = []
    name = _s(ctr.get("name"))
    if not name:
        errs.append(field_required(_child(path, "name")))
    else:
        errs += _validate_dns1123_label(name, _child(path, "name"))
    if not _s(ctr.get("image")):
        errs.append(field_required(_child(path, "image")))
    tmp = ctr.get("terminationMessagePolicy")
    if tmp == "":
        errs.append(field_required(_child(path, "terminationMessagePolicy"),
                                   "must be 'File' or 'FallbackToLogsOnError'"))
    elif tmp is not None and tmp not in ("File", "FallbackToLogsOnError"):
        errs.append(_invalid(_child(path, "terminationMessagePolicy"), tmp,
                             "must be 'File' or 'FallbackToLogsOnError'"))
    errs += _validate_container_ports(ctr.get("ports"), _child(path, "ports"))
    errs += _validate_env(ctr.get("env"), _child(path, "env"))
    errs += _validate_env_from(ctr.get("envFrom"), _child(path, "envFrom"))
    errs += _validate_volume_mounts(ctr.get("volumeMounts"), volumes, _child(path, "volumeMounts"))
    errs += _enum(ctr.get("imagePullPolicy"), _child(path, "imagePullPolicy"), _PULL_POLICIES)
    errs += _validate_resources(ctr.get("resources"), _child(path, "resources"))
    return errs


def _validate_probes_and_lifecycle(ctr: dict, path: str) -> Errs:
    errs = _validate_probe(ctr.get("livenessProbe"), _child(path, "livenessProbe"),
                           success_must_be_one=True)
    errs += _validate_probe(ctr.get("readinessProbe"), _child(path, "readinessProbe"),
                            success_must_be_one=False)
    errs += _validate_probe(ctr.get("startupProbe"), _child(path, "startupProbe"),
                            success_must_be_one=True)
    if ctr.get("lifecycle") is not None:
        errs += _validate_lifecycle(ctr["lifecycle"], _child(path, "lifecycle"))
    return errs


def _validate_containers(containers: list, volumes: set[str], path: str) -> Errs:
    errs: Errs = []
    if not containers:
        errs.append(field_required(path))
    names: set[str] = set()
    for i, ctr in enumerate(containers):
        p, ctr = _idx(path, i), _d(ctr)
        errs += _validate_container_common(ctr, volumes, p)
        name = _s(ctr.get("name"))
        if name in names:
            errs.append(field_duplicate(_child(p, "name"), name))
        else:
            names.add(name)
        errs += _validate_probes_and_lifecycle(ctr, p)
        if ctr.get("restartPolicy") is not None:
            errs.append(field_forbidden(_child(p, "restartPolicy"),
                                        "may not be set for non-init containers"))
    return errs


def _validate_init_containers(init: list, containers: list, volumes: set[str],
                              path: str) -> Errs:
    errs: Errs = []
    names = {_s(_d(c).get("name")) for c in containers}
    for i, ctr in enumerate(init):
        p, ctr = _idx(path, i), _d(ctr)
        errs += _validate_container_common(ctr, volumes, p)
        name = _s(ctr.get("name"))
        if name in names:
            errs.append(field_duplicate(_child(p, "name"), name))
        else:
            names.add(name)
        policy = ctr.get("restartPolicy")
        if policy is not None and policy != "Always":
            errs.append(field_not_supported(_child(p, "restartPolicy"), policy, ["Always"]))
        if policy == "Always":
            errs += _validate_probes_and_lifecycle(ctr, p)
        else:
            for f in ("lifecycle", "livenessProbe", "readinessProbe", "startupProbe"):
                if ctr.get(f) is not None:
                    errs.append(field_forbidden(_child(p, f), "may not be set for init "
                                                "containers without restartPolicy=Always"))
    return errs


def _validate_unique_host_ports(containers: list, path: str, seen: set[str]) -> Errs:
    errs: Errs = []
    for ci, ctr in enumerate(containers):
        for pi, port in enumerate(_l(_d(ctr).get("ports"))):
            port = _d(port)
            hp = _int(port.get("hostPort"))
            if not hp:
                continue
            key = f"{_s(port.get('protocol'))}/{_s(port.get('hostIP'))}/{hp}"
            if key in seen:
                errs.append(field_duplicate(_child(_idx(_child(_idx(path, ci), "ports"), pi),
                                                   "hostPort"), key))
            seen.add(key)
    return errs


def validate_tolerations(tolerations: Any, path: str) -> Errs:
    errs: Errs = []
    for i, t in enumerate(_l(tolerations)):
        p, t = _idx(path, i), _d(t)
        key, op, effect = _s(t.get("key")), _s(t.get("operator")), _s(t.get("effect"))
        value = _s(t.get("value"))
        if key:
            errs += [_invalid(_child(p, "key"), key, m) for m in is_qualified_name(key)]
        if not key and op != "Exists":
            errs.append(_invalid(_child(p, "operator"), op, "operator must be Exists when `key` "
                                 'is empty, which means "match all values and all keys"'))
        if t.get("tolerationSeconds") is not None and effect != "NoExecute":
            errs.append(_invalid(_child(p, "effect"), effect,
                                 "effect must be 'NoExecute' when `tolerationSeconds` is set"))
        if op in ("Equal", ""):
            msgs = is_valid_label_value(value)
            if msgs:
                errs.append(_invalid(_child(p, "operator"), value, ";".join(msgs)))
        elif op == "Exists":
            if value:
                errs.append(_invalid(_child(p, "operator"), t,
                                     "value must be empty when `operator` is 'Exists'"))
        else:
            errs.append(field_not_supported(_child(p, "operator"), op, ["Equal", "Exists"]))
        if effect and effect not in _TAINT_EFFECTS:
            errs.append(field_not_supported(_child(p, "effect"), effect, _TAINT_EFFECTS))
    return errs


def validate_pod_spec(spec: Any, path: str, *, is_pod: bool = False) -> Errs:
    spec = _d(spec)
    volumes, errs = _validate_volumes(spec.get("volumes"), _child(path, "volumes"))
    containers, init = _l(spec.get("containers")), _l(spec.get("initContainers"))
    errs += _validate_containers(containers, volumes, _child(path, "containers"))
    errs += _validate_init_containers(init, containers, volumes, _child(path, "initContainers"))
    seen: set[str] = set()
    errs += _validate_unique_host_ports(containers, _child(path, "containers"), seen)
    errs += _validate_unique_host_ports(init, _child(path, "initContainers"), seen)
    if spec.get("hostNetwork") is True:
        errs += _validate_host_network_ports(containers, _child(path, "containers"), is_pod)
    errs += _enum(spec.get("restartPolicy"), _child(path, "restartPolicy"), _RESTART_POLICIES)
    errs += _enum(spec.get("dnsPolicy"), _child(path, "dnsPolicy"), _DNS_POLICIES)
    errs += validate_labels(spec.get("nodeSelector"), _child(path, "nodeSelector"))
    if spec.get("dnsPolicy") == "None" and spec.get("dnsConfig") is None:
        errs.append(field_required(_child(path, "dnsConfig"),
                                   "must provide `dnsConfig` when `dnsPolicy` is None"))
    for f in ("serviceAccountName", "nodeName", "priorityClassName"):
        v = _s(spec.get(f))
        if v:
            errs += _validate_dns1123_subdomain(v, _child(path, f))
    ads = spec.get("activeDeadlineSeconds")
    if _int(ads) is not None and not 1 <= ads <= 2**31 - 1:
        errs.append(_invalid(_child(path, "activeDeadlineSeconds"), ads,
                             inclusive_range_error(1, 2**31 - 1)))
    for f in ("hostname", "subdomain"):
        if _s(spec.get(f)):
            errs += _validate_dns1123_label(_s(spec.get(f)), _child(path, f))
    errs += validate_tolerations(spec.get("tolerations"), _child(path, "tolerations"))
    errs += _enum(spec.get("preemptionPolicy"), _child(path, "preemptionPolicy"),
                  ["PreemptLowerPriority", "Never"])
    return errs


def _validate_host_network_ports(containers: list, path: str, is_pod: bool) -> Errs:
    errs: Errs = []
    for ci, ctr in enumerate(containers):
        for pi, port in enumerate(_l(_d(ctr).get("ports"))):
            port = _d(port)
            hp, cp = _int(port.get("hostPort")) or 0, _int(port.get("containerPort")) or 0
            if (is_pod or hp != 0) and hp != cp:
                errs.append(_invalid(_child(_idx(_child(_idx(path, ci), "ports"), pi), "hostPort"),
                                     hp, "must match `containerPort` when `hostNetwork` is true"))
    return errs


def validate_pod_template_spec(template: Any, path: str) -> Errs:
    """ValidatePodTemplateSpec: note upstream's `<path>.labels` (not `.metadata.labels`)."""
    template = _d(template)
    meta = _d(template.get("metadata"))
    errs = validate_labels(meta.get("labels"), _child(path, "labels"))
    errs += validate_annotations(meta.get("annotations"), _child(path, "annotations"))
    spec = _d(template.get("spec"))
    errs += validate_pod_spec(spec, _child(path, "spec"))
    if _l(spec.get("ephemeralContainers")):
        errs.append(field_forbidden(_child(path, "spec", "ephemeralContainers"),
                                    "ephemeral containers not allowed in pod template"))
    return errs


# ---------------------------------------------------------------------------------------
# core/v1 kinds
# ---------------------------------------------------------------------------------------

_POD_UPDATABLE_FIELDS = (
    "`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,"
    "`spec.tolerations` (only additions to existing tolerations),"
    "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously "
    "negative)")


def _diff_lines(old: Any, new: Any, path: str, out: list[str], limit: int = 20) -> None:
    if len(out) >= limit or old == new:
        return
    if isinstance(old, dict) and isinstance(new, dict):
        for k in list(old) + [k for k in new if k not in old]:
            _diff_lines(old.get(k), new.get(k), _child(path, k), out, limit)
    elif isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for i, (a, b) in enumerate(zip(old, new)):
            _diff_lines(a, b, _idx(path, i), out, limit)
    else:
        out.append(f"  {path}: {json.dumps(old)} -> {json.dumps(new)}")


def _validate_pod(obj: dict, old: dict | None) -> Errs:
    errs = validate_pod_spec(obj.get("spec"), "spec", is_pod=True)
    if old is not None:
        errs += _validate_pod_update(_d(obj.get("spec")), _d(old.get("spec")))
    return errs


def _validate_pod_update(new: dict, old: dict) -> Errs:
    errs: Errs = []
    for key in ("containers", "initContainers"):
        nc, oc = _l(new.get(key)), _l(old.get(key))
        if len(nc) != len(oc):
            return errs + [field_forbidden(_child("spec", key),
                                           "pod updates may not add or remove containers")]
        for i, c in enumerate(nc):
            image = _s(_d(c).get("image"))
            if image and image.strip() != image:
                errs.append(_invalid(_child(_idx(_child("spec", key), i), "image"), image,
                                     "must not have leading or trailing whitespace"))
    errs += _validate_active_deadline_update(new.get("activeDeadlineSeconds"),
                                             old.get("activeDeadlineSeconds"))
    if errs:
        return errs
    munged = copy.deepcopy(new)
    for key in ("containers", "initContainers"):
        for mc, oc in zip(_l(munged.get(key)), _l(old.get(key))):
            if isinstance(mc, dict) and isinstance(oc, dict):
                if "image" in oc:
                    mc["image"] = oc["image"]
                else:
                    mc.pop("image", None)
    _copy_field(munged, old, "activeDeadlineSeconds")
    tol_errs = _validate_only_added_tolerations(new.get("tolerations"), old.get("tolerations"))
    errs += tol_errs
    if not tol_errs:
        _copy_field(munged, old, "tolerations")
    otg, ntg = _int(old.get("terminationGracePeriodSeconds")), \
        _int(new.get("terminationGracePeriodSeconds"))
    if otg is not None and otg < 0 and ntg == 1:
        _copy_field(munged, old, "terminationGracePeriodSeconds")
    new_gates = _l(new.get("schedulingGates"))
    if all(g in _l(old.get("schedulingGates")) for g in new_gates):
        _copy_field(munged, old, "schedulingGates")
    _copy_field(munged, old, "ephemeralContainers")
    if munged != old:
        lines: list[str] = []
        _diff_lines(old, munged, "spec", lines)
        errs.append(field_forbidden("spec", "pod updates may not change fields other than "
                                    f"{_POD_UPDATABLE_FIELDS}\n" + "\n".join(lines)))
    return errs


def _copy_field(dst: dict, src: dict, key: str) -> None:
    if key in src:
        dst[key] = copy.deepcopy(src[key])
    else:
        dst.pop(key, None)


def _validate_active_deadline_update(new: Any, old: Any) -> Errs:
    path = "spec.activeDeadlineSeconds"
    n, o = _int(new), _int(old)
    if n is not None:
        if n < 0 or n > 2**31 - 1:
            return [_invalid(path, n, inclusive_range_error(0, 2**31 - 1))]
        if o is not None and o < n:
            return [_invalid(path, n, "must be less than or equal to previous value")]
    elif o is not None:
        return [_invalid(path, None, "must not update from a positive integer to nil value")]
    return []


def _validate_only_added_tolerations(new: Any, old: Any) -> Errs:
    new_l = [_d(t) for t in _l(new)]
    for o in _l(old):
        o = _d(o)
        if not any({**o, "tolerationSeconds": n.get("tolerationSeconds")} ==
                   {**n, "tolerationSeconds": n.get("tolerationSeconds")} for n in new_l):
            return [field_forbidden("spec.tolerations",
                                    "existing toleration can not be modified except its "
                                    "tolerationSeconds")]
    return []


def _validate_pod_template(obj: dict, old: dict | None) -> Errs:
    return validate_pod_template_spec(obj.get("template"), "template")


def _validate_rc_like_template(template: Any, selector_matches_labels: bool | None,
                               path: str, owner: str) -> Errs:
    """Template checks shared by ReplicaSet/RC/Deployment/StatefulSet/DaemonSet."""
    errs: Errs = []
    template = _d(template)
    if selector_matches_labels is False:
        errs.append(_invalid_raw(_child(path, "metadata", "labels"),
                                 _go_string_map(_d(template.get("metadata")).get("labels")),
                                 "`selector` does not match template `labels`"))
    errs += validate_pod_template_spec(template, path)
    spec = _d(template.get("spec"))
    rp = spec.get("restartPolicy")
    if rp is not None and rp != "Always":
        errs.append(field_not_supported(_child(path, "spec", "restartPolicy"), rp, ["Always"]))
    if spec.get("activeDeadlineSeconds") is not None:
        errs.append(field_forbidden(_child(path, "spec", "activeDeadlineSeconds"),
                                    f"activeDeadlineSeconds in {owner} is not Supported"))
    return errs


def _validate_replication_controller(obj: dict, old: dict | None) -> Errs:
    spec = _d(obj.get("spec"))
    errs = validate_nonnegative(spec.get("minReadySeconds"), "spec.minReadySeconds")
    selector = _str_map(spec.get("selector"))
    if not selector:
        errs.append(field_required("spec.selector"))
    errs += validate_nonnegative(spec.get("replicas"), "spec.replicas")
    template = spec.get("template")
    if template is None:
        errs.append(field_required("spec.template"))
    else:
        matches = None
        if selector:
            labels = _str_map(_d(_d(template).get("metadata")).get("labels"))
            matches = all(labels.get(k) == v for k, v in selector.items())
        errs += _validate_rc_like_template(template, matches, "spec.template",
                                           "ReplicationController")
    return errs


_SUPPORTED_SERVICE_TYPES = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"]
_KUBELET_PORT = 10250


def _is_headless(spec: dict) -> bool:
    ips = _l(spec.get("clusterIPs"))
    return spec.get("clusterIP") == "None" or (bool(ips) and ips[0] == "None")


def _go_service_port_key(protocol: str, port: Any) -> str:
    return (f'core.ServicePort{{Name:"", Protocol:{_q(protocol)}, AppProtocol:(*string)(nil), '
            f"Port:{_int(port) or 0}, TargetPort:intstr.IntOrString{{Type:0, IntVal:0, "
            f'StrVal:""}}, NodePort:0}}')


def _validate_service_port(sp: dict, require_name: bool, names: set[str], path: str) -> Errs:
    errs: Errs = []
    name = _s(sp.get("name"))
    if require_name and not name:
        errs.append(field_required(_child(path, "name")))
    elif name:
        errs += _validate_dns1123_label(name, _child(path, "name"))
        if name in names:
            errs.append(field_duplicate(_child(path, "name"), name))
        else:
            names.add(name)
    port = _int(sp.get("port")) or 0
    errs += [_invalid(_child(path, "port"), port, m) for m in is_valid_port_num(port)]
    errs += _enum(sp.get("protocol"), _child(path, "protocol"), _PROTOCOLS)
    errs += _validate_port_num_or_name(_port_or_zero(sp.get("targetPort")),
                                       _child(path, "targetPort"))
    app = sp.get("appProtocol")
    if isinstance(app, str):
        errs += _validate_qualified_name(app, _child(path, "appProtocol"))
    return errs


def _service_cluster_ips(spec: dict) -> list[str]:
    ips = [x for x in _l(spec.get("clusterIPs")) if isinstance(x, str)]
    if not ips and _s(spec.get("clusterIP")):
        ips = [_s(spec.get("clusterIP"))]
    return ips


def _validate_service_cluster_ips(spec: dict) -> Errs:
    errs: Errs = []
    ips = _service_cluster_ips(spec)
    cip = _s(spec.get("clusterIP"))
    if cip and _l(spec.get("clusterIPs")) and cip != ips[0]:
        errs.append(_invalid("spec.clusterIPs", ips, "first value must match `clusterIP`"))
    for i, ip in enumerate(ips):
        p = _idx("spec.clusterIPs", i)
        if ip == "None":
            if i != 0 or len(ips) > 1:
                errs.append(_invalid(p, ip, "'None' must be the first and only value"))
        elif not is_valid_ip(ip):
            errs.append(_invalid(p, ip, IP_ERR))
    for i, fam in enumerate(_l(spec.get("ipFamilies"))):
        if fam not in ("IPv4", "IPv6"):
            errs.append(field_not_supported(_idx("spec.ipFamilies", i), fam, ["IPv4", "IPv6"]))
    errs += _enum(spec.get("ipFamilyPolicy"), "spec.ipFamilyPolicy",
                  ["SingleStack", "PreferDualStack", "RequireDualStack"])
    return errs


def _externally_accessible(spec: dict) -> bool:
    t = spec.get("type")
    return t in ("LoadBalancer", "NodePort") or (t == "ClusterIP" and bool(_l(spec.get("externalIPs"))))


def _validate_service(obj: dict, old: dict | None) -> Errs:
    spec = _d(obj.get("spec"))
    errs: Errs = []
    stype = spec.get("type")
    ports = [_d(p) for p in _l(spec.get("ports"))]
    headless = _is_headless(spec)
    if not ports and not headless and stype != "ExternalName":
        errs.append(field_required("spec.ports"))
    errs += _validate_service_type_rules(spec, stype, ports, headless)
    names: set[str] = set()
    for i, sp in enumerate(ports):
        errs += _validate_service_port(sp, len(ports) > 1, names, _idx("spec.ports", i))
    if spec.get("selector") is not None:
        errs += validate_labels(spec.get("selector"), "spec.selector")
    errs += _enum(spec.get("sessionAffinity"), "spec.sessionAffinity", ["ClientIP", "None"])
    if spec.get("sessionAffinity") == "None" and spec.get("sessionAffinityConfig") is not None:
        errs.append(field_forbidden("spec.sessionAffinityConfig",
                                    "must not be set when session affinity is None"))
    if spec.get("sessionAffinity") == "ClientIP":
        timeout = _int(_d(_d(spec.get("sessionAffinityConfig")).get("clientIP"))
                       .get("timeoutSeconds"))
        if timeout is not None and not 0 < timeout <= 86400:
            errs.append(_invalid("spec.sessionAffinityConfig.clientIP.timeoutSeconds", timeout,
                                 "must be greater than 0 and less than 86400"))
    if stype != "ExternalName":
        errs += _validate_service_cluster_ips(spec)
    for i, ip in enumerate(_l(spec.get("externalIPs"))):
        if not is_valid_ip(_s(ip)):
            errs.append(_invalid(_idx("spec.externalIPs", i), _s(ip), IP_ERR))
    errs += _enum(stype, "spec.type", _SUPPORTED_SERVICE_TYPES)
    errs += _validate_service_node_ports(stype, ports)
    errs += _validate_service_duplicate_ports(ports)
    errs += _validate_service_traffic_policies(spec)
    if old is not None:
        errs += _validate_service_update(spec, _d(old.get("spec")))
    return errs


def _validate_service_type_rules(spec: dict, stype: Any, ports: list[dict],
                                 headless: bool) -> Errs:
    errs: Errs = []
    first_ip = (_service_cluster_ips(spec) or ["None"])[0]
    if stype == "LoadBalancer":
        if headless:
            errs.append(_invalid("spec.clusterIPs[0]", first_ip,
                                 "may not be set to 'None' for LoadBalancer services"))
        for i, sp in enumerate(ports):
            if sp.get("port") == _KUBELET_PORT:
                errs.append(_invalid(_idx("spec.ports", i), _KUBELET_PORT,
                                     f"may not expose port {_KUBELET_PORT} externally since it "
                                     "is used by kubelet"))
    elif stype == "NodePort":
        if headless:
            errs.append(_invalid("spec.clusterIPs[0]", first_ip,
                                 "may not be set to 'None' for NodePort services"))
    elif stype == "ExternalName":
        if _l(spec.get("clusterIPs")) or _s(spec.get("clusterIP")):
            errs.append(field_forbidden("spec.clusterIPs", "may not be set for ExternalName "
                                                           "services"))
        if _l(spec.get("ipFamilies")):
            errs.append(field_forbidden("spec.ipFamilies", "may not be set for ExternalName "
                                                           "services"))
        if spec.get("ipFamilyPolicy") is not None:
            errs.append(field_forbidden("spec.ipFamilyPolicy", "may not be set for ExternalName "
                                                               "services"))
        cname = _s(spec.get("externalName")).removesuffix(".")
        if cname:
            errs += _validate_dns1123_subdomain(cname, "spec.externalName")
        else:
            errs.append(field_required("spec.externalName"))
    return errs


def _validate_service_node_ports(stype: Any, ports: list[dict]) -> Errs:
    """The range of node ports is the allocator's (pyk8s.registry.service), as upstream."""
    errs: Errs = []
    seen: set[tuple[str, int]] = set()
    for i, sp in enumerate(ports):
        np = _int(sp.get("nodePort"))
        if not np:
            continue
        p = _child(_idx("spec.ports", i), "nodePort")
        if stype == "ClusterIP":
            errs.append(field_forbidden(p, "may not be used when `type` is 'ClusterIP'"))
            continue
        key = (_s(sp.get("protocol")), np)
        if key in seen:
            errs.append(field_duplicate(p, np))
        seen.add(key)
    return errs


def _validate_service_duplicate_ports(ports: list[dict]) -> Errs:
    errs: Errs = []
    seen: set[tuple[str, Any]] = set()
    for i, sp in enumerate(ports):
        key = (_s(sp.get("protocol")), _int(sp.get("port")))
        if key in seen:
            errs.append(cause(_idx("spec.ports", i),
                              f"Duplicate value: {_go_service_port_key(*key)}",
                              "FieldValueDuplicate"))
        seen.add(key)
    return errs


def _validate_service_traffic_policies(spec: dict) -> Errs:
    errs: Errs = []
    etp = spec.get("externalTrafficPolicy")
    if etp not in (None, "") and etp not in ("Cluster", "Local"):
        errs.append(field_not_supported("spec.externalTrafficPolicy", etp, ["Cluster", "Local"]))
    if not _externally_accessible(spec):
        if etp:
            errs.append(_invalid("spec.externalTrafficPolicy", etp,
                                 "may only be set for externally-accessible services"))
        if spec.get("healthCheckNodePort"):
            errs.append(_invalid("spec.healthCheckNodePort", spec.get("healthCheckNodePort"),
                                 "may only be set when `type` is 'LoadBalancer' and "
                                 "`externalTrafficPolicy` is 'Local'"))
    elif etp == "":
        errs.append(field_required("spec.externalTrafficPolicy"))
    itp = spec.get("internalTrafficPolicy")
    if itp not in (None, "") and itp not in ("Cluster", "Local"):
        errs.append(field_not_supported("spec.internalTrafficPolicy", itp, ["Cluster", "Local"]))
    return errs


def _validate_service_update(new: dict, old: dict) -> Errs:
    if "ExternalName" in (new.get("type"), old.get("type")):
        return []
    new_ips, old_ips = _service_cluster_ips(new), _service_cluster_ips(old)
    if new_ips and old_ips and new_ips[0] != old_ips[0]:
        return [_invalid("spec.clusterIPs[0]", new_ips[0], "may not change once set")]
    return []


MAX_SECRET_SIZE = 1 << 20


def _validate_config_map(obj: dict, old: dict | None) -> Errs:
    errs: Errs = []
    data, binary = _d(obj.get("data")), _d(obj.get("binaryData"))
    total = 0
    for k, v in data.items():
        errs += [_invalid(_key("data", k), k, m) for m in is_config_map_key(k)]
        if k in binary:
            errs.append(_invalid(_key("data", k), k, "duplicate of key present in binaryData"))
        total += len(_s(v).encode())
    for k, v in binary.items():
        errs += [_invalid(_key("binaryData", k), k, m) for m in is_config_map_key(k)]
        decoded = _b64decode(v)
        total += len(decoded) if decoded is not None else len(_s(v))
        if decoded is None:
            errs.append(_invalid(_key("binaryData", k), "<binary data>", "illegal base64 data"))
    if total > MAX_SECRET_SIZE:
        errs.append(_too_long("", MAX_SECRET_SIZE))
    if old is not None:
        errs += _validate_immutable_data(obj, old, ("data", "binaryData"))
    return errs


def _validate_immutable_data(obj: dict, old: dict, fields: tuple[str, ...]) -> Errs:
    if old.get("immutable") is not True:
        return []
    errs: Errs = []
    msg = "field is immutable when `immutable` is set"
    if obj.get("immutable") is not True:
        errs.append(field_forbidden("immutable", msg))
    for f in fields:
        if (obj.get(f) or {}) != (old.get(f) or {}):
            errs.append(field_forbidden(f, msg))
    return errs


def _b64decode(value: Any) -> bytes | None:
    if not isinstance(value, str):
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


_SECRET_REQUIRED_KEYS = {
    "kubernetes.io/dockercfg": [".dockercfg"],
    "kubernetes.io/dockerconfigjson": [".dockerconfigjson"],
    "kubernetes.io/ssh-auth": ["ssh-privatekey"],
    "kubernetes.io/tls": ["tls.crt", "tls.key"],
}


def _validate_secret(obj: dict, old: dict | None) -> Errs:
    errs: Errs = []
    raw = _d(obj.get("data"))
    string_data = _d(obj.get("stringData"))
    decoded: dict[str, bytes] = {}
    total = 0
    for k, v in raw.items():
        errs += [_invalid(_key("data", k), k, m) for m in is_config_map_key(k)]
        d = _b64decode(v)
        if d is None:
            errs.append(_invalid(_key("data", k), "<secret contents redacted>",
                                 "illegal base64 data"))
            d = _s(v).encode()
        decoded[k] = d
    for k, v in string_data.items():
        errs += [_invalid(_key("data", k), k, m) for m in is_config_map_key(k)]
        decoded[k] = _s(v).encode()
    total = sum(len(v) for v in decoded.values())
    if total > MAX_SECRET_SIZE:
        errs.append(_too_long("data", MAX_SECRET_SIZE))
    errs += _validate_secret_type(obj, decoded)
    if old is not None:
        errs += _validate_immutable_data(obj, old, ("data",))
        if (obj.get("type") or "Opaque") != (old.get("type") or "Opaque"):
            errs.append(_immutable("type", obj.get("type")))
    return errs


def _validate_secret_type(obj: dict, data: dict[str, bytes]) -> Errs:
    stype = _s(obj.get("type"))
    errs: Errs = []
    if stype == "kubernetes.io/service-account-token":
        ann = _d(_d(obj.get("metadata")).get("annotations"))
        if not _s(ann.get("kubernetes.io/service-account.name")):
            errs.append(field_required(_key("metadata.annotations",
                                            "kubernetes.io/service-account.name")))
    elif stype in ("kubernetes.io/dockercfg", "kubernetes.io/dockerconfigjson"):
        k = ".dockercfg" if stype == "kubernetes.io/dockercfg" else ".dockerconfigjson"
        if k not in data:
            errs.append(field_required(_key("data", k)))
        else:
            problem = _json_object_error(data[k])
            if problem:
                errs.append(_invalid(_key("data", k), "<secret contents redacted>", problem))
    elif stype == "kubernetes.io/basic-auth":
        if "username" not in data and "password" not in data:
            errs += [field_required(_key("data", "username")),
                     field_required(_key("data", "password"))]
    elif stype == "kubernetes.io/ssh-auth":
        if not data.get("ssh-privatekey"):
            errs.append(field_required(_key("data", "ssh-privatekey")))
    elif stype == "kubernetes.io/tls":
        errs += [field_required(_key("data", k)) for k in ("tls.crt", "tls.key") if k not in data]
    return errs


def _json_object_error(raw: bytes) -> str | None:
    """Go's encoding/json error for content that is not a JSON object, else None."""
    text = raw.decode("utf-8", "replace")
    if not text.strip():
        return "unexpected end of JSON input"
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        if e.pos >= len(text):
            return "unexpected end of JSON input"
        return f"invalid character {text[e.pos]!r} looking for beginning of value"
    if not isinstance(value, dict):
        return f"json: cannot unmarshal {type(value).__name__} into Go value of type " \
               "map[string]interface {}"
    return None


def _validate_namespace(obj: dict, old: dict | None) -> Errs:
    errs: Errs = []
    for f in _l(_d(obj.get("spec")).get("finalizers")):
        f = _s(f)
        errs += [_invalid("spec.finalizers", f, m) for m in is_qualified_name(f)]
        if "/" not in f and f not in _STANDARD_FINALIZERS:
            errs.append(_invalid("spec.finalizers", f, "name is neither a standard finalizer "
                                                       "name nor is it fully qualified"))
    return errs


def _validate_node(obj: dict, old: dict | None) -> Errs:
    errs: Errs = []
    for i, taint in enumerate(_l(_d(obj.get("spec")).get("taints"))):
        p, taint = _idx("spec.taints", i), _d(taint)
        key = _s(taint.get("key"))
        errs += [_invalid(_child(p, "key"), key, m) for m in is_qualified_name(key)]
        value = _s(taint.get("value"))
        errs += [_invalid(_child(p, "value"), value, m) for m in is_valid_label_value(value)]
        effect = _s(taint.get("effect"))
        if not effect:
            errs.append(field_required(_child(p, "effect")))
        elif effect not in _TAINT_EFFECTS:
            errs.append(field_not_supported(_child(p, "effect"), effect, _TAINT_EFFECTS))
    errs += _validate_node_pod_cidrs(obj, old)
    return errs


def _node_pod_cidrs(spec: Any) -> list[str]:
    """spec.podCIDRs, or [spec.podCIDR] when only that is set (the v1 → internal conversion)."""
    spec = _d(spec)
    cidrs = [_s(c) for c in _l(spec.get("podCIDRs"))]
    if not cidrs and _s(spec.get("podCIDR")):
        cidrs = [_s(spec.get("podCIDR"))]
    return cidrs


def _validate_node_pod_cidrs(obj: dict, old: dict | None) -> Errs:
    """Upstream's ValidateNode (podCIDRs: valid CIDRs, one per IP family, no duplicates) and
    ValidateNodeUpdate (podCIDRs may only be set once, by the node IPAM controller)."""
    errs: Errs = []
    cidrs = _node_pod_cidrs(obj.get("spec"))
    path = "spec.podCIDRs"
    families: list[int] = []
    for i, value in enumerate(cidrs):
        try:
            if "/" not in value:
                raise ValueError(value)
            families.append(ipaddress.ip_network(value, strict=False).version)
        except ValueError:
            errs.append(_invalid(_idx(path, i), value, "must be a valid CIDR value, (e.g. "
                                 "10.9.8.0/24 or 2001:db8::/64)"))
    if len(cidrs) > 1:
        if len(families) == len(cidrs) and (len(cidrs) > 2 or len(set(families)) < 2):
            errs.append(_invalid(path, cidrs, "may specify no more than one CIDR for each IP "
                                              "family"))
        seen: set[str] = set()
        for i, value in enumerate(cidrs):
            if value in seen:
                errs.append(field_duplicate(_idx(path, i), value))
            seen.add(value)
    if old is not None:
        old_cidrs = _node_pod_cidrs(old.get("spec"))
        if old_cidrs and old_cidrs != cidrs:
            errs.append(field_forbidden(path, "node updates may not change podCIDR except "
                                              "from \"\" to valid"))
    return errs


_ACCESS_MODES = ["ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"]


def _validate_access_modes(modes: Any, path: str) -> Errs:
    errs: Errs = []
    modes = _l(modes)
    if not modes:
        errs.append(field_required(path, "at least 1 access mode is required"))
    for m in modes:
        if m not in _ACCESS_MODES:
            errs.append(field_not_supported(path, m, _ACCESS_MODES))
    if "ReadWriteOncePod" in modes and len(modes) > 1:
        errs.append(field_forbidden(path, "may not use ReadWriteOncePod with other access modes"))
    return errs


def _validate_pvc_spec(spec: Any, path: str) -> Errs:
    spec = _d(spec)
    errs = _validate_access_modes(spec.get("accessModes"), _child(path, "accessModes"))
    errs += validate_label_selector(spec.get("selector"), _child(path, "selector"))
    requests = _d(_d(spec.get("resources")).get("requests"))
    if "storage" not in requests:
        errs.append(field_required(_key(_child(path, "resources"), "storage")))
    else:
        p = _key(_child(path, "resources", "requests"), "storage")
        errs += _validate_quantity(requests["storage"], p)
        if parse_quantity(requests["storage"]) == 0:
            errs.append(_invalid(p, _qstr(requests["storage"]), "must be greater than zero"))
    errs += _enum(spec.get("volumeMode"), _child(path, "volumeMode"), ["Block", "Filesystem"])
    return errs


def _validate_pvc(obj: dict, old: dict | None) -> Errs:
    errs = _validate_pvc_spec(obj.get("spec"), "spec")
    if old is not None:
        new_spec, old_spec = copy.deepcopy(_d(obj.get("spec"))), _d(old.get("spec"))
        for f in ("resources", "volumeAttributesClassName"):
            _copy_field(new_spec, old_spec, f)
        if not old_spec.get("volumeName"):
            _copy_field(new_spec, old_spec, "volumeName")  # binding fills volumeName
        if new_spec != old_spec:
            errs.append(field_forbidden("spec", "spec is immutable after creation except "
                                        "resources.requests and volumeAttributesClassName for "
                                        "bound claims"))
    return errs


def _validate_pv(obj: dict, old: dict | None) -> Errs:
    spec = _d(obj.get("spec"))
    errs = _validate_access_modes(spec.get("accessModes"), "spec.accessModes")
    capacity = _d(spec.get("capacity"))
    if "storage" not in capacity or len(capacity) != 1:
        errs.append(field_required("spec.capacity", "must specify storage"))
    for k, v in capacity.items():
        errs += _validate_quantity(v, _key("spec.capacity", k))
    errs += _enum(spec.get("persistentVolumeReclaimPolicy"), "spec.persistentVolumeReclaimPolicy",
                  ["Delete", "Recycle", "Retain"])
    sources = [s for s in _VOLUME_SOURCES + ("local",) if spec.get(s) is not None]
    if not sources:
        errs.append(field_required("spec", "must specify a volume type"))
    elif len(sources) > 1:
        errs += [field_forbidden(_child("spec", s), "may not specify more than 1 volume type")
                 for s in sources[1:]]
    errs += _enum(spec.get("volumeMode"), "spec.volumeMode", ["Block", "Filesystem"])
    return errs


def _validate_endpoints(obj: dict, old: dict | None) -> Errs:
    errs: Errs = []
    for i, ss in enumerate(_l(obj.get("subsets"))):
        p, ss = _idx("subsets", i), _d(ss)
        if not _l(ss.get("addresses")) and not _l(ss.get("notReadyAddresses")):
            errs.append(field_required(p, "must specify `addresses` or `notReadyAddresses`"))
        for key in ("addresses", "notReadyAddresses"):
            for j, addr in enumerate(_l(ss.get(key))):
                ip = _s(_d(addr).get("ip"))
                if not is_valid_ip(ip):
                    errs.append(_invalid(_child(_idx(_child(p, key), j), "ip"), ip, IP_ERR))
        ports = [_d(x) for x in _l(ss.get("ports"))]
        for j, port in enumerate(ports):
            pp = _idx(_child(p, "ports"), j)
            name = _s(port.get("name"))
            if len(ports) > 1 and not name:
                errs.append(field_required(_child(pp, "name")))
            elif name:
                errs += _validate_dns1123_label(name, _child(pp, "name"))
            errs += [_invalid(_child(pp, "port"), port.get("port"), m)
                     for m in is_valid_port_num(port.get("port"))]
            errs += _enum(port.get("protocol"), _child(pp, "protocol"), _PROTOCOLS)
    return errs


def _validate_resource_quota(obj: dict, old: dict | None) -> Errs:
    errs: Errs = []
    for k, v in _d(_d(obj.get("spec")).get("hard")).items():
        p = _key("spec.hard", k)
        errs += [_invalid(p, k, m) for m in is_qualified_name(k)]
        errs += _validate_quantity(v, p)
    return errs


def _validate_limit_range(obj: dict, old: dict | None) -> Errs:
    errs: Errs = []
    for i, item in enumerate(_l(_d(obj.get("spec")).get("limits"))):
        p, item = _idx("spec.limits", i), _d(item)
        t = item.get("type")
        if not t:
            errs.append(field_required(_child(p, "type")))
        else:
            errs += _enum(t, _child(p, "type"), ["Container", "Pod", "PersistentVolumeClaim"])
        for f in ("max", "min", "default", "defaultRequest", "maxLimitRequestRatio"):
            for k, v in _d(item.get(f)).items():
                errs += _validate_quantity(v, _key(_child(p, f), k))
    return errs


def _validate_service_account(obj: dict, old: dict | None) -> Errs:
    return []


def _validate_event(obj: dict, old: dict | None) -> Errs:
    return []


# ---------------------------------------------------------------------------------------
# apps/v1
# ---------------------------------------------------------------------------------------


def _validate_workload_selector(spec: dict, owner: str) -> tuple[Errs, bool]:
    """Selector checks; returns (errors, selector usable) like LabelSelectorAsSelector."""
    sel = spec.get("selector")
    if sel is None:
        return [field_required("spec.selector")], False
    errs = validate_label_selector(sel, "spec.selector")
    usable = not errs
    if selector_is_empty(sel):
        errs.append(_invalid_raw("spec.selector", _go_selector(sel),
                                 f"empty selector is invalid for {owner}"))
    return errs, usable


def _template_match(spec: dict) -> bool | None:
    """None when the selector is empty (matches everything, upstream skips the check);
    a nil selector matches nothing."""
    sel = spec.get("selector")
    if sel is not None and selector_is_empty(sel):
        return None
    return selector_matches(sel, _d(_d(spec.get("template")).get("metadata")).get("labels"))


def _validate_selector_immutable(obj: dict, old: dict | None) -> Errs:
    if old is None:
        return []
    new_sel, old_sel = _d(obj.get("spec")).get("selector"), _d(old.get("spec")).get("selector")
    if new_sel != old_sel:
        return [_invalid_raw("spec.selector", _go_selector(new_sel), FIELD_IMMUTABLE)]
    return []


def _validate_deployment_strategy(strategy: Any) -> Errs:
    strategy = _d(strategy)
    st = strategy.get("type")
    errs: Errs = []
    if st == "Recreate":
        if strategy.get("rollingUpdate") is not None:
            errs.append(field_forbidden("spec.strategy.rollingUpdate", "may not be specified "
                                        "when strategy `type` is 'Recreate'"))
    elif st == "RollingUpdate":
        ru = strategy.get("rollingUpdate")
        if ru is None:
            errs.append(field_required("spec.strategy.rollingUpdate",
                                       "this should be defaulted and never be nil"))
        else:
            errs += _validate_rolling_update_deployment(_d(ru), "spec.strategy.rollingUpdate")
    elif st is not None:
        errs.append(field_not_supported("spec.strategy.type", st, ["Recreate", "RollingUpdate"]))
    return errs


def _validate_rolling_update_deployment(ru: dict, path: str) -> Errs:
    mu, ms = ru.get("maxUnavailable"), ru.get("maxSurge")
    errs = _validate_positive_int_or_percent(mu, _child(path, "maxUnavailable"))
    errs += _validate_positive_int_or_percent(ms, _child(path, "maxSurge"))
    if _int_or_percent_value(mu) == 0 and _int_or_percent_value(ms) == 0:
        errs.append(_invalid(_child(path, "maxUnavailable"), mu if mu is not None else 0,
                             "may not be 0 when `maxSurge` is 0"))
    errs += _not_more_than_100_percent(mu, _child(path, "maxUnavailable"))
    return errs


def _validate_deployment(obj: dict, old: dict | None) -> Errs:
    spec = _d(obj.get("spec"))
    errs = validate_nonnegative(spec.get("replicas"), "spec.replicas")
    sel_errs, usable = _validate_workload_selector(spec, "deployment")
    errs += sel_errs
    if spec.get("selector") is not None and not usable:
        errs.append(_invalid_raw("spec.selector", _go_selector(spec.get("selector")),
                                 "invalid label selector"))
    else:
        errs += _validate_rc_like_template(spec.get("template"), _template_match(spec),
                                           "spec.template", "ReplicaSet")
    errs += _validate_deployment_strategy(spec.get("strategy"))
    errs += validate_nonnegative(spec.get("minReadySeconds"), "spec.minReadySeconds")
    errs += validate_nonnegative(spec.get("revisionHistoryLimit"), "spec.revisionHistoryLimit")
    pds = _int(spec.get("progressDeadlineSeconds"))
    if pds is not None:
        errs += validate_nonnegative(pds, "spec.progressDeadlineSeconds")
        if pds <= (_int(spec.get("minReadySeconds")) or 0):
            errs.append(_invalid("spec.progressDeadlineSeconds", pds,
                                 "must be greater than minReadySeconds"))
    errs += _validate_selector_immutable(obj, old)
    return errs


def _validate_replica_set(obj: dict, old: dict | None) -> Errs:
    spec = _d(obj.get("spec"))
    errs = validate_nonnegative(spec.get("replicas"), "spec.replicas")
    errs += validate_nonnegative(spec.get("minReadySeconds"), "spec.minReadySeconds")
    sel_errs, usable = _validate_workload_selector(spec, "deployment")
    errs += sel_errs
    if spec.get("selector") is not None and not usable:
        errs.append(_invalid_raw("spec.selector", _go_selector(spec.get("selector")),
                                 "invalid label selector"))
    else:
        errs += _validate_rc_like_template(spec.get("template"), _template_match(spec),
                                           "spec.template", "ReplicaSet")
    errs += _validate_selector_immutable(obj, old)
    return errs


_STS_UPDATABLE = ("replicas", "ordinals", "template", "updateStrategy",
                  "persistentVolumeClaimRetentionPolicy", "minReadySeconds")


def _with_claim_volumes(spec: dict) -> Any:
    """The StatefulSet's pod template as its pods get it: each volumeClaimTemplate is a
    volume of that name (the controller adds it), so containers may mount it."""
    template = spec.get("template")
    names = [_s(_d(_d(t).get("metadata")).get("name"))
             for t in _l(spec.get("volumeClaimTemplates"))]
    if not isinstance(template, dict) or not any(names):
        return template
    t = copy.deepcopy(template)
    pod = t.setdefault("spec", {}) if isinstance(t.get("spec", {}), dict) else None
    if pod is None or not isinstance(pod.get("volumes", []), list):
        return template
    have = {_d(v).get("name") for v in pod.get("volumes") or []}
    pod["volumes"] = list(pod.get("volumes") or []) + [
        {"name": n, "persistentVolumeClaim": {"claimName": n}}
        for n in names if n and n not in have]
    return t


def _validate_statefulset(obj: dict, old: dict | None) -> Errs:
    spec = _d(obj.get("spec"))
    errs: Errs = []
    pmp = spec.get("podManagementPolicy")
    if pmp == "":
        errs.append(field_required("spec.podManagementPolicy"))
    elif pmp is not None and pmp not in ("OrderedReady", "Parallel"):
        errs.append(_invalid("spec.podManagementPolicy", pmp,
                             "must be 'OrderedReady' or 'Parallel'"))
    errs += _validate_statefulset_update_strategy(_d(spec.get("updateStrategy")),
                                                  "updateStrategy" in spec)
    for f in ("whenDeleted", "whenScaled"):
        v = _d(spec.get("persistentVolumeClaimRetentionPolicy")).get(f)
        errs += _enum(v, _child("spec.persistentVolumeClaimRetentionPolicy", f),
                      ["Retain", "Delete"])
    errs += validate_nonnegative(spec.get("replicas"), "spec.replicas")
    errs += validate_nonnegative(spec.get("minReadySeconds"), "spec.minReadySeconds")
    errs += validate_nonnegative(_d(spec.get("ordinals")).get("start"), "spec.ordinals.start")
    sel_errs, usable = _validate_workload_selector(spec, "statefulset")
    errs += sel_errs
    if spec.get("selector") is not None and not usable:
        errs.append(_invalid_raw("spec.selector", _go_selector(spec.get("selector")), ""))
    else:
        errs += _validate_rc_like_template(_with_claim_volumes(spec), _template_match(spec),
                                           "spec.template", "StatefulSet")
    for i, pvc in enumerate(_l(spec.get("volumeClaimTemplates"))):
        name = _s(_d(_d(pvc).get("metadata")).get("name"))
        p = _idx("spec.volumeClaimTemplates", i)
        if not name:
            errs.append(field_required(_child(p, "metadata", "name")))
        errs += _validate_pvc_spec(_d(pvc).get("spec"), _child(p, "spec"))
    if old is not None:
        new_s, old_s = dict(spec), dict(_d(old.get("spec")))
        for f in _STS_UPDATABLE:
            new_s.pop(f, None)
            old_s.pop(f, None)
        if new_s != old_s:
            errs.append(field_forbidden("spec", "updates to statefulset spec for fields other "
                                        "than 'replicas', 'ordinals', 'template', "
                                        "'updateStrategy', 'persistentVolumeClaimRetentionPolicy'"
                                        " and 'minReadySeconds' are forbidden"))
    return errs


def _validate_statefulset_update_strategy(us: dict, present: bool) -> Errs:
    t = us.get("type")
    errs: Errs = []
    if t == "" or (present and t is None):
        errs.append(field_required("spec.updateStrategy"))
    elif t == "OnDelete":
        if us.get("rollingUpdate") is not None:
            errs.append(_invalid("spec.updateStrategy.rollingUpdate", us.get("rollingUpdate"),
                                 "only allowed for updateStrategy 'RollingUpdate'"))
    elif t == "RollingUpdate":
        ru = _d(us.get("rollingUpdate"))
        p = "spec.updateStrategy.rollingUpdate"
        errs += validate_nonnegative(ru.get("partition"), _child(p, "partition"))
        mu = ru.get("maxUnavailable")
        if mu is not None:
            errs += _validate_positive_int_or_percent(mu, _child(p, "maxUnavailable"))
            if _int_or_percent_value(mu) == 0:
                errs.append(_invalid(_child(p, "maxUnavailable"), mu, "cannot be 0"))
            errs += _not_more_than_100_percent(mu, _child(p, "maxUnavailable"))
    elif t is not None:
        errs.append(_invalid("spec.updateStrategy", us,
                             "must be 'RollingUpdate' or 'OnDelete'"))
    return errs


def _validate_daemonset(obj: dict, old: dict | None) -> Errs:
    spec = _d(obj.get("spec"))
    errs: Errs = []
    sel = spec.get("selector")
    if sel is None:
        errs.append(field_required("spec.selector"))
    sel_errs = validate_label_selector(sel, "spec.selector")
    errs += sel_errs
    labels = _d(_d(spec.get("template")).get("metadata")).get("labels")
    if not sel_errs and not selector_matches(sel, labels):
        errs.append(_invalid_raw("spec.template.metadata.labels", _go_string_map(labels),
                                 "`selector` does not match template `labels`"))
    if sel is not None and selector_is_empty(sel):
        errs.append(_invalid_raw("spec.selector", _go_selector(sel),
                                 "empty selector is invalid for daemonset"))
    errs += _validate_rc_like_template(spec.get("template"), None, "spec.template", "DaemonSet")
    errs += validate_nonnegative(spec.get("minReadySeconds"), "spec.minReadySeconds")
    errs += validate_nonnegative(spec.get("templateGeneration"), "spec.templateGeneration")
    errs += _validate_daemonset_update_strategy(_d(spec.get("updateStrategy")))
    errs += validate_nonnegative(spec.get("revisionHistoryLimit"), "spec.revisionHistoryLimit")
    errs += _validate_selector_immutable(obj, old)
    return errs


def _validate_daemonset_update_strategy(us: dict) -> Errs:
    t, path = us.get("type"), "spec.updateStrategy"
    if t is None or t == "OnDelete":
        return []
    if t != "RollingUpdate":
        return [field_not_supported(_child(path, "type"), t, ["RollingUpdate", "OnDelete"])]
    if us.get("rollingUpdate") is None:
        return [field_required(_child(path, "rollingUpdate"))]
    ru, p = _d(us.get("rollingUpdate")), _child(path, "rollingUpdate")
    mu, ms = ru.get("maxUnavailable"), ru.get("maxSurge")
    errs = _validate_positive_int_or_percent(mu, _child(p, "maxUnavailable"))
    errs += _validate_positive_int_or_percent(ms, _child(p, "maxSurge"))
    errs += _not_more_than_100_percent(mu, _child(p, "maxUnavailable"))
    errs += _not_more_than_100_percent(ms, _child(p, "maxSurge"))
    has_u, has_s = _int_or_percent_value(mu) != 0, _int_or_percent_value(ms) != 0
    if has_u and has_s:
        errs.append(_invalid(_child(p, "maxSurge"), ms,
                             "may not be set when maxUnavailable is non-zero"))
    elif not has_u and not has_s:
        errs.append(field_required(_child(p, "maxUnavailable"),
                                   "cannot be 0 when maxSurge is 0"))
    return errs


def _validate_controller_revision(obj: dict, old: dict | None) -> Errs:
    errs: Errs = []
    if obj.get("data") is None:
        errs.append(field_required("data", "data is mandatory"))
    errs += validate_nonnegative(obj.get("revision"), "revision")
    if old is not None and obj.get("data") != old.get("data"):
        errs.append(_immutable("data", obj.get("data")))
    return errs


# ---------------------------------------------------------------------------------------
# batch/v1
# ---------------------------------------------------------------------------------------


def _validate_job_spec(spec: dict, path: str, *, in_template: bool = False) -> Errs:
    errs: Errs = []
    for f in ("parallelism", "completions", "activeDeadlineSeconds", "backoffLimit",
              "ttlSecondsAfterFinished", "backoffLimitPerIndex", "maxFailedIndexes"):
        errs += validate_nonnegative(spec.get(f), _child(path, f))
    mode = spec.get("completionMode")
    if mode is not None:
        if mode not in ("NonIndexed", "Indexed"):
            errs.append(field_not_supported(_child(path, "completionMode"), mode,
                                            ["NonIndexed", "Indexed"]))
        elif mode == "Indexed" and spec.get("completions") is None:
            errs.append(field_required(_child(path, "completions"),
                                       "when completion mode is Indexed"))
    prp = spec.get("podReplacementPolicy")
    if prp is not None:
        if prp not in ("TerminatingOrFailed", "Failed"):
            errs.append(field_not_supported(_child(path, "podReplacementPolicy"), prp,
                                            ["TerminatingOrFailed", "Failed"]))
        elif spec.get("podFailurePolicy") is not None and prp != "Failed":
            errs.append(field_not_supported(_child(path, "podReplacementPolicy"), prp,
                                            ["Failed"]))
    template = _d(spec.get("template"))
    errs += validate_pod_template_spec(template, _child(path, "template"))
    rp = _d(template.get("spec")).get("restartPolicy")
    rp_path = _child(path, "template", "spec", "restartPolicy")
    if rp in ("Always", "", None):
        errs.append(field_required(rp_path, 'valid values: "OnFailure", "Never"'))
    elif rp not in ("OnFailure", "Never"):
        errs.append(field_not_supported(rp_path, rp, ["OnFailure", "Never"]))
    elif spec.get("podFailurePolicy") is not None and rp != "Never":
        errs.append(_invalid(rp_path, rp,
                             'only "Never" is supported when podFailurePolicy is specified'))
    if not in_template:
        errs += _validate_job_selector(spec, path)
    return errs


def _validate_job_selector(spec: dict, path: str) -> Errs:
    """The registry generates the selector unless manualSelector; check whatever is given."""
    sel = spec.get("selector")
    if sel is None:
        return [field_required(_child(path, "selector"))] if spec.get("manualSelector") else []
    errs = validate_label_selector(sel, _child(path, "selector"))
    if not errs:
        labels = _d(_d(spec.get("template")).get("metadata")).get("labels")
        if not selector_matches(sel, labels):
            errs.append(_invalid_raw(_child(path, "template", "metadata", "labels"),
                                     _go_string_map(labels),
                                     "`selector` does not match template `labels`"))
    return errs


_JOB_MUTABLE_WHEN_SUSPENDED = ("nodeSelector", "affinity", "tolerations", "schedulingGates")


def _validate_job(obj: dict, old: dict | None) -> Errs:
    spec = _d(obj.get("spec"))
    errs = _validate_job_spec(spec, "spec")
    if old is None:
        return errs
    old_spec = _d(old.get("spec"))
    for f in ("selector", "completionMode", "podFailurePolicy", "backoffLimitPerIndex",
              "managedBy"):
        if spec.get(f) != old_spec.get(f):
            value = spec.get(f)
            errs.append(_invalid_raw(_child("spec", f), _go_selector(value), FIELD_IMMUTABLE)
                        if f == "selector" else _immutable(_child("spec", f), value))
    if spec.get("completions") != old_spec.get("completions") and not (
            spec.get("completionMode") == "Indexed"
            and spec.get("completions") == spec.get("parallelism")):
        errs.append(_immutable("spec.completions", spec.get("completions")))
    new_t, old_t = copy.deepcopy(_d(spec.get("template"))), _d(old_spec.get("template"))
    if old_spec.get("suspend") is True:  # scheduling directives may change while suspended
        new_meta, old_meta = new_t.setdefault("metadata", {}), _d(old_t.get("metadata"))
        for f in ("labels", "annotations"):
            if isinstance(new_meta, dict):
                _copy_field(new_meta, old_meta, f)
        new_ps = new_t.setdefault("spec", {})
        if isinstance(new_ps, dict):
            for f in _JOB_MUTABLE_WHEN_SUSPENDED:
                _copy_field(new_ps, _d(old_t.get("spec")), f)
    if new_t != old_t:
        errs.append(cause("spec.template",
                          "Invalid value: core.PodTemplateSpec{...}: field is immutable"))
    return errs


def _validate_time_zone(tz: Any) -> Errs:
    if not isinstance(tz, str):
        return []
    path = "spec.timeZone"
    if tz == "":
        return [_invalid(path, tz, "timeZone must be nil or non-empty string")]
    for part in tz.split("/"):
        if part in (".", "..") or part.startswith("-") or \
                not re.fullmatch(r"[A-Za-z.\-_0-9+]{1,14}", part):
            return [_invalid(path, tz, f"unknown time zone {tz}")]
    if tz.lower() == "local":
        return [_invalid(path, tz, "timeZone must be an explicit time zone as defined in "
                                   "https://www.iana.org/time-zones")]
    if not _time_zone_known(tz):
        return [_invalid(path, tz, f"unknown time zone {tz}")]
    return []


def _time_zone_known(tz: str) -> bool:
    import zoneinfo
    try:
        zoneinfo.ZoneInfo(tz)
        return True
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        # Without any time zone database here, do not reject what upstream would accept.
        return tz == "UTC" or not zoneinfo.available_timezones()


def _validate_cronjob(obj: dict, old: dict | None) -> Errs:
    spec = _d(obj.get("spec"))
    errs: Errs = []
    name = _s(_d(obj.get("metadata")).get("name"))
    if old is None and len(name) > 52:
        errs.append(_invalid("metadata.name", name, "must be no more than 52 characters"))
    schedule = _s(spec.get("schedule"))
    if not schedule:
        errs.append(field_required("spec.schedule"))
    else:
        problem = parse_cron_schedule(schedule)
        if problem:
            errs.append(_invalid("spec.schedule", schedule, problem))
        old_schedule = _s(_d(_d(old).get("spec")).get("schedule")) if old else ""
        if "TZ" in schedule and "TZ" not in old_schedule:
            errs.append(_invalid("spec.schedule", schedule, "cannot use TZ or CRON_TZ in "
                                 "schedule, use timeZone field instead"))
    errs += validate_nonnegative(spec.get("startingDeadlineSeconds"),
                                 "spec.startingDeadlineSeconds")
    if old is None or spec.get("timeZone") != _d(old.get("spec")).get("timeZone"):
        errs += _validate_time_zone(spec.get("timeZone"))
    errs += _enum(spec.get("concurrencyPolicy"), "spec.concurrencyPolicy",
                  ["Allow", "Forbid", "Replace"])
    jt = _d(spec.get("jobTemplate"))
    job_spec = _d(jt.get("spec"))
    errs += _validate_job_spec(job_spec, "spec.jobTemplate.spec", in_template=True)
    if job_spec.get("selector") is not None:
        errs.append(_invalid_raw("spec.jobTemplate.spec.selector",
                                 _go_selector(job_spec.get("selector")),
                                 "`selector` will be auto-generated"))
    if job_spec.get("manualSelector") is True:
        errs.append(field_not_supported("spec.jobTemplate.spec.manualSelector", True,
                                        ["nil", "false"]))
    for f in ("successfulJobsHistoryLimit", "failedJobsHistoryLimit"):
        errs += validate_nonnegative(spec.get(f), _child("spec", f))
    return errs


# ---------------------------------------------------------------------------------------
# Other groups
# ---------------------------------------------------------------------------------------


def _validate_hpa(obj: dict, old: dict | None) -> Errs:
    spec = _d(obj.get("spec"))
    errs: Errs = []
    ref = _d(spec.get("scaleTargetRef"))
    for f in ("kind", "name"):
        v = _s(ref.get(f))
        if not v:
            errs.append(field_required(_child("spec.scaleTargetRef", f)))
        else:
            errs += [_invalid(_child("spec.scaleTargetRef", f), v, m)
                     for m in is_valid_path_segment_name(v)]
    mn, mx = _int(spec.get("minReplicas")), _int(spec.get("maxReplicas"))
    if mn is not None and mn < 1:
        errs.append(_invalid("spec.minReplicas", mn, "must be greater than or equal to 1"))
    if mx is None or mx < 1:
        errs.append(_invalid("spec.maxReplicas", mx if mx is not None else 0,
                             "must be greater than 0"))
    if mn is not None and mx is not None and mx < mn:
        errs.append(_invalid("spec.minReplicas", mn, "must be less than or equal to maxReplicas"))
    cpu = spec.get("targetCPUUtilizationPercentage")
    if _int(cpu) is not None and cpu < 1:
        errs.append(_invalid("spec.targetCPUUtilizationPercentage", cpu, "must be greater than 0"))
    types = ["ContainerResource", "External", "Object", "Pods", "Resource"]
    for i, metric in enumerate(_l(spec.get("metrics"))):
        t = _d(metric).get("type")
        if not t:
            errs.append(field_required(_child(_idx("spec.metrics", i), "type"),
                                       "must specify a metric source type"))
        elif t not in types:
            errs.append(field_not_supported(_child(_idx("spec.metrics", i), "type"), t, types))
    return errs


def _validate_lease(obj: dict, old: dict | None) -> Errs:
    spec = _d(obj.get("spec"))
    errs: Errs = []
    lds = _int(spec.get("leaseDurationSeconds"))
    if lds is not None and lds <= 0:
        errs.append(_invalid("spec.leaseDurationSeconds", lds, "must be greater than 0"))
    errs += validate_nonnegative(spec.get("leaseTransitions"), "spec.leaseTransitions")
    if spec.get("strategy") is not None:
        strategy = _s(spec.get("strategy"))
        errs += [_invalid("spec.strategy", strategy, m) for m in is_qualified_name(strategy)]
    if spec.get("preferredHolder") and spec.get("strategy") is None:
        errs.append(_invalid("spec.preferredHolder", spec.get("preferredHolder"),
                             "may only be specified if `strategy` is defined"))
    return errs


_ADDRESS_TYPES = ["FQDN", "IPv4", "IPv6"]


def _validate_endpoint_slice(obj: dict, old: dict | None) -> Errs:
    errs: Errs = []
    at = obj.get("addressType")
    if not at:
        errs.append(field_required("addressType"))
    elif at not in _ADDRESS_TYPES:
        errs.append(field_not_supported("addressType", at, _ADDRESS_TYPES))
    for i, ep in enumerate(_l(obj.get("endpoints"))):
        p = _child(_idx("endpoints", i), "addresses")
        addrs = _l(_d(ep).get("addresses"))
        if not addrs:
            errs.append(field_required(p, "must contain at least 1 address"))
        elif len(addrs) > 100:
            errs.append(_too_many(p, len(addrs), 100))
        for j, a in enumerate(addrs):
            errs += _validate_slice_address(_s(a), at, _idx(p, j))
    for i, port in enumerate(_l(obj.get("ports"))):
        p, port = _idx("ports", i), _d(port)
        name = _s(port.get("name"))
        if name:
            errs += _validate_dns1123_label(name, _child(p, "name"))
        if port.get("port") is not None:
            errs += [_invalid(_child(p, "port"), port.get("port"), m)
                     for m in is_valid_port_num(port.get("port"))]
        errs += _enum(port.get("protocol"), _child(p, "protocol"), _PROTOCOLS)
    if old is not None and obj.get("addressType") != old.get("addressType"):
        errs.append(_immutable("addressType", obj.get("addressType")))
    return errs


def _validate_slice_address(addr: str, address_type: Any, path: str) -> Errs:
    if address_type in ("IPv4", "IPv6"):
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            ip = None
        want = 4 if address_type == "IPv4" else 6
        if ip is None or ip.version != want:
            return [_invalid(path, addr, f"must be a valid {address_type} address")]
    elif address_type == "FQDN":
        return _validate_dns1123_subdomain(addr, path)
    return []


def _validate_pdb(obj: dict, old: dict | None) -> Errs:
    spec = _d(obj.get("spec"))
    errs: Errs = []
    mn, mu = spec.get("minAvailable"), spec.get("maxUnavailable")
    if mn is not None and mu is not None:
        errs.append(_invalid("spec.minAvailable", mn,
                             "minAvailable and maxUnavailable cannot be both set"))
    for name, v in (("minAvailable", mn), ("maxUnavailable", mu)):
        if v is not None:
            errs += _validate_positive_int_or_percent(v, _child("spec", name))
            errs += _not_more_than_100_percent(v, _child("spec", name))
    errs += validate_label_selector(spec.get("selector"), "spec.selector")
    errs += _enum(spec.get("unhealthyPodEvictionPolicy"), "spec.unhealthyPodEvictionPolicy",
                  ["AlwaysAllow", "IfHealthyBudget"])
    return errs


def _validate_policy_rules(rules: Any, *, namespaced: bool) -> Errs:
    errs: Errs = []
    for i, rule in enumerate(_l(rules)):
        p, rule = _idx("rules", i), _d(rule)
        if not _l(rule.get("verbs")):
            errs.append(field_required(_child(p, "verbs"), "verbs must contain at least one value"))
        urls = _l(rule.get("nonResourceURLs"))
        if urls:
            if namespaced:
                errs.append(_invalid(_child(p, "nonResourceURLs"), urls,
                                     "namespaced rules cannot apply to non-resource URLs"))
            if _l(rule.get("apiGroups")) or _l(rule.get("resources")):
                errs.append(_invalid(_child(p, "nonResourceURLs"), urls, "rules cannot apply to "
                                     "both regular resources and non-resource URLs"))
            continue
        if not _l(rule.get("apiGroups")):
            errs.append(field_required(_child(p, "apiGroups"),
                                       "resource rules must supply at least one api group"))
        if not _l(rule.get("resources")):
            errs.append(field_required(_child(p, "resources"),
                                       "resource rules must supply at least one resource"))
    return errs


def _validate_role(obj: dict, old: dict | None) -> Errs:
    return _validate_policy_rules(obj.get("rules"), namespaced=True)


def _validate_cluster_role(obj: dict, old: dict | None) -> Errs:
    errs = _validate_policy_rules(obj.get("rules"), namespaced=False)
    for i, sel in enumerate(_l(_d(obj.get("aggregationRule")).get("clusterRoleSelectors"))):
        errs += validate_label_selector(sel, _idx("aggregationRule.clusterRoleSelectors", i))
    return errs


_RBAC_GROUP = "rbac.authorization.k8s.io"


def _validate_binding(obj: dict, old: dict | None, *, namespaced: bool) -> Errs:
    ref = _d(obj.get("roleRef"))
    errs: Errs = []
    if ref.get("apiGroup") != _RBAC_GROUP:
        errs.append(field_not_supported("roleRef.apiGroup", _s(ref.get("apiGroup")), [_RBAC_GROUP]))
    kinds = ["Role", "ClusterRole"] if namespaced else ["ClusterRole"]
    if ref.get("kind") not in kinds:
        errs.append(field_not_supported("roleRef.kind", _s(ref.get("kind")), kinds))
    name = _s(ref.get("name"))
    if not name:
        errs.append(field_required("roleRef.name"))
    else:
        errs += [_invalid("roleRef.name", name, m) for m in is_valid_path_segment_name(name)]
    for i, subject in enumerate(_l(obj.get("subjects"))):
        errs += _validate_subject(_d(subject), namespaced, _idx("subjects", i))
    if old is not None and obj.get("roleRef") != old.get("roleRef"):
        errs.append(cause("roleRef", "Invalid value: rbac.RoleRef{...}: cannot change roleRef"))
    return errs


def _validate_subject(subject: dict, namespaced: bool, path: str) -> Errs:
    errs: Errs = []
    name, kind, group = _s(subject.get("name")), subject.get("kind"), _s(subject.get("apiGroup"))
    if not name:
        errs.append(field_required(_child(path, "name")))
    if kind == "ServiceAccount":
        if name:
            errs += [_invalid(_child(path, "name"), name, m) for m in is_dns1123_subdomain(name)]
        if group:
            errs.append(field_not_supported(_child(path, "apiGroup"), group, [""]))
        if not namespaced and not _s(subject.get("namespace")):
            errs.append(field_required(_child(path, "namespace")))
    elif kind in ("User", "Group"):
        if group != _RBAC_GROUP:
            errs.append(field_not_supported(_child(path, "apiGroup"), group, [_RBAC_GROUP]))
    else:
        errs.append(field_not_supported(_child(path, "kind"), _s(kind),
                                        ["ServiceAccount", "User", "Group"]))
    return errs


def _validate_storage_class(obj: dict, old: dict | None) -> Errs:
    errs: Errs = []
    prov = _s(obj.get("provisioner"))
    if not prov:
        errs.append(field_required("provisioner"))
    else:
        errs += _validate_qualified_name(prov.lower(), "provisioner")
    errs += _enum(obj.get("reclaimPolicy"), "reclaimPolicy", ["Delete", "Retain"])
    errs += _enum(obj.get("volumeBindingMode"), "volumeBindingMode",
                  ["Immediate", "WaitForFirstConsumer"])
    if old is not None:
        for f in ("parameters", "provisioner", "reclaimPolicy"):
            if (obj.get(f) or None) != (old.get(f) or None):
                errs.append(field_forbidden(f, f"updates to {f} are forbidden."))
        if obj.get("volumeBindingMode") != old.get("volumeBindingMode"):
            errs.append(_immutable("volumeBindingMode", obj.get("volumeBindingMode")))
    return errs


_PATH_TYPES = ["Exact", "ImplementationSpecific", "Prefix"]


def _validate_ingress_backend(backend: dict, path: str) -> Errs:
    errs: Errs = []
    svc, res = backend.get("service"), backend.get("resource")
    if svc is not None and res is not None:
        return [_invalid(path, "", "cannot set both resource and service backends")]
    if svc is None and res is None:
        return [_invalid(path, "", "resource or service backend is required")]
    if svc is not None:
        svc = _d(svc)
        name = _s(svc.get("name"))
        if not name:
            errs.append(field_required(_child(path, "service", "name")))
        else:
            errs += [_invalid(_child(path, "service", "name"), name, m)
                     for m in is_dns1035_label(name)]
        port = _d(svc.get("port"))
        pname, pnum = _s(port.get("name")), _int(port.get("number")) or 0
        if pname and pnum:
            errs.append(_invalid(path, "", "cannot set both port name & port number"))
        elif pname:
            errs += [_invalid(_child(path, "service", "port", "name"), pname, m)
                     for m in is_valid_port_name(pname)]
        elif pnum:
            errs += [_invalid(_child(path, "service", "port", "number"), pnum, m)
                     for m in is_valid_port_num(pnum)]
        else:
            errs.append(field_required(path, "port name or number is required"))
    else:
        res = _d(res)
        for f in ("kind", "name"):
            if not _s(res.get(f)):
                errs.append(field_required(_child(path, "resource", f)))
    return errs


def _validate_ingress(obj: dict, old: dict | None) -> Errs:
    spec = _d(obj.get("spec"))
    errs: Errs = []
    rules = _l(spec.get("rules"))
    if not rules and spec.get("defaultBackend") is None:
        errs.append(_invalid_raw("spec", "[]networking.IngressRule(nil)",
                                 "either `defaultBackend` or `rules` must be specified"))
    if spec.get("defaultBackend") is not None:
        errs += _validate_ingress_backend(_d(spec["defaultBackend"]), "spec.defaultBackend")
    for i, rule in enumerate(rules):
        p, rule = _idx("spec.rules", i), _d(rule)
        host = _s(rule.get("host"))
        if host:
            if is_valid_ip(host):
                errs.append(_invalid(_child(p, "host"), host, "must be a DNS name, not an IP "
                                                              "address"))
            elif host.startswith("*."):
                if not matches_fully(r"\*\." + DNS1123_SUBDOMAIN_FMT, host):
                    errs.append(_invalid(_child(p, "host"), host, "a wildcard DNS-1123 subdomain "
                                         "must start with '*.', followed by a valid DNS "
                                         "subdomain, which must consist of lower case "
                                         "alphanumeric characters, '-' or '.' and end with an "
                                         "alphanumeric character"))
            else:
                errs += _validate_dns1123_subdomain(host, _child(p, "host"))
        http = rule.get("http")
        if http is None:
            continue
        paths = _l(_d(http).get("paths"))
        if not paths:
            errs.append(field_required(_child(p, "http", "paths")))
        for j, hp in enumerate(paths):
            errs += _validate_ingress_path(_d(hp), _idx(_child(p, "http", "paths"), j))
    errs += _validate_ingress_class_name(spec.get("ingressClassName"))
    return errs


def _validate_ingress_class_name(name: Any) -> Errs:
    if isinstance(name, str):
        return _validate_dns1123_subdomain(name, "spec.ingressClassName")
    return []


def _validate_ingress_path(hp: dict, path: str) -> Errs:
    errs: Errs = []
    pt = hp.get("pathType")
    value = _s(hp.get("path"))
    if not pt:
        errs.append(field_required(_child(path, "pathType"), "pathType must be specified"))
    elif pt not in _PATH_TYPES:
        errs.append(field_not_supported(_child(path, "pathType"), pt, _PATH_TYPES))
    elif pt in ("Exact", "Prefix") and not value.startswith("/"):
        errs.append(_invalid(_child(path, "path"), value, "must be an absolute path"))
    if pt == "ImplementationSpecific" and value and not value.startswith("/"):
        errs.append(_invalid(_child(path, "path"), value, "must be an absolute path"))
    errs += _validate_ingress_backend(_d(hp.get("backend")), _child(path, "backend"))
    return errs


def _validate_ingress_class(obj: dict, old: dict | None) -> Errs:
    spec = _d(obj.get("spec"))
    controller = _s(spec.get("controller"))
    errs: Errs = []
    if not controller:
        errs.append(field_required("spec.controller"))
    elif "/" not in controller:
        errs.append(_invalid("spec.controller", controller,
                             'must be a domain-prefixed path (such as "acme.io/foo")'))
    elif len(controller) > 250:
        errs.append(_too_long("spec.controller", 250))
    params = spec.get("parameters")
    if params is not None:
        params = _d(params)
        for f in ("kind", "name"):
            if not _s(params.get(f)):
                errs.append(field_required(_child("spec.parameters", f)))
        errs += _enum(params.get("scope"), "spec.parameters.scope", ["Cluster", "Namespace"])
    if old is not None and controller != _s(_d(old.get("spec")).get("controller")):
        errs.append(_immutable("spec.controller", controller))
    return errs


def _validate_network_policy(obj: dict, old: dict | None) -> Errs:
    spec = _d(obj.get("spec"))
    errs = validate_label_selector(spec.get("podSelector"), "spec.podSelector")
    for direction, peer_key in (("ingress", "from"), ("egress", "to")):
        for i, rule in enumerate(_l(spec.get(direction))):
            p, rule = _idx(_child("spec", direction), i), _d(rule)
            for j, port in enumerate(_l(rule.get("ports"))):
                pp, port = _idx(_child(p, "ports"), j), _d(port)
                errs += _enum(port.get("protocol"), _child(pp, "protocol"), _PROTOCOLS)
                if port.get("port") is not None:
                    errs += _validate_port_num_or_name(port.get("port"), _child(pp, "port"))
            for j, peer in enumerate(_l(rule.get(peer_key))):
                pp, peer = _idx(_child(p, peer_key), j), _d(peer)
                for f in ("podSelector", "namespaceSelector"):
                    errs += validate_label_selector(peer.get(f), _child(pp, f))
    types = _l(spec.get("policyTypes"))
    for i, t in enumerate(types):
        if t not in ("Ingress", "Egress"):
            errs.append(field_not_supported(_idx("spec.policyTypes", i), t, ["Ingress", "Egress"]))
    if len(types) > 2:
        errs.append(_invalid("spec.policyTypes", types, "may not specify more than two "
                                                        "policyTypes"))
    return errs


HIGHEST_USER_PRIORITY = 1_000_000_000
_SYSTEM_PRIORITY_CLASSES = {"system-cluster-critical": 2_000_000_000,
                            "system-node-critical": 2_000_001_000}


def _validate_priority_class(obj: dict, old: dict | None) -> Errs:
    errs: Errs = []
    name = _s(_d(obj.get("metadata")).get("name"))
    value = _int(obj.get("value"))
    if name.startswith("system-"):
        if name not in _SYSTEM_PRIORITY_CLASSES:
            errs.append(field_forbidden("metadata.name", "priority class names with 'system-' "
                                        "prefix are reserved for system use only. error: "
                                        f"{name} is not a known system priority class"))
        elif value != _SYSTEM_PRIORITY_CLASSES[name]:
            errs.append(field_forbidden("metadata.name", "priority class names with 'system-' "
                                        "prefix are reserved for system use only. error: value of "
                                        f"{name} PriorityClass must be "
                                        f"{_SYSTEM_PRIORITY_CLASSES[name]}"))
    elif value is not None and value > HIGHEST_USER_PRIORITY:
        errs.append(field_forbidden("value", "maximum allowed value of a user defined priority "
                                             f"is {HIGHEST_USER_PRIORITY}"))
    errs += _enum(obj.get("preemptionPolicy"), "preemptionPolicy", ["PreemptLowerPriority", "Never"])
    if old is not None:
        if obj.get("value") != old.get("value"):
            errs.append(field_forbidden("value", "may not be changed in an update."))
        if obj.get("preemptionPolicy") != old.get("preemptionPolicy"):
            errs.append(_immutable("preemptionPolicy", obj.get("preemptionPolicy")))
    return errs


# ---------------------------------------------------------------------------------------
# Registry and entry point
# ---------------------------------------------------------------------------------------

Validator = Callable[[dict, "dict | None"], Errs]

_VALIDATORS: dict[tuple[str, str], Validator] = {
    ("", "Pod"): _validate_pod,
    ("", "PodTemplate"): _validate_pod_template,
    ("", "ReplicationController"): _validate_replication_controller,
    ("", "Service"): _validate_service,
    ("", "ConfigMap"): _validate_config_map,
    ("", "Secret"): _validate_secret,
    ("", "Namespace"): _validate_namespace,
    ("", "Node"): _validate_node,
    ("", "PersistentVolume"): _validate_pv,
    ("", "PersistentVolumeClaim"): _validate_pvc,
    ("", "Endpoints"): _validate_endpoints,
    ("", "ResourceQuota"): _validate_resource_quota,
    ("", "LimitRange"): _validate_limit_range,
    ("", "ServiceAccount"): _validate_service_account,
    ("", "Event"): _validate_event,
    ("apps", "Deployment"): _validate_deployment,
    ("apps", "ReplicaSet"): _validate_replica_set,
    ("apps", "StatefulSet"): _validate_statefulset,
    ("apps", "DaemonSet"): _validate_daemonset,
    ("apps", "ControllerRevision"): _validate_controller_revision,
    ("batch", "Job"): _validate_job,
    ("batch", "CronJob"): _validate_cronjob,
    ("autoscaling", "HorizontalPodAutoscaler"): _validate_hpa,
    ("coordination.k8s.io", "Lease"): _validate_lease,
    ("discovery.k8s.io", "EndpointSlice"): _validate_endpoint_slice,
    ("events.k8s.io", "Event"): _validate_event,
    ("policy", "PodDisruptionBudget"): _validate_pdb,
    ("rbac.authorization.k8s.io", "Role"): _validate_role,
    ("rbac.authorization.k8s.io", "ClusterRole"): _validate_cluster_role,
    ("rbac.authorization.k8s.io", "RoleBinding"):
        lambda o, old: _validate_binding(o, old, namespaced=True),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"):
        lambda o, old: _validate_binding(o, old, namespaced=False),
    ("storage.k8s.io", "StorageClass"): _validate_storage_class,
    ("networking.k8s.io", "Ingress"): _validate_ingress,
    ("networking.k8s.io", "IngressClass"): _validate_ingress_class,
    ("networking.k8s.io", "NetworkPolicy"): _validate_network_policy,
    ("scheduling.k8s.io", "PriorityClass"): _validate_priority_class,
}

# Name rules per kind (upstream's ValidateObjectMeta nameFn); everything else: DNS subdomain.
_NAME_RULES: dict[tuple[str, str], NameFn] = {
    ("", "Namespace"): name_is_dns_label,
    ("", "Service"): name_is_dns1035_label,
    ("rbac.authorization.k8s.io", "Role"): name_is_path_segment,
    ("rbac.authorization.k8s.io", "ClusterRole"): name_is_path_segment,
    ("rbac.authorization.k8s.io", "RoleBinding"): name_is_path_segment,
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"): name_is_path_segment,
    # Upstream's ValidateCertificateRequestName accepts any name: kubelets name theirs
    # `node-csr-<base64url digest>` (capitals, underscores); a path segment stays routable.
    ("certificates.k8s.io", "CertificateSigningRequest"): name_is_path_segment,
}

_NAMESPACED: dict[tuple[str, str], bool] = {(r.group, r.kind): r.namespaced for r in BUILTIN}


def name_rule(group: str, kind: str) -> NameFn:
    """The metadata.name validator upstream uses for a kind."""
    return _NAME_RULES.get((group, kind), name_is_dns_subdomain)


def validate(group: str, kind: str, obj: dict, old: dict | None = None, *,
             namespaced: bool | None = None) -> list[StatusCause]:
    """Validate `obj` (and the transition from `old` on update); [] when valid.

    `namespaced` defaults to what the built-in catalogue says; for unknown kinds (custom
    resources) pass it, or the namespace is only format-checked. Unknown kinds get the
    metadata checks only.
    """
    if namespaced is None:
        namespaced = _NAMESPACED.get((group, kind))
    builtin = (group, kind) in _NAMESPACED
    meta = _d(obj.get("metadata")) if isinstance(obj, dict) else {}
    if old is None:
        errs = validate_object_meta(meta, namespaced, name_rule(group, kind), builtin=builtin)
    else:
        errs = validate_object_meta_update(meta, _d(old.get("metadata")), builtin=builtin)
    validator = _VALIDATORS.get((group, kind))
    if validator is not None and isinstance(obj, dict):
        errs += validator(obj, old)
    return errs
