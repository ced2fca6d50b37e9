"""Generate pyk8s/api/protobuf_types.py: the protobuf field table of the built-in kinds.

    python tools/gen_protobuf_types.py [/usr/lib/google-cloud-sdk/bin/kubectl.1.32]

The wire format of Kubernetes' protobuf bodies is defined by the Go structs of k8s.io/api
and k8s.io/apimachinery: each field's `protobuf:"bytes,2,opt,name=generateName"` tag gives
its field number, its `json:"generateName,omitempty"` tag the JSON name and omitempty, and
its Go type whether it is a pointer, a slice or a map (the published generated.proto files
are derived from the same tags but lose omitempty and pointer-ness, which decide what
json.Marshal would emit). A Go binary keeps those structs, with their tags, in its
reflection metadata, so this script reads them from kubectl's own binary (ELF, Go 1.18+
runtime type layout, amd64) instead of from Go sources. Types with their own encodings
(Time, MicroTime, Duration, Quantity, IntOrString, RawExtension, FieldsV1, the
runtime.Unknown envelope) are decoded by hand in pyk8s/api/protobuf.py, after upstream's
generated.proto. tests/api/test_protobuf.py checks the table against kubectl's real bytes.
"""
from __future__ import annotations

import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "pyk8s" / "api" / "protobuf_types.py"
DEFAULT_BINARY = "/usr/lib/google-cloud-sdk/bin/kubectl.1.32"

# Group versions whose kinds get a table entry: (apiVersion, Go package path).
GROUP_VERSIONS: tuple[tuple[str, str], ...] = (
    ("v1", "k8s.io/api/core/v1"),
    ("apps/v1", "k8s.io/api/apps/v1"),
    ("batch/v1", "k8s.io/api/batch/v1"),
    ("autoscaling/v1", "k8s.io/api/autoscaling/v1"),
    ("autoscaling/v2", "k8s.io/api/autoscaling/v2"),
    ("policy/v1", "k8s.io/api/policy/v1"),
    ("rbac.authorization.k8s.io/v1", "k8s.io/api/rbac/v1"),
    ("networking.k8s.io/v1", "k8s.io/api/networking/v1"),
    ("scheduling.k8s.io/v1", "k8s.io/api/scheduling/v1"),
    ("authentication.k8s.io/v1", "k8s.io/api/authentication/v1"),
    ("authorization.k8s.io/v1", "k8s.io/api/authorization/v1"),
    ("coordination.k8s.io/v1", "k8s.io/api/coordination/v1"),
    ("discovery.k8s.io/v1", "k8s.io/api/discovery/v1"),
    ("events.k8s.io/v1", "k8s.io/api/events/v1"),
    ("storage.k8s.io/v1", "k8s.io/api/storage/v1"),
    ("certificates.k8s.io/v1", "k8s.io/api/certificates/v1"),
)
META = "k8s.io/apimachinery/pkg/apis/meta/v1"
# Option kinds every group version accepts (upstream registers them in each one).
OPTION_KINDS = ("DeleteOptions", "CreateOptions", "UpdateOptions", "PatchOptions")

# Types with their own protobuf and JSON encodings (handled by name in the decoder).
SPECIAL = {
    f"{META}.Time": "Time",
    f"{META}.MicroTime": "MicroTime",
    f"{META}.Duration": "Duration",
    f"{META}.FieldsV1": "FieldsV1",
    "k8s.io/apimachinery/pkg/api/resource.Quantity": "Quantity",
    "k8s.io/apimachinery/pkg/util/intstr.IntOrString": "IntOrString",
    "k8s.io/apimachinery/pkg/runtime.RawExtension": "RawExtension",
}

# Go reflect kinds.
BOOL, INT, INT8, INT16, INT32, INT64 = 1, 2, 3, 4, 5, 6
UINT, UINT8, UINT16, UINT32, UINT64 = 7, 8, 9, 10, 11
FLOAT32, FLOAT64 = 13, 14
ARRAY, CHAN, FUNC, INTERFACE, MAP = 17, 18, 19, 20, 21
POINTER, SLICE, STRING, STRUCT = 22, 23, 24, 25
SCALARS = {BOOL: "bool", INT32: "int32", INT64: "int64", UINT32: "uint32", UINT64: "uint64",
           FLOAT32: "float32", FLOAT64: "float64", STRING: "string", INT: "int64"}
