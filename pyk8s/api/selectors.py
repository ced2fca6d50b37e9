"""Label and field selectors, as pure code (no I/O).

A faithful port of upstream's selector machinery:

* label selectors: ``k8s.io/apimachinery/pkg/labels/selector.go`` (lexer, parser,
  ``NewRequirement`` validation, matching, canonical ``String()``) and
  ``metav1.LabelSelectorAsSelector`` for the object form (``matchLabels`` /
  ``matchExpressions``);
* field selectors: ``k8s.io/apimachinery/pkg/fields/selector.go`` (term splitting,
  backslash escaping, ``Transform``);
* the per-kind field-selector contract the API server enforces, which upstream splits
  in two independent layers that are mirrored here:

  1. *accepting / aliasing* a field label: the conversion funcs registered with
     ``Scheme.AddFieldLabelConversionFunc`` (``pkg/apis/<group>/<version>/conversion.go``),
     with ``runtime.DefaultMetaV1FieldSelectorConversion`` as the fallback for kinds that
     register none (every ``apps`` kind included). See `convert_field_selector`.
  2. *the values matched against*: the registry strategies' ``GetAttrs`` /
     ``ToSelectableFields`` (``pkg/registry/...``). See `object_fields`.

  The two lists differ on purpose upstream: pods accept ``status.podIPs`` but never set it
  (so it only ever matches ``""``), ``spec.host`` is a legacy alias of ``spec.nodeName``,
  events.k8s.io accepts ``regarding.*`` and maps it to the core ``involvedObject.*`` names,
  and apps/v1 ReplicaSets expose ``status.replicas`` in ``GetAttrs`` but reject it as a
  field label (kubernetes/kubernetes#135136).

Every syntax or validation failure raises `SelectorError`, a 400 ``BadRequest`` whose
message is upstream's (wording of Kubernetes 1.30-1.33 for the validation texts).

Typical API-server use::

    labels = parse_label_selector(query.get("labelSelector", ""))
    fields = convert_field_selector(group, kind, query.get("fieldSelector", ""))
    keep = [o for o in objs
            if labels.matches(o["metadata"].get("labels"))
            and fields.matches(object_fields(group, kind, o))]
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Callable, Iterable, Mapping, NamedTuple, Sequence

from pyk8s.api.errors import BadRequest
from pyk8s.api.names import is_qualified_name, is_valid_label_value

__all__ = [
    "SelectorError", "Operator", "Requirement", "LabelSelector",
    "parse_label_selector", "label_selector_from_dict", "label_selector_from_set",
    "selector_dict_to_string", "qualified_name_errors", "label_value_errors",
    "FieldRequirement", "FieldSelector", "parse_field_selector",
    "escape_field_value", "unescape_field_value",
    "object_fields", "convert_field_selector", "validate_field_selector",
]


class SelectorError(BadRequest, ValueError):
    """An unparsable or invalid selector: HTTP 400 BadRequest with upstream's message."""


# --------------------------------------------------------------------------------------
# Go formatting helpers (error messages quote values the way Go's fmt does)
# --------------------------------------------------------------------------------------

_GO_ESCAPES = {"\a": r"\a", "\b": r"\b", "\f": r"\f", "\n": r"\n", "\r": r"\r",
               "\t": r"\t", "\v": r"\v", "\\": "\\\\", '"': '\\"'}


def _go_quote(s: str) -> str:
    """Go's ``%q`` / ``strconv.Quote`` for a string."""
    out = ['"']
    for ch in s:
        if ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif ch == " " or ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)


def _go_string_slice(values: Sequence[str] | None) -> str:
    """Go's ``%#v`` of a ``[]string`` (``[]string(nil)`` for a nil slice)."""
    if values is None:
        return "[]string(nil)"
    return "[]string{" + ", ".join(_go_quote(v) for v in values) + "}"


_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_DECIMAL = re.compile(r"[+-]?[0-9]+")


def _parse_int64(s: str) -> int | None:
    """``strconv.ParseInt(s, 10, 64)``: the value, or None where Go returns an error."""
    if not _DECIMAL.fullmatch(s):
        return None
    n = int(s)
    return n if _INT64_MIN <= n <= _INT64_MAX else None


def _aggregate(messages: Iterable[str]) -> str | None:
    """``field.ErrorList.ToAggregate().Error()``: deduplicated, bracketed when several."""
    unique: list[str] = []
    for m in messages:
        if m not in unique:
            unique.append(m)
    if not unique:
        return None
    if len(unique) == 1:
        return unique[0]
    return "[" + ", ".join(unique) + "]"


