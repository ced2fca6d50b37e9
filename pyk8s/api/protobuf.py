"""Kubernetes protobuf bodies (`application/vnd.kubernetes.protobuf`) ↔ JSON-shaped dicts.

A body is the magic `k8s\\0` followed by a runtime.Unknown message: {1: typeMeta {1: apiVersion,
2: kind}, 2: raw (the object's own message), 3: contentEncoding, 4: contentType}. The object
is decoded with the field table in `protobuf_types` into the dict json.Marshal would have
produced from the same Go struct: omitempty fields that are empty are left out, a nil
pointer, slice or map without omitempty is null, a struct is always present.

Upstream's generated Go code writes every non-pointer scalar and struct (even when zero) and
pointers only when set, so presence on the wire tells a set pointer from a nil one; field
numbers this table does not know are skipped, as upstream's decoder skips them.
"""
from __future__ import annotations

import base64
import datetime
import functools
import re
import struct
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import orjson

from pyk8s.api import protobuf_types as types

MAGIC = b"k8s\x00"
MEDIA_TYPE = "application/vnd.kubernetes.protobuf"

VARINT, FIXED64, LEN, FIXED32 = 0, 1, 2, 5


class ProtobufError(ValueError):
    """The body is not a well-formed Kubernetes protobuf message."""


class UnknownKind(ProtobufError):
    """No protobuf table for this apiVersion/kind."""

    def __init__(self, api_version: str, kind: str) -> None:
        self.api_version, self.kind = api_version, kind
        super().__init__(f'no protobuf decoding for kind "{kind}" in apiVersion "{api_version}"')


# -- types ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Type:
    """A parsed table type; `form` is one of scalar, special, message, wrapper (a named
    slice), pointer, list, map."""

    form: str
    name: str = ""  # scalar/special/message/wrapper name
    elem: "Type | None" = None  # pointer, list and map element, wrapper item
    key: "Type | None" = None  # map key

    @property
    def item(self) -> "Type":
        """The element type of a pointer, list, map or wrapper."""
        if self.elem is None:
            raise TypeError(f"{self.form} {self.name} has no element type")
        return self.elem

    @property
    def key_type(self) -> "Type":
        if self.key is None:
            raise TypeError(f"{self.form} {self.name} has no key type")
        return self.key


SCALARS = frozenset({"string", "bool", "int32", "int64", "uint32", "uint64", "float32",
                     "float64", "bytes"})
SPECIALS = frozenset({"Time", "MicroTime", "Duration", "Quantity", "IntOrString",
                      "RawExtension", "FieldsV1"})


@functools.cache
def parse_type(text: str) -> Type:
    if text.startswith("*"):
        return Type("pointer", elem=parse_type(text[1:]))
    if text.startswith("[]"):
        return Type("list", elem=parse_type(text[2:]))
    if text.startswith("map["):
        key, _, value = text[4:].partition("]")
        return Type("map", key=parse_type(key), elem=parse_type(value))
    if text in SCALARS:
        return Type("scalar", text)
    if text in SPECIALS:
        return Type("special", text)
    if text in types.LIST_WRAPPERS:
        return Type("wrapper", text, elem=parse_type(types.LIST_WRAPPERS[text]))
    if text in types.MESSAGES:
        return Type("message", text)
    raise KeyError(f"unknown protobuf table type {text!r}")


@dataclass(frozen=True)
class FieldSpec:
    number: int
    json: str
    type: Type
    omitempty: bool
    inline: bool


@functools.cache
def message_fields(name: str) -> tuple[FieldSpec, ...]:
    out = []
    for number, (json_name, type_text, flags) in types.MESSAGES[name].items():
        opts = flags.split(",")
        out.append(FieldSpec(number, json_name, parse_type(type_text), "omitempty" in opts,
                             "inline" in opts))
    return tuple(out)


def message_for(api_version: str, kind: str) -> str:
    name = types.KINDS.get((api_version, kind)) or types.OPTION_KINDS.get(kind)
    if name is None:
        raise UnknownKind(api_version, kind)
    return name


def supports(api_version: str, kind: str) -> bool:
    return (api_version, kind) in types.KINDS or kind in types.OPTION_KINDS


# -- wire reading --------------------------------------------------------------------------
def read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf):
            raise ProtobufError("truncated varint")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7
        if shift >= 70:
            raise ProtobufError("varint too long")


