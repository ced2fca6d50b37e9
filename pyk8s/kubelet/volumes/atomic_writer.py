"""Upstream's AtomicWriter (pkg/volume/util/atomic_writer.go): a volume's files are written
into a fresh timestamped directory `..<timestamp>`, the `..data` symlink is swapped to it by
an atomic rename, and each user-visible top-level path is a symlink through `..data`:

    <dir>/key -> ..data/key
    <dir>/..data -> ..2026_11_23_11_16_04.123456789
    <dir>/..2026_11_23_11_16_04.123456789/key

so that a reader sees either the old payload or the new one, never a mix."""
from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

DATA_DIR = "..data"
DATA_TMP = "..data_tmp"


@dataclass(frozen=True)
class FileProjection:
    data: bytes
    mode: int = 0o644


def _validate(path: str) -> None:
    parts = path.split("/")
    if not path or path.startswith("/") or ".." in parts or parts[0].startswith(".."):
        raise ValueError(f"invalid path {path!r}")


def _timestamp() -> str:
    t = time.time()
    return "..%s.%09d" % (time.strftime("%Y_%m_%d_%H_%M_%S", time.gmtime(t)),
                          int((t % 1) * 1e9))


def _current(target: Path) -> Path | None:
    link = target / DATA_DIR
    if not link.is_symlink():
        return None
    return target / os.readlink(link)


def _unchanged(old: Path, payload: dict[str, FileProjection]) -> bool:
    existing: set[str] = set()
    for root, _dirs, files in os.walk(old):
        for f in files:
            existing.add(os.path.relpath(os.path.join(root, f), old))
    if existing != set(payload):
        return False
    for rel, fp in payload.items():
        p = old / rel
        try:
            if p.read_bytes() != fp.data or (p.stat().st_mode & 0o7777) != fp.mode:
                return False
        except OSError:
            return False
    return True


def write_payload(target: str | os.PathLike[str], payload: dict[str, FileProjection]) -> bool:
    """Make `target` hold exactly `payload` (relative path -> content and mode); returns
    whether anything was written."""
    target = Path(target)
    for rel in payload:
        _validate(rel)
    target.mkdir(parents=True, exist_ok=True)
    old = _current(target)
    if old is not None and old.is_dir() and _unchanged(old, payload):
        return False
    new = target / _timestamp()
    new.mkdir(mode=0o755)
    for rel, fp in payload.items():
        p = new / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(fp.data)
        os.chmod(p, fp.mode)
    tmp = target / DATA_TMP
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(new.name, tmp)
    os.rename(tmp, target / DATA_DIR)            # the atomic swap
    visible = {rel.split("/", 1)[0] for rel in payload}
    for top in visible:
        link = target / top
        if not link.is_symlink():
            if link.exists():
                shutil.rmtree(link) if link.is_dir() else link.unlink()
            os.symlink(f"{DATA_DIR}/{top}", link)
    for entry in target.iterdir():                 # what the old payload had and this not
        if entry.name.startswith(".."):
            continue
        if entry.name not in visible and entry.is_symlink():
            entry.unlink()
    if old is not None and old.is_dir() and old != new:
        shutil.rmtree(old, ignore_errors=True)
    return True