def _invalid(path: str, value: str | Sequence[str] | None, detail: str) -> str:
    """``field.Invalid(path, value, detail).Error()``."""
    shown = _go_quote(value) if isinstance(value, str) else _go_string_slice(value)
    return f"{path}: Invalid value: {shown}: {detail}"


# --------------------------------------------------------------------------------------
# Label key / value validation (k8s.io/apimachinery/pkg/util/validation)
# --------------------------------------------------------------------------------------

# Upstream's IsQualifiedName / IsValidLabelValue: lists of problems, empty if valid.
qualified_name_errors = is_qualified_name
label_value_errors = is_valid_label_value


def _key_error(key: str, path: str) -> str | None:
    """``validateLabelKey``: a ``field.Invalid`` message, or None."""
    errs = qualified_name_errors(key)
    return _invalid(path, key, "; ".join(errs)) if errs else None


# --------------------------------------------------------------------------------------
# Label selectors
# --------------------------------------------------------------------------------------

class Operator(StrEnum):
    """``k8s.io/apimachinery/pkg/selection.Operator`` (values as upstream spells them)."""

    DOES_NOT_EXIST = "!"
    EQUALS = "="
    DOUBLE_EQUALS = "=="
    IN = "in"
    NOT_EQUALS = "!="
    NOT_IN = "notin"
    EXISTS = "exists"
    GREATER_THAN = "gt"
    LESS_THAN = "lt"


_BINARY_OPERATORS = (Operator.IN, Operator.NOT_IN, Operator.EQUALS, Operator.DOUBLE_EQUALS,
                     Operator.NOT_EQUALS, Operator.GREATER_THAN, Operator.LESS_THAN)
_OPERATOR_SYMBOL = {Operator.EQUALS: "=", Operator.DOUBLE_EQUALS: "==",
                    Operator.NOT_EQUALS: "!=", Operator.IN: " in ",
                    Operator.NOT_IN: " notin ", Operator.GREATER_THAN: ">",
                    Operator.LESS_THAN: "<"}