def iter_fields(buf: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value): an int for varints, the bytes otherwise."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ProtobufError("field number 0")
        if wire == VARINT:
            value, pos = read_varint(buf, pos)
            yield number, wire, value
            continue
        if wire == LEN:
            size, pos = read_varint(buf, pos)
        elif wire in (FIXED64, FIXED32):
            size = 8 if wire == FIXED64 else 4
        else:
            raise ProtobufError(f"unsupported wire type {wire} (field {number})")
        if pos + size > end:
            raise ProtobufError(f"truncated field {number}")
        yield number, wire, buf[pos:pos + size]
        pos += size


def _signed(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def _packed_varints(buf: bytes) -> list[int]:
    out, pos = [], 0
    while pos < len(buf):
        v, pos = read_varint(buf, pos)
        out.append(v)
    return out


# -- values --------------------------------------------------------------------------------
def _scalar(name: str, wire: int, raw: int | bytes) -> Any:
    if name == "string":
        return _text(raw, name)
    if name == "bytes":
        return base64.b64encode(_as_bytes(raw, name)).decode()
    if name in ("float64", "float32"):
        data = _as_bytes(raw, name)
        return struct.unpack("<d" if name == "float64" else "<f", data)[0]
    if not isinstance(raw, int):
        raise ProtobufError(f"expected a varint for {name}")
    if name == "bool":
        return raw != 0
    if name == "int32":
        return _signed(raw, 32)
    if name == "int64":
        return _signed(raw, 64)
    return raw & ((1 << (32 if name == "uint32" else 64)) - 1)


def _as_bytes(raw: int | bytes, what: str) -> bytes:
    if isinstance(raw, int):
        raise ProtobufError(f"expected length-delimited data for {what}")
    return raw


def _text(raw: int | bytes, what: str) -> str:
    """A Go string: any bytes; invalid UTF-8 becomes U+FFFD, as json.Marshal writes it."""
    return _as_bytes(raw, what).decode("utf-8", errors="replace")


def decode_value(t: Type, wire: int, raw: int | bytes) -> Any:
    """One wire element of type `t` (not a list or map: those are collected by the caller)."""
    if t.form == "pointer":
        return decode_value(t.item, wire, raw)
    if t.form == "scalar":
        return _scalar(t.name, wire, raw)
    if t.form == "message":
        return decode_message(t.name, _as_bytes(raw, t.name))
    if t.form == "special":
        return SPECIAL_DECODERS[t.name](_as_bytes(raw, t.name))
    if t.form == "wrapper":
        items: list[Any] = []
        for _, w, v in iter_fields(_as_bytes(raw, t.name)):
            items.append(decode_value(t.item, w, v))
        return items
    raise ProtobufError(f"cannot decode {t.form} as a single value")


def _map_entry(t: Type, raw: bytes) -> tuple[Any, Any]:
    key: Any = _MISSING
    value: Any = _MISSING
    for number, wire, v in iter_fields(raw):
        if number == 1:
            key = decode_value(t.key_type, wire, v)
        elif number == 2:
            value = decode_value(t.item, wire, v)
    if key is _MISSING:
        key = zero_value(t.key_type)
    if value is _MISSING:
        value = "" if t.item.name == "bytes" else zero_value(t.item)
    return key, value


def _collect(t: Type, current: Any, wire: int, raw: int | bytes) -> Any:
    """Fold one occurrence of a field into its value so far."""
    if t.form == "list":
        items = current if current is not _MISSING else []
        elem = t.item
        if wire == LEN and elem.form == "scalar" and elem.name not in ("string", "bytes"):
            items.extend(_unpack(elem.name, raw))
        else:
            items.append(decode_value(elem, wire, raw))
        return items
    if t.form == "map":
        entries = current if current is not _MISSING else {}
        k, v = _map_entry(t, _as_bytes(raw, "map entry"))
        entries[k] = v
        return entries
    return decode_value(t, wire, raw)


def _unpack(name: str, raw: bytes) -> list[Any]:
    if name in ("float64", "float32"):
        fmt, size = ("<d", 8) if name == "float64" else ("<f", 4)
        return [struct.unpack_from(fmt, raw, i)[0] for i in range(0, len(raw), size)]
    return [_scalar(name, VARINT, v) for v in _packed_varints(raw)]


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Any = _Missing()


def zero_value(t: Type) -> Any:
    """What json.Marshal prints for the Go zero value of `t`."""
    if t.form in ("pointer", "list", "map", "wrapper") or t.name == "bytes":
        return None
    if t.form == "scalar":
        return {"string": "", "bool": False}.get(t.name, 0)
    if t.form == "message":
        return decode_message(t.name, b"")
    return SPECIAL_DECODERS[t.name](b"")


def is_empty(t: Type, value: Any) -> bool:
    """Go's omitempty test: false, 0, "", nil, and empty slices and maps (never structs)."""
    if t.form in ("message", "special"):
        return False
    if value is None:
        return True
    if t.form in ("list", "map", "wrapper") or t.name == "bytes":
        return len(value) == 0
    if t.form == "scalar":
        return value == "" or (not isinstance(value, str) and value == 0)
    return False


def decode_message(name: str, buf: bytes) -> dict[str, Any]:
    fields = message_fields(name)
    by_number = {f.number: f for f in fields}
    values: dict[int, Any] = {}
    for number, wire, raw in iter_fields(buf):
        spec = by_number.get(number)
        if spec is None:
            continue  # a field newer than our table: skipped, as upstream does
        values[number] = _collect(spec.type, values.get(number, _MISSING), wire, raw)
    out: dict[str, Any] = {}
    for spec in fields:
        value = values.get(spec.number, _MISSING)
        if value is _MISSING:
            value = zero_value(spec.type)
        if spec.inline:
            out.update(value or {})
        elif not (spec.omitempty and is_empty(spec.type, value)):
            out[spec.json] = value
    return out


# -- types with their own encodings --------------------------------------------------------
def _fields_of(buf: bytes) -> dict[int, int | bytes]:
    return {number: value for number, _, value in iter_fields(buf)}


def _int_of(fields: dict[int, int | bytes], number: int, bits: int) -> int:
    value = fields.get(number, 0)
    if not isinstance(value, int):
        raise ProtobufError(f"expected a varint in field {number}")
    return _signed(value, bits)


def _decode_time(buf: bytes, micro: bool = False) -> str | None:
    """metav1.Time: {1: seconds, 2: nanos}; empty means the zero time (JSON null). Upstream's
    Time drops the nanoseconds; MicroTime keeps microseconds."""
    if not buf:
        return None
    f = _fields_of(buf)
    seconds, nanos = _int_of(f, 1, 64), _int_of(f, 2, 32)
    try:
        t = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc) + \
            datetime.timedelta(seconds=seconds)
    except OverflowError:
        raise ProtobufError(f"time out of range: {seconds}s") from None
    if micro:
        return t.strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos // 1000:06d}Z"
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def go_duration(ns: int) -> str:
    """Go's time.Duration.String()."""
    if ns == 0:
        return "0s"
    sign, u = ("-", -ns) if ns < 0 else ("", ns)
    if u < 1_000_000_000:
        for unit, scale in (("ns", 1), ("µs", 1_000), ("ms", 1_000_000)):
            if u < scale * 1000:
                return sign + _fraction(u, scale) + unit
    hours, rest = divmod(u, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    text = _fraction(rest, 1_000_000_000) + "s"
    if hours or minutes:
        text = f"{minutes}m" + text
    if hours:
        text = f"{hours}h" + text
    return sign + text


def _fraction(value: int, scale: int) -> str:
    whole, frac = divmod(value, scale)
    if not frac:
        return str(whole)
    digits = len(str(scale)) - 1
    return f"{whole}." + f"{frac:0{digits}d}".rstrip("0")


def _decode_duration(buf: bytes) -> str:
    return go_duration(_int_of(_fields_of(buf), 1, 64))


def _decode_quantity(buf: bytes) -> str:
    """resource.Quantity: {1: string}, already canonical as the client printed it."""
    return _text(_fields_of(buf).get(1, b""), "Quantity") or "0"


def _decode_int_or_string(buf: bytes) -> int | str:
    """intstr.IntOrString: {1: type (0 int, 1 string), 2: intVal, 3: strVal}."""
    f = _fields_of(buf)
    if f.get(1, 0) == 1:
        return _text(f.get(3, b""), "IntOrString")
    return _int_of(f, 2, 32)


def _decode_raw_json(buf: bytes) -> Any:
    """runtime.RawExtension and metav1.FieldsV1: {1: raw}, raw being JSON."""
    raw = _as_bytes(_fields_of(buf).get(1, b""), "raw")
    if not raw:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise ProtobufError(f"an embedded object is not JSON: {e}") from None


SPECIAL_DECODERS: dict[str, Callable[[bytes], Any]] = {
    "Time": _decode_time,
    "MicroTime": functools.partial(_decode_time, micro=True),
    "Duration": _decode_duration,
    "Quantity": _decode_quantity,
    "IntOrString": _decode_int_or_string,
    "RawExtension": _decode_raw_json,
    "FieldsV1": _decode_raw_json,
}


# -- the envelope --------------------------------------------------------------------------
@dataclass(frozen=True)
class Unknown:
    """runtime.Unknown, the envelope of every protobuf body."""

    api_version: str
    kind: str
    raw: bytes
    content_encoding: str
    content_type: str


def decode_unknown(data: bytes) -> Unknown:
    if not data.startswith(MAGIC):
        raise ProtobufError("missing the protobuf magic prefix 'k8s\\x00'")
    f: dict[int, Any] = {}
    for number, _, value in iter_fields(data[len(MAGIC):]):
        f[number] = value
    type_meta = _fields_of(_as_bytes(f.get(1, b""), "typeMeta"))

    return Unknown(api_version=_text(type_meta.get(1, b""), "apiVersion"),
                   kind=_text(type_meta.get(2, b""), "kind"),
                   raw=_as_bytes(f.get(2, b""), "raw"),
                   content_encoding=_text(f.get(3, b""), "contentEncoding"),
                   content_type=_text(f.get(4, b""), "contentType"))


def decode_request(data: bytes) -> dict[str, Any]:
    """A protobuf request body → the object as the JSON API would have received it."""
    env = decode_unknown(data)
    if env.content_encoding:
        raise ProtobufError(f"unsupported contentEncoding {env.content_encoding!r}")
    if env.content_type not in ("", MEDIA_TYPE):
        raise ProtobufError(f"unsupported embedded contentType {env.content_type!r}")
    if not env.kind:
        raise ProtobufError("the protobuf envelope names no kind")
    obj: dict[str, Any] = {"kind": env.kind, "apiVersion": env.api_version}
    obj.update(decode_message(message_for(env.api_version, env.kind), env.raw))
    return obj


# -- encoding ------------------------------------------------------------------------------
# The inverse, written the way upstream's generated code writes: fields in number order,
# non-pointer scalars and structs always (zero or not), pointers only when set, map entries
# sorted by key.
def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _key(number: int, wire: int) -> bytes:
    return _varint(number << 3 | wire)


def _len_field(number: int, data: bytes) -> bytes:
    return _key(number, LEN) + _varint(len(data)) + data


def _encode_scalar(number: int, name: str, value: Any) -> bytes:
    if name == "string":
        if not isinstance(value, str):
            raise ProtobufError(f"expected a string, got {value!r}")
        return _len_field(number, value.encode())
    if name == "bytes":
        try:
            return _len_field(number, base64.b64decode(value or "", validate=True))
        except (ValueError, TypeError) as e:
            raise ProtobufError(f"bytes field is not base64: {e}") from None
    if name in ("float64", "float32"):
        fmt, wire = ("<d", FIXED64) if name == "float64" else ("<f", FIXED32)
        return _key(number, wire) + struct.pack(fmt, float(value or 0))
    if isinstance(value, (str, type(None))) or isinstance(value, float) and not value.is_integer():
        raise ProtobufError(f"expected an integer or boolean, got {value!r}")
    return _key(number, VARINT) + _varint(int(value))


def _encode_element(number: int, t: Type, value: Any) -> bytes:
    """One occurrence of field `number` holding `value` of (non-list, non-map) type `t`."""
    if t.form == "pointer":
        return _encode_element(number, t.item, value)
    if t.form == "scalar":
        return _encode_scalar(number, t.name, value)
    if t.form == "message":
        if value is not None and not isinstance(value, dict):
            raise ProtobufError(f"expected an object for {t.name}, got {value!r}")
        return _len_field(number, encode_message(t.name, value or {}))
    if t.form == "special":
        return _len_field(number, SPECIAL_ENCODERS[t.name](value))
    if t.form == "wrapper":
        items = b"".join(_encode_element(1, t.item, v) for v in value or ())
        return _len_field(number, items)
    raise ProtobufError(f"cannot encode {t.form} as a single value")


def _encode_field(spec: FieldSpec, obj: dict[str, Any]) -> bytes:
    t = spec.type
    if spec.inline:
        return _len_field(spec.number, encode_message(t.name, obj))
    value = obj.get(spec.json)
    if t.form == "list":
        if value is not None and not isinstance(value, list):
            raise ProtobufError(f"{spec.json}: expected a list, got {value!r}")
        return b"".join(_encode_element(spec.number, t.item, v) for v in value or ())
    if t.form == "map":
        if value is not None and not isinstance(value, dict):
            raise ProtobufError(f"{spec.json}: expected an object, got {value!r}")
        return b"".join(_len_field(spec.number, _encode_element(1, t.key_type, k) +
                                   _encode_element(2, t.item, v))
                        for k, v in sorted((value or {}).items()))
    if t.form in ("pointer", "wrapper") or t.name == "bytes":
        return b"" if value is None else _encode_element(spec.number, t, value)
    if value is None and t.form == "scalar":
        value = zero_value(t)
    return _encode_element(spec.number, t, value)


def encode_message(name: str, obj: dict[str, Any]) -> bytes:
    return b"".join(_encode_field(spec, obj) for spec in sorted(message_fields(name),
                                                               key=lambda f: f.number))


def _encode_time(value: Any) -> bytes:
    if value is None:
        return b""
    try:
        t = datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise ProtobufError(f"invalid time {value!r}") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=datetime.timezone.utc)
    epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
    delta = t - epoch
    seconds = delta.days * 86400 + delta.seconds
    return _key(1, VARINT) + _varint(seconds) + _key(2, VARINT) + \
        _varint(delta.microseconds * 1000)