# Size of abi.Type plus the kind-specific part, where the uncommon type starts (Go 1.18–1.24).
KIND_HEADER = {POINTER: 56, SLICE: 56, ARRAY: 72, MAP: 88, STRUCT: 80, INTERFACE: 80, CHAN: 64,
               FUNC: 56}
TFLAG_UNCOMMON, TFLAG_EXTRA_STAR, TFLAG_NAMED = 1, 2, 4


@dataclass
class GoField:
    name: str
    type: "GoType"
    tag: str
    embedded: bool


@dataclass
class GoType:
    kind: int
    name: str  # "v1.ObjectMeta", "[]string", …
    pkg: str
    named: bool
    elem: "GoType | None" = None
    key: "GoType | None" = None
    fields: list[GoField] = field(default_factory=list)

    @property
    def full_name(self) -> str:
        return f"{self.pkg}.{self.name.rsplit('.', 1)[-1]}" if self.named else self.name


class GoBinary:
    """Reads the runtime type metadata of a statically linked amd64 Go ELF binary."""

    def __init__(self, path: str) -> None:
        self.data = Path(path).read_bytes()
        self.sections = self._sections()
        self.types_base = self.sections[".rodata"][0]
        self._cache: dict[int, GoType] = {}

    def _sections(self) -> dict[str, tuple[int, int, int]]:
        d = self.data
        shoff = struct.unpack_from("<Q", d, 0x28)[0]
        entsize, num, strndx = struct.unpack_from("<HHH", d, 0x3A)
        raw = [struct.unpack_from("<IIQQQQ", d, shoff + i * entsize) for i in range(num)]
        strtab = raw[strndx][4]
        out = {}
        for name, typ, _flags, addr, offset, size in raw:
            if typ == 8:  # NOBITS
                continue
            end = d.index(b"\0", strtab + name)
            out[d[strtab + name:end].decode()] = (addr, offset, size)
        return out

    def off(self, va: int) -> int:
        for addr, offset, size in self.sections.values():
            if addr and addr <= va < addr + size:
                return offset + va - addr
        raise KeyError(hex(va))

    def u64(self, va: int) -> int:
        return struct.unpack_from("<Q", self.data, self.off(va))[0]

    def i32(self, va: int) -> int:
        return struct.unpack_from("<i", self.data, self.off(va))[0]

    def _varint(self, o: int) -> tuple[int, int]:
        v = shift = 0
        while True:
            b = self.data[o]
            o += 1
            v |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                return v, o

    def name(self, va: int) -> tuple[str, str, int]:
        """abi.Name: flags byte, varint length, bytes, then (if flag 2) varint tag length, tag."""
        o = self.off(va)
        flags = self.data[o]
        n, o = self._varint(o + 1)
        text = self.data[o:o + n].decode()
        tag = ""
        if flags & 2:
            tn, o2 = self._varint(o + n)
            tag = self.data[o2:o2 + tn].decode()
        return text, tag, flags

    def type_at(self, va: int) -> GoType:
        if va in self._cache:
            return self._cache[va]
        o = self.off(va)
        d = self.data
        tflag, kind = d[o + 20], d[o + 23] & 0x1F
        name = self.name(self.types_base + struct.unpack_from("<i", d, o + 40)[0])[0]
        if tflag & TFLAG_EXTRA_STAR:
            name = name[1:]
        pkg = ""
        if tflag & TFLAG_UNCOMMON:
            pkg = self.name(self.types_base + self.i32(va + KIND_HEADER.get(kind, 48)))[0]
        t = GoType(kind, name, pkg, bool(tflag & TFLAG_NAMED))
        self._cache[va] = t
        if kind in (POINTER, SLICE, ARRAY, CHAN):
            t.elem = self.type_at(self.u64(va + 48))
        elif kind == MAP:
            t.key = self.type_at(self.u64(va + 48))
            t.elem = self.type_at(self.u64(va + 56))
        elif kind == STRUCT:
            fields_va, count = self.u64(va + 56), self.u64(va + 64)
            for i in range(count):
                fname, tag, flags = self.name(self.u64(fields_va + 24 * i))
                ftype = self.type_at(self.u64(fields_va + 24 * i + 8))
                t.fields.append(GoField(fname, ftype, tag, bool(flags & 8)))
        return t

    def named_structs(self) -> dict[str, GoType]:
        """Every named struct reachable from the type links and the itabs."""
        roots = []
        addr, offset, size = self.sections[".typelink"]
        links = struct.unpack_from(f"<{size // 4}i", self.data, offset)
        roots += [self.types_base + x for x in links]
        addr, offset, size = self.sections[".itablink"]
        for itab in struct.unpack_from(f"<{size // 8}Q", self.data, offset):
            roots.append(self.u64(itab + 8))
        out: dict[str, GoType] = {}
        seen: set[int] = set()
        stack = [self.type_at(r) for r in roots]
        while stack:
            t = stack.pop()
            if id(t) in seen:
                continue
            seen.add(id(t))
            if t.kind == STRUCT and t.named:
                out.setdefault(t.full_name, t)
            stack += [x for x in (t.elem, t.key) if x is not None]
            stack += [f.type for f in t.fields]
        return out