@dataclass(frozen=True)
class Requirement:
    """One ``key <operator> values`` term of a label selector (upstream ``Requirement``).

    Build through `Requirement.new` to get upstream's validation; the parser and
    `label_selector_from_dict` do so.
    """

    key: str
    operator: Operator
    values: tuple[str, ...] = ()

    @classmethod
    def new(cls, key: str, operator: Operator | str, values: Sequence[str] | None = None,
            *, path: str | None = None) -> "Requirement":
        """Upstream ``NewRequirement``: validate and build, or raise `SelectorError`.

        ``path`` is the field path prefix for messages (upstream's ``field.PathOption``);
        without one the key is reported as ``key`` and values as ``values[i][<key>]``.
        """
        def child(name: str) -> str:
            return f"{path}.{name}" if path else name

        errs: list[str] = []
        if (e := _key_error(key, child("key"))) is not None:
            errs.append(e)
        vals = list(values) if values is not None else []
        values_path = child("values")
        try:
            op = Operator(operator)
        except ValueError:
            supported = ", ".join(_go_quote(o.value) for o in (*_BINARY_OPERATORS,
                                                               Operator.EXISTS,
                                                               Operator.DOES_NOT_EXIST))
            errs.append(f"{child('operator')}: Unsupported value: {_go_quote(str(operator))}: "
                        f"supported values: {supported}")
            op = None
        if op in (Operator.IN, Operator.NOT_IN):
            if not vals:
                errs.append(_invalid(values_path, values,
                                     "for 'in', 'notin' operators, values set can't be empty"))
        elif op in (Operator.EQUALS, Operator.DOUBLE_EQUALS, Operator.NOT_EQUALS):
            if len(vals) != 1:
                errs.append(_invalid(values_path, values,
                                     "exact-match compatibility requires one single value"))
        elif op in (Operator.EXISTS, Operator.DOES_NOT_EXIST):
            if vals:
                errs.append(_invalid(values_path, values,
                                     "values set must be empty for exists and does not exist"))
        elif op in (Operator.GREATER_THAN, Operator.LESS_THAN):
            if len(vals) != 1:
                errs.append(_invalid(values_path, values,
                                     "for 'Gt', 'Lt' operators, exactly one value is required"))
            for i, v in enumerate(vals):
                if _parse_int64(v) is None:
                    errs.append(_invalid(f"{values_path}[{i}]", v,
                                         "for 'Gt', 'Lt' operators, the value must be an integer"))
        for i, v in enumerate(vals):
            if verrs := label_value_errors(v):
                errs.append(_invalid(f"{values_path}[{i}][{key}]", v, "; ".join(verrs)))
        if (message := _aggregate(errs)) is not None:
            raise SelectorError(message)
        assert op is not None
        return cls(key, op, tuple(vals))

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Upstream ``Requirement.Matches``; a missing key satisfies only ``!=``, ``notin``
        and ``!key``."""
        op = self.operator
        if op in (Operator.IN, Operator.EQUALS, Operator.DOUBLE_EQUALS):
            return self.key in labels and labels[self.key] in self.values
        if op in (Operator.NOT_IN, Operator.NOT_EQUALS):
            return self.key not in labels or labels[self.key] not in self.values
        if op is Operator.EXISTS:
            return self.key in labels
        if op is Operator.DOES_NOT_EXIST:
            return self.key not in labels
        if op in (Operator.GREATER_THAN, Operator.LESS_THAN):
            if self.key not in labels or len(self.values) != 1:
                return False
            have, want = _parse_int64(labels[self.key]), _parse_int64(self.values[0])
            if have is None or want is None:
                return False
            return have > want if op is Operator.GREATER_THAN else have < want
        return False

    def __str__(self) -> str:
        """Upstream ``Requirement.String()``: values sorted, ``in``/``notin`` parenthesised."""
        op = self.operator
        if op is Operator.EXISTS:
            return self.key
        if op is Operator.DOES_NOT_EXIST:
            return "!" + self.key
        values = self.values[0] if len(self.values) == 1 else ",".join(sorted(self.values))
        if op in (Operator.IN, Operator.NOT_IN):
            values = f"({values})"
        return self.key + _OPERATOR_SYMBOL[op] + values


@dataclass(frozen=True)
class LabelSelector:
    """A conjunction of `Requirement`s, kept sorted by key as upstream does.

    ``LabelSelector.everything()`` (no requirements) matches every object, and so does
    the empty string; ``LabelSelector.nothing()`` matches none (what a ``None``
    ``metav1.LabelSelector`` converts to).
    """

    requirements: tuple[Requirement, ...] = ()
    selects_nothing: bool = field(default=False, repr=False)

    @classmethod
    def everything(cls) -> "LabelSelector":
        return cls()

    @classmethod
    def nothing(cls) -> "LabelSelector":
        return cls((), True)

    @classmethod
    def of(cls, requirements: Iterable[Requirement]) -> "LabelSelector":
        """A selector of the given requirements, sorted (stably) by key as ``Add`` does."""
        return cls(tuple(sorted(requirements, key=lambda r: r.key)))

    @property
    def empty(self) -> bool:
        """True when the selector does not restrict anything (false for `nothing`)."""
        return not self.selects_nothing and not self.requirements

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        """Whether an object carrying ``labels`` (None meaning none) is selected."""
        if self.selects_nothing:
            return False
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    def requires_exact_match(self, key: str) -> str | None:
        """The single value ``key`` must have (``=``, ``==`` or one-value ``in``), if any."""
        for r in self.requirements:
            if r.key == key:
                if (r.operator in (Operator.EQUALS, Operator.DOUBLE_EQUALS, Operator.IN)
                        and len(r.values) == 1):
                    return r.values[0]
                return None
        return None

    def __str__(self) -> str:
        """The canonical form, e.g. ``app=web,tier in (a,b)`` ("" for everything/nothing)."""
        return ",".join(str(r) for r in self.requirements)


# -- lexer (upstream Lexer / Token) -----------------------------------------------------

class _Tok:
    ERROR = "error"
    EOS = "end of string"
    CLOSED_PAR = ")"
    COMMA = ","
    DOES_NOT_EXIST = "!"
    DOUBLE_EQUALS = "=="
    EQUALS = "="
    GREATER_THAN = ">"
    IDENTIFIER = "identifier"
    IN = "in"
    LESS_THAN = "<"
    NOT_EQUALS = "!="
    NOT_IN = "notin"
    OPEN_PAR = "("


_STRING_TO_TOKEN = {")": _Tok.CLOSED_PAR, ",": _Tok.COMMA, "!": _Tok.DOES_NOT_EXIST,
                    "==": _Tok.DOUBLE_EQUALS, "=": _Tok.EQUALS, ">": _Tok.GREATER_THAN,
                    "in": _Tok.IN, "<": _Tok.LESS_THAN, "!=": _Tok.NOT_EQUALS,
                    "notin": _Tok.NOT_IN, "(": _Tok.OPEN_PAR}
_SPECIAL = frozenset("=!(),><")
_WHITESPACE = frozenset(" \t\r\n")
_END = "\x00"  # upstream's read() yields byte 0 at the end (and for a NUL in the input)


def _lex(s: str) -> list[tuple[str, str]]:
    """Tokenise ``s`` exactly as upstream's ``Lexer`` does, ending with EOS."""
    pos = 0

    def read() -> str:
        nonlocal pos
        if pos < len(s):
            pos += 1
            return s[pos - 1]
        return _END

    items: list[tuple[str, str]] = []
    while True:
        ch = read()
        while ch in _WHITESPACE:
            ch = read()
        if ch == _END:
            items.append((_Tok.EOS, ""))
            return items
        pos -= 1
        buf = ""
        if ch in _SPECIAL:
            last: tuple[str, str] | None = None
            while True:
                ch = read()
                if ch == _END:
                    break
                if ch not in _SPECIAL:
                    pos -= 1
                    break
                buf += ch
                if buf in _STRING_TO_TOKEN:
                    last = (_STRING_TO_TOKEN[buf], buf)
                elif last is not None:
                    pos -= 1
                    break
            items.append(last or (_Tok.ERROR, f"error expected: keyword found '{buf}'"))
        else:
            while True:
                ch = read()
                if ch == _END:
                    break
                if ch in _SPECIAL or ch in _WHITESPACE:
                    pos -= 1
                    break
                buf += ch
            items.append((_STRING_TO_TOKEN.get(buf, _Tok.IDENTIFIER), buf))