_DURATION_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000,
                   "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000}


def parse_go_duration(text: str) -> int:
    """Go's time.ParseDuration, in nanoseconds."""
    s = text.strip()
    sign = -1 if s.startswith("-") else 1
    s = s.lstrip("+-")
    if s == "0":
        return 0
    parts = re.findall(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)", s)
    if not parts or "".join(n + u for n, u in parts) != s:
        raise ProtobufError(f"invalid duration {text!r}")
    total = sum(int(round(float(n) * _DURATION_UNITS[u])) for n, u in parts)
    return sign * total


def _encode_duration(value: Any) -> bytes:
    return _key(1, VARINT) + _varint(parse_go_duration(str(value or "0s")))


def _encode_quantity(value: Any) -> bytes:
    return _len_field(1, str(value if value is not None else "0").encode())


def _encode_int_or_string(value: Any) -> bytes:
    if isinstance(value, str):
        return _key(1, VARINT) + _varint(1) + _key(2, VARINT) + _varint(0) + \
            _len_field(3, value.encode())
    return _key(1, VARINT) + _varint(0) + _key(2, VARINT) + _varint(int(value or 0)) + \
        _len_field(3, b"")


def _encode_raw_json(value: Any) -> bytes:
    return b"" if value is None else _len_field(1, orjson.dumps(value))


SPECIAL_ENCODERS: dict[str, Callable[[Any], bytes]] = {
    "Time": _encode_time,
    "MicroTime": _encode_time,
    "Duration": _encode_duration,
    "Quantity": _encode_quantity,
    "IntOrString": _encode_int_or_string,
    "RawExtension": _encode_raw_json,
    "FieldsV1": _encode_raw_json,
}


def encode_object(obj: dict[str, Any]) -> bytes:
    """A JSON-shaped object of a kind in the table → a protobuf body (magic + Unknown)."""
    api_version, kind = str(obj.get("apiVersion") or ""), str(obj.get("kind") or "")
    raw = encode_message(message_for(api_version, kind), obj)
    type_meta = _len_field(1, api_version.encode()) + _len_field(2, kind.encode())
    return MAGIC + _len_field(1, type_meta) + _len_field(2, raw) + _len_field(3, b"") + \
        _len_field(4, b"")
