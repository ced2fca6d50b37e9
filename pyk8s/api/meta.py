"""Small helpers over object metadata and wire conventions (pure, no I/O)."""
from __future__ import annotations

import os
import random
import string
import time
import uuid
from datetime import datetime, timezone
from typing import Any

Obj = dict[str, Any]

_GEN_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # upstream's utilrand alphabet (no vowels)


def now() -> datetime:
    return datetime.now(timezone.utc)


_last_second: tuple[int, str] = (-1, "")


def rfc3339(t: datetime | None = None) -> str:
    """`2024-01-02T03:04:05Z`, second precision like metav1.Time."""
    global _last_second
    if t is None:  # the hot path: "now", formatted once per second
        sec = int(time.time())
        if sec != _last_second[0]:
            _last_second = (sec, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(sec)))
        return _last_second[1]
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(s: str | None) -> datetime | None:
    if not s:
        return None
    try:
        return datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        return None


_uid_pool: list[bytes] = []


def new_uid() -> str:
    """A random (version 4) UUID; the randomness is read from the OS 256 UIDs at a time."""
    if not _uid_pool:
        raw = os.urandom(16 * 256)
        _uid_pool.extend(raw[i:i + 16] for i in range(0, len(raw), 16))
    return str(uuid.UUID(bytes=_uid_pool.pop(), version=4))


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