class _ParseError(Exception):
    pass


class _Parser:
    """Upstream's recursive-descent ``Parser``.

    Where a value is expected (the ``Values`` context) the keywords ``in``/``notin`` are
    ordinary identifiers, so ``in in (in)`` is a valid selector.
    """

    def __init__(self, selector: str) -> None:
        self.items = _lex(selector)
        self.position = 0

    def lookahead(self, values_context: bool = True) -> tuple[str, str]:
        tok, lit = self.items[self.position]
        if values_context and tok in (_Tok.IN, _Tok.NOT_IN):
            tok = _Tok.IDENTIFIER
        return tok, lit

    def consume(self, values_context: bool = True) -> tuple[str, str]:
        result = self.lookahead(values_context)
        self.position += 1
        return result

    def parse(self) -> list[Requirement]:
        requirements: list[Requirement] = []
        while True:
            tok, lit = self.lookahead()
            if tok in (_Tok.IDENTIFIER, _Tok.DOES_NOT_EXIST):
                try:
                    requirements.append(self.parse_requirement())
                except (_ParseError, SelectorError) as e:
                    raise SelectorError(f"unable to parse requirement: {e}") from None
                t, l = self.consume()
                if t == _Tok.EOS:
                    return requirements
                if t == _Tok.COMMA:
                    t2, l2 = self.lookahead()
                    if t2 not in (_Tok.IDENTIFIER, _Tok.DOES_NOT_EXIST):
                        raise SelectorError(f"found '{l2}', expected: identifier after ','")
                else:
                    raise SelectorError(f"found '{l}', expected: ',' or 'end of string'")
            elif tok == _Tok.EOS:
                return requirements
            else:
                raise SelectorError(
                    f"found '{lit}', expected: !, identifier, or 'end of string'")

    def parse_requirement(self) -> Requirement:
        key, operator = self.parse_key_and_infer_operator()
        if operator in (Operator.EXISTS, Operator.DOES_NOT_EXIST):
            return Requirement.new(key, operator, [])
        operator = self.parse_operator()
        if operator in (Operator.IN, Operator.NOT_IN):
            values = self.parse_values()
        else:
            values = self.parse_exact_value()
        return Requirement.new(key, operator, sorted(values))

    def parse_key_and_infer_operator(self) -> tuple[str, Operator | None]:
        operator: Operator | None = None
        tok, literal = self.consume()
        if tok == _Tok.DOES_NOT_EXIST:
            operator = Operator.DOES_NOT_EXIST
            tok, literal = self.consume()
        if tok != _Tok.IDENTIFIER:
            raise _ParseError(f"found '{literal}', expected: identifier")
        if (err := _key_error(literal, "<nil>")) is not None:
            raise _ParseError(err)
        if self.lookahead()[0] in (_Tok.EOS, _Tok.COMMA) and operator is None:
            operator = Operator.EXISTS
        return literal, operator

    def parse_operator(self) -> Operator:
        tok, lit = self.consume(values_context=False)
        operator = {_Tok.IN: Operator.IN, _Tok.EQUALS: Operator.EQUALS,
                    _Tok.DOUBLE_EQUALS: Operator.DOUBLE_EQUALS,
                    _Tok.GREATER_THAN: Operator.GREATER_THAN,
                    _Tok.LESS_THAN: Operator.LESS_THAN, _Tok.NOT_IN: Operator.NOT_IN,
                    _Tok.NOT_EQUALS: Operator.NOT_EQUALS}.get(tok)
        if operator is None:
            expected = ", ".join(o.value for o in _BINARY_OPERATORS)
            raise _ParseError(f"found '{lit}', expected: {expected}")
        return operator

    def parse_values(self) -> set[str]:
        tok, lit = self.consume()
        if tok != _Tok.OPEN_PAR:
            raise _ParseError(f"found '{lit}' expected: '('")
        tok, lit = self.lookahead()
        if tok in (_Tok.IDENTIFIER, _Tok.COMMA):
            values = self.parse_identifiers_list()
            if self.consume()[0] != _Tok.CLOSED_PAR:
                raise _ParseError(f"found '{lit}', expected: ')'")
            return values
        if tok == _Tok.CLOSED_PAR:  # "()" is the set holding the empty string
            self.consume()
            return {""}
        raise _ParseError(f"found '{lit}', expected: ',', ')' or identifier")

    def parse_identifiers_list(self) -> set[str]:
        values: set[str] = set()
        while True:
            tok, lit = self.consume()
            if tok == _Tok.IDENTIFIER:
                values.add(lit)
                tok2, lit2 = self.lookahead()
                if tok2 == _Tok.COMMA:
                    continue
                if tok2 == _Tok.CLOSED_PAR:
                    return values
                raise _ParseError(f"found '{lit2}', expected: ',' or ')'")
            if tok == _Tok.COMMA:  # empty elements: "(,a" "a,)" "a,,b"
                if not values:
                    values.add("")
                tok2 = self.lookahead()[0]
                if tok2 == _Tok.CLOSED_PAR:
                    values.add("")
                    return values
                if tok2 == _Tok.COMMA:
                    values.add("")
            else:
                raise _ParseError(f"found '{lit}', expected: ',', or identifier")

    def parse_exact_value(self) -> set[str]:
        if self.lookahead()[0] in (_Tok.EOS, _Tok.COMMA):
            return {""}
        tok, lit = self.consume()
        if tok == _Tok.IDENTIFIER:
            return {lit}
        raise _ParseError(f"found '{lit}', expected: identifier")