def tag_value(tag: str, key: str) -> str | None:
    """Go's reflect.StructTag.Get, enough for k8s tags."""
    i = tag.find(key + ':"')
    while i > 0 and tag[i - 1] != " ":
        i = tag.find(key + ':"', i + 1)
    if i < 0:
        return None
    start = i + len(key) + 2
    return tag[start:tag.index('"', start)]


def short_pkg(pkg: str) -> str:
    for prefix in ("k8s.io/api/", "k8s.io/apimachinery/pkg/apis/", "k8s.io/apimachinery/pkg/util/",
                   "k8s.io/apimachinery/pkg/api/", "k8s.io/apimachinery/pkg/"):
        if pkg.startswith(prefix):
            return pkg[len(prefix):]
    return pkg


def message_name(t: GoType) -> str:
    return f"{short_pkg(t.pkg)}.{t.name.rsplit('.', 1)[-1]}"


class TableBuilder:
    def __init__(self, structs: dict[str, GoType]) -> None:
        self.structs = structs
        self.messages: dict[str, dict[int, tuple[str, str, str]]] = {}
        self.list_wrappers: dict[str, str] = {}
        self.pending: list[GoType] = []
        self.types: dict[str, GoType] = {}

    def type_string(self, t: GoType) -> str:
        if t.named and t.full_name in SPECIAL:
            return SPECIAL[t.full_name]
        if t.kind == POINTER:
            return "*" + self.type_string(t.elem)
        if t.kind == SLICE:
            if t.elem.kind == UINT8:
                return "bytes"
            inner = "[]" + self.type_string(t.elem)
            if t.named:  # go-to-protobuf wraps named slices: message X { repeated T items = 1; }
                name = message_name(t)
                self.list_wrappers[name] = self.type_string(t.elem)
                return name
            return inner
        if t.kind == MAP:
            return f"map[{self.type_string(t.key)}]{self.type_string(t.elem)}"
        if t.kind == STRUCT:
            if t.full_name not in self.messages:
                self.messages[t.full_name] = {}
                self.types[t.full_name] = t
                self.pending.append(t)
            return message_name(t)
        if t.kind in SCALARS:
            return SCALARS[t.kind]
        raise ValueError(f"no protobuf mapping for Go type {t.name} (kind {t.kind})")

    def add(self, full_name: str) -> str:
        t = self.structs[full_name]
        name = self.type_string(t)
        while self.pending:
            self.build(self.pending.pop())
        return name

    def build(self, t: GoType) -> None:
        table: dict[int, tuple[str, str, str]] = {}
        for f in t.fields:
            pb = tag_value(f.tag, "protobuf")
            js = tag_value(f.tag, "json")
            if not pb or pb == "-" or js == "-":
                continue
            parts = pb.split(",")
            number = int(parts[1])
            json_name, _, opts = (js or "").partition(",")
            flags = []
            if "omitempty" in opts.split(","):
                flags.append("omitempty")
            if not json_name and (f.embedded or "inline" in opts.split(",")):
                flags.append("inline")
            elif not json_name:
                json_name = f.name
            table[number] = (json_name, self.type_string(f.type), ",".join(flags))
        self.messages[t.full_name] = table

    def renamed(self) -> dict[str, dict[int, tuple[str, str, str]]]:
        out = {message_name(self.types[k]): v for k, v in self.messages.items()}
        return dict(sorted(out.items()))


