"""Small helpers over object metadata and wire conventions (pure, no I/O)."""
from __future__ import annotations

import random
import string
import uuid
from datetime import datetime, timezone
from typing import Any

Obj = dict[str, Any]

_GEN_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # upstream's utilrand alphabet (no vowels)


def now() -> datetime:
    return datetime.now(timezone.utc)


def rfc3339(t: datetime | None = None) -> str:
    """`2024-01-02T03:04:05Z`, second precision like metav1.Time."""
    t = t or now()
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(s: str | None) -> datetime | None:
    if not s:
        return None
    try:
        return datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        return None


def new_uid() -> str:
    return str(uuid.uuid4())


def generate_name(prefix: str) -> str:
    """generateName: prefix (trimmed so the result fits 63) + 5 random characters."""
    max_prefix = 63 - 5
    if len(prefix) > max_prefix:
        prefix = prefix[:max_prefix]
    return prefix + "".join(random.choice(_GEN_ALPHABET) for _ in range(5))


def parse_bool(value: str | None, default: bool = False) -> bool:
    """Go's strconv.ParseBool: 1 t T TRUE true True / 0 f F FALSE false False."""
    if value is None or value == "":
        return default
    if value in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if value in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise ValueError(f'strconv.ParseBool: parsing "{value}": invalid syntax')


def metadata(obj: Obj) -> Obj:
    md = obj.get("metadata")
    if not isinstance(md, dict):
        md = {}
        obj["metadata"] = md
    return md


def name_of(obj: Obj) -> str:
    md = obj.get("metadata") or {}
    return md.get("name") or ""


def random_suffix(n: int = 5) -> str:
    return "".join(random.choice(string.ascii_lowercase + string.digits) for _ in range(n))