def parse_label_selector(selector: str) -> LabelSelector:
    """Parse a label selector string (upstream ``labels.Parse``).

    Grammar: comma-separated requirements, each ``key``, ``!key``, ``key=value``,
    ``key==value``, ``key!=value``, ``key in (v1,v2)``, ``key notin (v1,v2)``,
    ``key>N`` or ``key<N``; whitespace separates tokens freely. ``""`` selects everything.
    Raises `SelectorError` with upstream's message on bad syntax or invalid keys/values.
    """
    return LabelSelector.of(_Parser(selector).parse())


_DICT_OPERATORS = {"In": Operator.IN, "NotIn": Operator.NOT_IN,
                   "Exists": Operator.EXISTS, "DoesNotExist": Operator.DOES_NOT_EXIST}


def label_selector_from_dict(sel: Mapping[str, Any] | None) -> LabelSelector:
    """Convert a ``metav1.LabelSelector`` object (upstream ``LabelSelectorAsSelector``).

    ``None`` selects **nothing**; ``{}`` (no ``matchLabels`` and no ``matchExpressions``)
    selects **everything**. ``matchLabels`` entries become ``key=value``;
    ``matchExpressions`` support the operators ``In``, ``NotIn``, ``Exists`` and
    ``DoesNotExist``. Invalid keys, values or operators raise `SelectorError`.
    """
    if sel is None:
        return LabelSelector.nothing()
    match_labels = sel.get("matchLabels") or {}
    match_expressions = sel.get("matchExpressions") or []
    if not match_labels and not match_expressions:
        return LabelSelector.everything()
    requirements = []
    for key in sorted(match_labels):
        value = match_labels[key]
        if not isinstance(key, str) or not isinstance(value, str):
            raise SelectorError(f"matchLabels: keys and values must be strings, "
                                f"got {key!r}: {value!r}")
        requirements.append(Requirement.new(key, Operator.EQUALS, [value]))
    for expr in match_expressions:
        operator = expr.get("operator", "")
        if operator not in _DICT_OPERATORS:
            raise SelectorError(
                f"{_go_quote(str(operator))} is not a valid label selector operator")
        values = expr.get("values")
        if values is not None and not all(isinstance(v, str) for v in values):
            raise SelectorError(f"matchExpressions: values must be strings, got {values!r}")
        requirements.append(Requirement.new(str(expr.get("key", "")),
                                            _DICT_OPERATORS[operator],
                                            list(values) if values else None))
    return LabelSelector.of(requirements)


def label_selector_from_set(labels: Mapping[str, str] | None) -> LabelSelector:
    """``labels.SelectorFromSet``: ``key=value`` for each entry, not validated.

    An empty or None set selects everything (the map-form selectors of
    ReplicationControllers and Services).
    """
    return LabelSelector.of(Requirement(k, Operator.EQUALS, (v,))
                            for k, v in (labels or {}).items())