def is_kind(t: GoType) -> bool:
    """A top-level kind: embeds TypeMeta, has metadata, and is not a List."""
    names = {f.name for f in t.fields}
    return "TypeMeta" in names and not t.name.endswith("List") and "Items" not in names


def main() -> None:
    binary = GoBinary(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_BINARY)
    structs = binary.named_structs()
    builder = TableBuilder(structs)
    kinds: dict[tuple[str, str], str] = {}
    for api_version, pkg in GROUP_VERSIONS:
        for full, t in sorted(structs.items()):
            if full.rsplit(".", 1)[0] == pkg and is_kind(t):
                kinds[(api_version, full.rsplit(".", 1)[1])] = builder.add(full)
    for kind in OPTION_KINDS:
        builder.add(f"{META}.{kind}")
    write(builder, kinds, sys.argv[1] if len(sys.argv) > 1 else DEFAULT_BINARY)


def write(builder: TableBuilder, kinds: dict[tuple[str, str], str], source: str) -> None:
    lines = [
        '"""Protobuf field table of the built-in kinds (k8s.io/api, k8s.io/apimachinery).',
        "",
        f"Generated by tools/gen_protobuf_types.py from the struct tags in {Path(source).name}'s",
        "type metadata; do not edit by hand. MESSAGES maps a message to {field number: (JSON",
        'name, type, flags)}: types are Go-like ("string", "*int32", "[]core/v1.Container",',
        '"map[string]bytes", special "Time"/"Quantity"/"IntOrString"/…, or a message name);',
        'flags are "omitempty" and/or "inline" (the JSON fields of an embedded struct).',
        "LIST_WRAPPERS are named slices, sent as `message X { repeated T items = 1; }`.",
        "KINDS maps (apiVersion, kind) to the message of that kind.",
        '"""',
        "from __future__ import annotations",
        "",
        "Field = tuple[str, str, str]",
        "",
        "MESSAGES: dict[str, dict[int, Field]] = {",
    ]
    for name, table in builder.renamed().items():
        lines.append(f"    {name!r}: {{")
        for number, (json_name, typ, flags) in sorted(table.items()):
            lines.append(f"        {number}: ({json_name!r}, {typ!r}, {flags!r}),")
        lines.append("    },")
    lines.append("}")
    lines.append("")
    lines.append("LIST_WRAPPERS: dict[str, str] = {")
    for name, elem in sorted(builder.list_wrappers.items()):
        lines.append(f"    {name!r}: {elem!r},")
    lines.append("}")
    lines.append("")
    lines.append("KINDS: dict[tuple[str, str], str] = {")
    for (api_version, kind), name in sorted(kinds.items()):
        lines.append(f"    ({api_version!r}, {kind!r}): {name!r},")
    lines.append("}")
    lines.append("")
    options = ", ".join(f"{k!r}: {'meta/v1.' + k!r}" for k in OPTION_KINDS)
    lines.append(f"OPTION_KINDS: dict[str, str] = {{{options}}}")
    OUT.write_text("\n".join(lines) + "\n")
    print(f"wrote {OUT}: {len(builder.messages)} messages, {len(kinds)} kinds")


if __name__ == "__main__":
    main()
