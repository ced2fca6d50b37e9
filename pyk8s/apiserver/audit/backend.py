"""The audit log backend: one JSON line per event to `--audit-log-path` ("-": standard
output), rotated as upstream's log backend rotates it (gopkg.in/natefinch/lumberjack.v2).

Rotation: the file is opened (or created) on the first event; an event that would make it
exceed `--audit-log-maxsize` megabytes (0: lumberjack's default of 100) first moves it to
`<name>-<UTC time as 2006-01-02T15-04-05.000><ext>` beside it (`audit-2026-12-07T12-00-00.000.log`
for `audit.log`) and starts a new one with the old one's mode. After a rotation, and when the
file is first opened, backups beyond the `--audit-log-maxbackup` newest and those older than
`--audit-log-maxage` days (by the time in their names) are removed; 0 keeps them all.

Writes: each event is one `write(2)` of its line from the event loop, as upstream's default
"blocking" mode writes in the request's goroutine. Measured on this machine's ext4: 0.7 µs
per 650-byte event (0.35 µs when 32 events share one write), against ~3 µs to encode the
event and hundreds to serve the request; a buffer flushed by a task would save little and
lose the last events on a crash, so there is none: nothing waits for a flush on stop, and
`close()` only closes the file.
"""
from __future__ import annotations

import errno
import logging
import os
import re
import stat
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

log = logging.getLogger("pyk8s.apiserver.audit")

MEGABYTE = 1024 * 1024
DEFAULT_MAX_SIZE_MB = 100  # lumberjack's default when MaxSize is 0
STDOUT = "-"

_BACKUP_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}\.\d{3}$")
_COMPRESS_SUFFIX = ".gz"


def ensure_log_file(path: str) -> None:
    """Create the log file (and its directory) at start, as kube-apiserver does, so an
    unwritable path stops the server before it serves."""
    if path == STDOUT:
        return
    p = Path(path)
    p.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(p, os.O_CREAT | os.O_APPEND | os.O_RDWR, 0o600)
    os.close(fd)


def backup_name(path: str, now: float) -> str:
    """`dir/audit.log` → `dir/audit-2026-12-07T12-00-00.000.log` (UTC)."""
    directory, filename = os.path.split(path)
    prefix, ext = _prefix_and_ext(filename)
    t = datetime.fromtimestamp(now, timezone.utc)
    stamp = t.strftime("%Y-%m-%dT%H-%M-%S.") + f"{t.microsecond // 1000:03d}"
    return os.path.join(directory, f"{prefix}{stamp}{ext}")


def _prefix_and_ext(filename: str) -> tuple[str, str]:
    """Go's filepath.Ext: from the last dot of the base name (none: "")."""
    dot = filename.rfind(".")
    ext = filename[dot:] if dot >= 0 else ""
    return filename[:len(filename) - len(ext)] + "-", ext


def _time_from_name(filename: str, prefix: str, ext: str) -> float | None:
    if not filename.startswith(prefix) or not filename.endswith(ext) or \
            len(filename) < len(prefix) + len(ext):
        return None
    stamp = filename[len(prefix):len(filename) - len(ext)]
    if not _BACKUP_TIME.match(stamp):
        return None
    try:
        t = datetime.strptime(stamp, "%Y-%m-%dT%H-%M-%S.%f")
    except ValueError:
        return None
    return t.replace(tzinfo=timezone.utc).timestamp()


class LogBackend:
    """Appends event lines to a file, rotating it; or to standard output."""

    def __init__(self, path: str, max_size_mb: int = 0, max_backups: int = 0,
                 max_age_days: int = 0, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.max_bytes = (max_size_mb or DEFAULT_MAX_SIZE_MB) * MEGABYTE
        self.max_backups = max_backups
        self.max_age_days = max_age_days
        self.clock = clock
        self._fd: int | None = None
        self._size = 0

    def process(self, line: bytes) -> None:
        """Write one event line; a failure is logged and the event dropped (upstream's
        HandlePluginError), never raised into the request."""
        try:
            self._write(line)
        except OSError as e:
            log.error("Error in audit plugin 'log' affecting 1 audit events: %s", e)

    def _write(self, line: bytes) -> None:
        if self.path == STDOUT:
            _write_all(1, line)
            return
        n = len(line)
        if n > self.max_bytes:
            raise OSError(errno.EFBIG,
                          f"write length {n} exceeds maximum file size {self.max_bytes}")
        if self._fd is None:
            self._open_existing_or_new(n)
        if self._size + n > self.max_bytes:
            self._rotate()
        assert self._fd is not None
        _write_all(self._fd, line)
        self._size += n

    def close(self) -> None:
        if self._fd is not None:
            try:
                os.close(self._fd)
            finally:
                self._fd = None

    # -- lumberjack ----------------------------------------------------------------------
    def _open_existing_or_new(self, write_len: int) -> None:
        self._mill()
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._open_new()
            return
        if st.st_size + write_len >= self.max_bytes:
            self._rotate()
            return
        try:
            self._fd = os.open(self.path, os.O_APPEND | os.O_WRONLY)
        except OSError:  # as lumberjack: start a new file instead
            self._open_new()
            return
        self._size = st.st_size

    def _rotate(self) -> None:
        self.close()
        self._open_new()
        self._mill()

    def _open_new(self) -> None:
        directory = os.path.dirname(self.path) or "."
        os.makedirs(directory, mode=0o744, exist_ok=True)
        mode = 0o644
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            pass
        else:
            mode = stat.S_IMODE(st.st_mode)
            os.replace(self.path, backup_name(self.path, self.clock()))
        self._fd = os.open(self.path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC | os.O_APPEND,
                           mode)
        self._size = 0

    def backups(self) -> list[tuple[float, str]]:
        """(rotation time, file name) of the backups beside the log, newest first."""
        directory, filename = os.path.split(self.path)
        prefix, ext = _prefix_and_ext(filename)
        out = []
        try:
            entries = list(os.scandir(directory or "."))
        except OSError as e:
            log.error("can't read log file directory: %s", e)
            return []
        for entry in entries:
            if not entry.is_file(follow_symlinks=False):
                continue
            t = _time_from_name(entry.name, prefix, ext)
            if t is None:
                t = _time_from_name(entry.name, prefix, ext + _COMPRESS_SUFFIX)
            if t is not None:
                out.append((t, entry.name))
        out.sort(key=lambda b: b[0], reverse=True)
        return out

    def _mill(self) -> None:
        """Remove the backups beyond max_backups and those older than max_age_days."""
        if self.max_backups == 0 and self.max_age_days == 0:
            return
        files = self.backups()
        remove: list[str] = []
        if 0 < self.max_backups < len(files):
            kept: set[str] = set()
            remaining = []
            for t, name in files:
                kept.add(name[:-len(_COMPRESS_SUFFIX)] if name.endswith(_COMPRESS_SUFFIX)
                         else name)
                if len(kept) > self.max_backups:
                    remove.append(name)
                else:
                    remaining.append((t, name))
            files = remaining
        if self.max_age_days > 0:
            cutoff = self.clock() - self.max_age_days * 86400
            remove.extend(name for t, name in files if t < cutoff)
        directory = os.path.dirname(self.path) or "."
        for name in remove:
            try:
                os.remove(os.path.join(directory, name))
            except OSError as e:
                log.error("removing old audit log %s: %s", name, e)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