def selector_dict_to_string(sel: Mapping[str, Any] | None) -> str:
    """The canonical string of a ``metav1.LabelSelector`` object, e.g.
    ``app=web,tier in (a,b)`` (what the Scale subresource's ``status.selector`` shows).

    ``None`` and ``{}`` both give ``""``. Raises `SelectorError` when invalid.
    """
    return str(label_selector_from_dict(sel))


# --------------------------------------------------------------------------------------
# Field selectors
# --------------------------------------------------------------------------------------

class FieldRequirement(NamedTuple):
    """One ``field op value`` term; ``op`` is ``"="`` (also for ``==``) or ``"!="``."""

    field: str
    op: str
    value: str


@dataclass(frozen=True)
class FieldSelector:
    """A conjunction of field requirements (upstream ``fields.Selector``).

    Terms keep upstream's order: the comma-separated parts sorted as strings.
    """

    requirements: tuple[FieldRequirement, ...] = ()

    @classmethod
    def everything(cls) -> "FieldSelector":
        return cls()

    @property
    def empty(self) -> bool:
        return not self.requirements

    def matches(self, fields: Mapping[str, str]) -> bool:
        """Whether a field set matches; a field missing from ``fields`` reads as ``""``."""
        for r in self.requirements:
            equal = fields.get(r.field, "") == r.value
            if equal != (r.op == "="):
                return False
        return True

    def requires_exact_match(self, field_name: str) -> str | None:
        """The value an ``=`` term demands of ``field_name``, if there is one."""
        for r in self.requirements:
            if r.field == field_name and r.op == "=":
                return r.value
        return None

    def transform(self, fn: Callable[[str, str], tuple[str, str]]) -> "FieldSelector":
        """Upstream ``Transform``: map each ``(field, value)`` through ``fn``.

        A term that ``fn`` maps to an empty field and value is dropped; exceptions raised
        by ``fn`` propagate.
        """
        out = []
        for r in self.requirements:
            new_field, new_value = fn(r.field, r.value)
            if new_field or new_value:
                out.append(FieldRequirement(new_field, r.op, new_value))
        return FieldSelector(tuple(out))

    def __str__(self) -> str:
        return ",".join(f"{r.field}{'=' if r.op == '=' else '!='}{escape_field_value(r.value)}"
                        for r in self.requirements)


def escape_field_value(value: str) -> str:
    """Upstream ``fields.EscapeValue``: backslash-escape ``\\``, ``,`` and ``=``."""
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


def unescape_field_value(value: str) -> str:
    """Upstream ``fields.UnescapeValue``; raises `SelectorError` on a bad sequence or an
    unescaped ``,`` / ``=``."""
    if not any(c in value for c in "\\,="):
        return value
    out: list[str] = []
    in_slash = False
    for c in value:
        if in_slash:
            if c not in "\\,=":
                raise SelectorError(f"invalid field selector: invalid escape sequence: \\{c}")
            out.append(c)
            in_slash = False
        elif c == "\\":
            in_slash = True
        elif c in ",=":
            # upstream formats the rune with %v, i.e. as its number
            raise SelectorError(
                f"invalid field selector: unescaped character in value: {ord(c)}")
        else:
            out.append(c)
    if in_slash:
        raise SelectorError("invalid field selector: invalid escape sequence: \\")
    return "".join(out)


def _split_terms(selector: str) -> list[str]:
    """Split on commas not escaped by a backslash (escapes stay in the terms)."""
    if not selector:
        return []
    terms: list[str] = []
    start, in_slash = 0, False
    for i, c in enumerate(selector):
        if in_slash:
            in_slash = False
        elif c == "\\":
            in_slash = True
        elif c == ",":
            terms.append(selector[start:i])
            start = i + 1
    terms.append(selector[start:])
    return terms


def _split_term(term: str) -> tuple[str, str, str] | None:
    """Split at the first operator (``!=``, then ``==``, then ``=`` at each position)."""
    for i in range(len(term)):
        for op in ("!=", "==", "="):
            if term.startswith(op, i):
                return term[:i], op, term[i + len(op):]
    return None


def parse_field_selector(selector: str) -> FieldSelector:
    """Parse a field selector string (upstream ``fields.ParseSelector``).

    Comma-separated ``field=value``, ``field==value`` or ``field!=value`` terms; in values,
    ``\\,``, ``\\=`` and ``\\\\`` stand for ``,``, ``=`` and ``\\``. The field is taken up to
    the first operator and is not unescaped. ``""`` selects everything; a term with an
    empty field and value (``"="``) is dropped. Raises `SelectorError`.
    """
    requirements = []
    for part in sorted(_split_terms(selector)):
        if not part:
            continue
        split = _split_term(part)
        if split is None:
            raise SelectorError(f"invalid selector: '{selector}'; can't understand '{part}'")
        lhs, op, rhs = split
        requirements.append(FieldRequirement(lhs, "!=" if op == "!=" else "=",
                                             unescape_field_value(rhs)))
    return FieldSelector(tuple(requirements)).transform(lambda f, v: (f, v))


