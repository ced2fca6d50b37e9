"""A small CEL subset for CRDs' `x-kubernetes-validations` rules.

Covers what rules usually say: literals, `self` / `oldSelf`, field access and indexing,
`has()`, `size()`, arithmetic, comparisons, `&&` `||` `!`, `? :`, `in`, and the methods
`size startsWith endsWith contains matches all exists exists_one map filter`. Anything
else raises `CELError` (the rule is then reported as failing to compile).
"""
from __future__ import annotations

import re
from typing import Any

_TOKEN = re.compile(r"""
    \s*(?:
      (?P<num>\d+\.\d+|\d+)
    | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
    | (?P<op>&&|\|\||==|!=|<=|>=|[-+*/%<>!?:.,()\[\]{}])
    | (?P<id>[A-Za-z_][A-Za-z0-9_]*)
    )""", re.X)


class CELError(Exception):
    pass


class _Missing(Exception):
    """A field that is not set was selected (CEL: `no such key`)."""


def _tokens(src: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    pos = 0
    src = src.strip()
    while pos < len(src):
        m = _TOKEN.match(src, pos)
        if not m or m.end() == pos:
            raise CELError(f"syntax error at {pos}")
        pos = m.end()
        if m.group("num") is not None:
            t = m.group("num")
            out.append(("lit", float(t) if "." in t else int(t)))
        elif m.group("str") is not None:
            out.append(("lit", bytes(m.group("str")[1:-1], "utf-8").decode("unicode_escape")))
        elif m.group("op") is not None:
            out.append(("op", m.group("op")))
        else:
            word = m.group("id")
            if word in ("true", "false", "null"):
                out.append(("lit", {"true": True, "false": False, "null": None}[word]))
            elif word == "in":
                out.append(("op", "in"))
            else:
                out.append(("id", word))
    out.append(("end", None))
    return out


_BINARY = {"||": 1, "&&": 2, "==": 3, "!=": 3, "<": 3, "<=": 3, ">": 3, ">=": 3, "in": 3,
           "+": 4, "-": 4, "*": 5, "/": 5, "%": 5}


class _Parser:
    def __init__(self, src: str) -> None:
        self.toks = _tokens(src)
        self.i = 0

    def peek(self) -> tuple[str, Any]:
        return self.toks[self.i]

    def take(self, value: Any = None) -> tuple[str, Any]:
        t = self.toks[self.i]
        if value is not None and t[1] != value:
            raise CELError(f"expected {value!r}, got {t[1]!r}")
        self.i += 1
        return t

    def parse(self) -> Any:
        e = self.ternary()
        if self.peek()[0] != "end":
            raise CELError(f"unexpected {self.peek()[1]!r}")
        return e

    def ternary(self) -> Any:
        cond = self.binary(1)
        if self.peek() == ("op", "?"):
            self.take()
            a = self.ternary()
            self.take(":")
            b = self.ternary()
            return ("?", cond, a, b)
        return cond

    def binary(self, prec: int) -> Any:
        left = self.unary()
        while True:
            kind, op = self.peek()
            p = _BINARY.get(op) if kind == "op" else None
            if p is None or p < prec:
                return left
            self.take()
            right = self.binary(p + 1)
            left = ("bin", op, left, right)

    def unary(self) -> Any:
        if self.peek() == ("op", "!"):
            self.take()
            return ("not", self.unary())
        if self.peek() == ("op", "-"):
            self.take()
            return ("neg", self.unary())
        return self.postfix(self.primary())

    def primary(self) -> Any:
        kind, v = self.take()
        if kind == "lit":
            return ("lit", v)
        if kind == "id":
            if self.peek() == ("op", "("):
                return ("call", v, None, self.args())
            return ("var", v)
        if v == "(":
            e = self.ternary()
            self.take(")")
            return e
        if v == "[":
            items = []
            while self.peek() != ("op", "]"):
                items.append(self.ternary())
                if self.peek() == ("op", ","):
                    self.take()
            self.take("]")
            return ("list", items)
        raise CELError(f"unexpected {v!r}")

    def args(self) -> list[Any]:
        self.take("(")
        out = []
        while self.peek() != ("op", ")"):
            out.append(self.ternary())
            if self.peek() == ("op", ","):
                self.take()
        self.take(")")
        return out

    def postfix(self, e: Any) -> Any:
        while True:
            if self.peek() == ("op", "."):
                self.take()
                _, name = self.take()
                if self.peek() == ("op", "("):
                    e = ("call", name, e, self.args())
                else:
                    e = ("field", e, name)
            elif self.peek() == ("op", "["):
                self.take()
                idx = self.ternary()
                self.take("]")
                e = ("index", e, idx)
            else:
                return e


def compile_rule(src: str) -> Any:
    return _Parser(src).parse()


def evaluate(ast: Any, env: dict[str, Any]) -> Any:
    try:
        return _eval(ast, env)
    except _Missing as e:
        raise CELError(f"no such key: {e}") from None


def _eval(e: Any, env: dict[str, Any]) -> Any:
    tag = e[0]
    if tag == "lit":
        return e[1]
    if tag == "var":
        if e[1] not in env:
            raise CELError(f"undeclared reference to '{e[1]}'")
        return env[e[1]]
    if tag == "list":
        return [_eval(x, env) for x in e[1]]
    if tag == "not":
        return not _truth(_eval(e[1], env))
    if tag == "neg":
        return -_eval(e[1], env)
    if tag == "?":
        return _eval(e[2], env) if _truth(_eval(e[1], env)) else _eval(e[3], env)
    if tag == "field":
        obj = _eval(e[1], env)
        if not isinstance(obj, dict) or e[2] not in obj:
            raise _Missing(e[2])
        return obj[e[2]]
    if tag == "index":
        obj, idx = _eval(e[1], env), _eval(e[2], env)
        try:
            return obj[idx]
        except (KeyError, IndexError, TypeError):
            raise _Missing(str(idx)) from None
    if tag == "bin":
        op = e[1]
        if op == "&&":
            return _truth(_eval(e[2], env)) and _truth(_eval(e[3], env))
        if op == "||":
            return _truth(_eval(e[2], env)) or _truth(_eval(e[3], env))
        a, b = _eval(e[2], env), _eval(e[3], env)
        if op == "in":
            return a in b
        if op == "/" and isinstance(a, int) and isinstance(b, int):
            return int(a / b)
        if op == "%" and isinstance(a, int) and isinstance(b, int):
            return a - b * int(a / b)
        try:
            return {"==": lambda: a == b, "!=": lambda: a != b, "<": lambda: a < b,
                    "<=": lambda: a <= b, ">": lambda: a > b, ">=": lambda: a >= b,
                    "+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b,
                    "/": lambda: a / b}[op]()
        except TypeError:
            raise CELError(f"no such overload: {op}") from None
    if tag == "call":
        return _call(e[1], e[2], e[3], env)
    raise CELError(f"unsupported expression {tag}")


def _truth(v: Any) -> bool:
    if not isinstance(v, bool):
        raise CELError("no such overload: expected bool")
    return v


def _call(name: str, target: Any, args: list[Any], env: dict[str, Any]) -> Any:
    if target is None:
        if name == "has" and len(args) == 1 and args[0][0] == "field":
            obj = _eval(args[0][1], env)
            return isinstance(obj, dict) and args[0][2] in obj
        vals = [_eval(a, env) for a in args]
        if name == "size" and len(vals) == 1:
            return len(vals[0])
        if name in ("int", "string", "double") and len(vals) == 1:
            return {"int": int, "string": str, "double": float}[name](vals[0])
        raise CELError(f"undeclared reference to '{name}'")
    obj = _eval(target, env)
    if name in ("all", "exists", "exists_one", "map", "filter") and len(args) == 2 and \
            args[0][0] == "var":
        var = args[0][1]
        items = list(obj) if isinstance(obj, (list, dict)) else []
        results = [_eval(args[1], {**env, var: it}) for it in items]
        if name == "all":
            return all(_truth(r) for r in results)
        if name == "exists":
            return any(_truth(r) for r in results)
        if name == "exists_one":
            return sum(_truth(r) for r in results) == 1
        if name == "map":
            return results
        return [it for it, r in zip(items, results) if _truth(r)]
    vals = [_eval(a, env) for a in args]
    if name == "size" and not vals:
        return len(obj)
    if isinstance(obj, str) and len(vals) == 1:
        if name == "startsWith":
            return obj.startswith(vals[0])
        if name == "endsWith":
            return obj.endswith(vals[0])
        if name == "contains":
            return vals[0] in obj
        if name == "matches":
            return re.search(vals[0], obj) is not None
    raise CELError(f"found no matching overload for '{name}'")


def uses_old_self(ast: Any) -> bool:
    if isinstance(ast, tuple):
        if ast == ("var", "oldSelf"):
            return True
        return any(uses_old_self(x) for x in ast)
    if isinstance(ast, list):
        return any(uses_old_self(x) for x in ast)
    return False