# -- per-kind field labels --------------------------------------------------------------

def _get(obj: Mapping[str, Any] | None, path: str) -> Any:
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(part)
    return cur


def _str(obj: Mapping[str, Any], path: str) -> str:
    """A string field, ``""`` when absent (Go's zero value)."""
    value = _get(obj, path)
    return "" if value is None else str(value)


def _bool(obj: Mapping[str, Any], path: str) -> str:
    """``strconv.FormatBool`` of a bool field (absent reads false)."""
    return "true" if _get(obj, path) is True else "false"


def _int(obj: Mapping[str, Any], path: str) -> str:
    """``strconv.Itoa`` of an integer field (absent reads 0)."""
    value = _get(obj, path)
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else "0"


def _pod_fields(pod: Mapping[str, Any]) -> dict[str, str]:
    pod_ips = _get(pod, "status.podIPs")
    if isinstance(pod_ips, list) and pod_ips and isinstance(pod_ips[0], Mapping):
        pod_ip = str(pod_ips[0].get("ip") or "")
    else:
        pod_ip = _str(pod, "status.podIP")
    return {
        "spec.nodeName": _str(pod, "spec.nodeName"),
        "spec.restartPolicy": _str(pod, "spec.restartPolicy"),
        "spec.schedulerName": _str(pod, "spec.schedulerName"),
        "spec.serviceAccountName": _str(pod, "spec.serviceAccountName"),
        "spec.hostNetwork": _bool(pod, "spec.hostNetwork"),
        "status.phase": _str(pod, "status.phase"),
        "status.podIP": pod_ip,
        "status.nominatedNodeName": _str(pod, "status.nominatedNodeName"),
    }


def _event_fields(event: Mapping[str, Any]) -> dict[str, str]:
    """Core ``Event`` fields, read from either the v1 or the events.k8s.io/v1 shape."""
    ref = "involvedObject" if isinstance(event.get("involvedObject"), Mapping) else "regarding"
    reporting = _str(event, "reportingComponent") or _str(event, "reportingController")
    source = _str(event, "source.component") or _str(event, "deprecatedSource.component")
    out = {f"involvedObject.{k}": _str(event, f"{ref}.{k}")
           for k in ("kind", "namespace", "name", "uid", "apiVersion",
                     "resourceVersion", "fieldPath")}
    out.update({"reason": _str(event, "reason"), "reportingComponent": reporting,
                "source": source or reporting, "type": _str(event, "type")})
    return out


def _not_supported(label: str) -> str:
    return f"field label not supported: {label}"


def _default_not_supported(label: str) -> str:
    return (f"{_go_quote(label)} is not a known field selector: only "
            f"\"metadata.name\", \"metadata.namespace\"")


@dataclass(frozen=True)
class _KindFields:
    """One kind's upstream contract: which labels its conversion func accepts (and what
    they become), its error text, and its ``GetAttrs`` fields beyond metadata."""

    namespaced: bool
    accepted: Mapping[str, str]
    extract: Callable[[Mapping[str, Any]], dict[str, str]] = lambda obj: {}
    rejection: Callable[[str], str] = _not_supported


def _same(*labels: str) -> dict[str, str]:
    return {label: label for label in labels}


_EVENT_LABELS = ("involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
                 "involvedObject.uid", "involvedObject.apiVersion",
                 "involvedObject.resourceVersion", "involvedObject.fieldPath",
                 "reason", "reportingComponent", "source", "type",
                 "metadata.namespace", "metadata.name")

_KINDS: dict[tuple[str, str], _KindFields] = {
    # pkg/apis/core/v1/conversion.go + pkg/registry/core/pod/strategy.go
    ("", "Pod"): _KindFields(True, {
        **_same("metadata.name", "metadata.namespace", "spec.nodeName", "spec.restartPolicy",
                "spec.schedulerName", "spec.serviceAccountName", "spec.hostNetwork",
                "status.phase", "status.podIP", "status.podIPs", "status.nominatedNodeName"),
        "spec.host": "spec.nodeName",  # old v1 clients
    }, _pod_fields),
    ("", "Node"): _KindFields(False, _same("metadata.name", "spec.unschedulable"),
                              lambda o: {"spec.unschedulable": _bool(o, "spec.unschedulable")}),
    ("", "ReplicationController"): _KindFields(
        True, _same("metadata.name", "metadata.namespace", "status.replicas"),
        lambda o: {"status.replicas": _int(o, "status.replicas")}),
    ("", "Event"): _KindFields(True, _same(*_EVENT_LABELS), _event_fields),
    ("", "Namespace"): _KindFields(
        False, _same("status.phase", "metadata.name"),
        # GetAttrs also sets a bare "name" (kept upstream for compatibility)
        lambda o: {"status.phase": _str(o, "status.phase"), "name": _str(o, "metadata.name")}),
    ("", "Secret"): _KindFields(True, _same("type", "metadata.namespace", "metadata.name"),
                                lambda o: {"type": _str(o, "type")}),
    ("", "Service"): _KindFields(
        True, _same("metadata.namespace", "metadata.name", "spec.clusterIP", "spec.type"),
        lambda o: {"spec.clusterIP": _str(o, "spec.clusterIP"), "spec.type": _str(o, "spec.type")}),
    # pkg/apis/events/v1/conversion.go: regarding.* etc. map onto the core names
    ("events.k8s.io", "Event"): _KindFields(True, {
        **{f"regarding.{k}": f"involvedObject.{k}"
           for k in ("kind", "namespace", "name", "uid", "apiVersion",
                     "resourceVersion", "fieldPath")},
        "reportingController": "reportingComponent",
        **_same("reason", "source", "type", "metadata.namespace", "metadata.name"),
    }, _event_fields),
    # pkg/apis/batch/v1/conversion.go + pkg/registry/batch/job/strategy.go
    ("batch", "Job"): _KindFields(
        True, _same("metadata.name", "metadata.namespace", "status.successful"),
        lambda o: {"status.successful": _int(o, "status.succeeded")},
        lambda label: f"field label {_go_quote(label)} not supported for Job"),
    # pkg/apis/certificates/v1/conversion.go
    ("certificates.k8s.io", "CertificateSigningRequest"): _KindFields(
        False, _same("metadata.name", "spec.signerName"),
        lambda o: {"spec.signerName": _str(o, "spec.signerName")}),
    # apps/v1 registers no conversion func, so its field labels are metadata-only even
    # though the registry's GetAttrs exposes status.replicas (kubernetes/kubernetes#135136).
    ("apps", "ReplicaSet"): _KindFields(
        True, _same("metadata.name", "metadata.namespace"),
        lambda o: {"status.replicas": _int(o, "status.replicas")}, _default_not_supported),
}

_DEFAULT_KIND = _KindFields(True, _same("metadata.name", "metadata.namespace"),
                            rejection=_default_not_supported)


def object_fields(group: str, kind: str, obj: Mapping[str, Any]) -> dict[str, str]:
    """The field set a selector is matched against, as upstream's ``GetAttrs`` builds it.

    Always ``metadata.name`` (and ``metadata.namespace`` for namespaced kinds), plus the
    kind's own fields: booleans render as ``"true"``/``"false"``, counts as decimal
    strings, absent values as Go zero values (``""``, ``"false"``, ``"0"``). Keys use the
    internal names, so match selectors that went through `convert_field_selector`
    (events.k8s.io's ``regarding.name`` is matched as ``involvedObject.name``).
    Objects of kinds not known here expose metadata only.
    """
    spec = _KINDS.get((group, kind))
    meta = obj.get("metadata") or {}
    out = {"metadata.name": str(meta.get("name") or "")}
    if (spec.namespaced if spec is not None else "namespace" in meta):
        out["metadata.namespace"] = str(meta.get("namespace") or "")
    if spec is not None:
        out.update(spec.extract(obj))
    return out


def convert_field_selector(group: str, kind: str,
                           selector: str | FieldSelector) -> FieldSelector:
    """Parse (if given a string) and convert a selector for ``group``/``kind`` as the API
    server does before listing: unsupported field labels raise `SelectorError` with the
    kind's upstream message (``field label not supported: <field>`` for most kinds), and
    aliases are rewritten to the names `object_fields` produces (``spec.host`` ->
    ``spec.nodeName``; events.k8s.io ``regarding.*`` -> ``involvedObject.*``).
    """
    parsed = parse_field_selector(selector) if isinstance(selector, str) else selector
    spec = _KINDS.get((group, kind), _DEFAULT_KIND)

    def convert(label: str, value: str) -> tuple[str, str]:
        if label not in spec.accepted:
            raise SelectorError(spec.rejection(label))
        return spec.accepted[label], value

    return parsed.transform(convert)


def validate_field_selector(group: str, kind: str, selector: str | FieldSelector) -> None:
    """Raise `SelectorError` (400) if ``selector`` is malformed or names a field that
    ``group``/``kind`` does not support, e.g. ``field label not supported: spec.foo``."""
    convert_field_selector(group, kind, selector)
