"""The audit log backend: lines, lumberjack's rotation, backup names and clean-up."""
from __future__ import annotations

import logging
import os
import stat
from datetime import datetime, timezone
from pathlib import Path

import pytest

from pyk8s.apiserver.audit.backend import LogBackend, backup_name, ensure_log_file


class Clock:
    def __init__(self, start: str = "2026-12-07T12:00:00") -> None:
        self.now = datetime.fromisoformat(start).replace(tzinfo=timezone.utc).timestamp()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def line(i: int, size: int = 100) -> bytes:
    head = f'{{"n":{i},"pad":"'.encode()
    return head + b"x" * (size - len(head) - 3) + b'"}\n'


def backups(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if p.name != "audit.log")


def test_backup_name_is_lumberjacks() -> None:
    ts = datetime(2026, 12, 7, 12, 0, 0, 123456, tzinfo=timezone.utc).timestamp()
    assert backup_name("/var/log/audit.log", ts) == "/var/log/audit-2026-12-07T12-00-00.123.log"
    assert backup_name("/var/log/audit", ts) == "/var/log/audit-2026-12-07T12-00-00.123"
    assert backup_name("/l/a.b.json", ts) == "/l/a.b-2026-12-07T12-00-00.123.json"


def test_lines_are_appended_to_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    path.write_bytes(b"earlier\n")
    b = LogBackend(str(path))
    b.process(b'{"a":1}\n')
    b.process(b'{"a":2}\n')
    b.close()
    assert path.read_bytes() == b'earlier\n{"a":1}\n{"a":2}\n'


def test_rotation_by_size_keeps_max_backups(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    ensure_log_file(str(path))
    clock = Clock()
    b = LogBackend(str(path), max_size_mb=1, max_backups=2, clock=clock)
    b.max_bytes = 1000  # ten 100-byte lines a file
    for i in range(10):
        b.process(line(i))
    assert backups(tmp_path) == [] and path.stat().st_size == 1000
    clock.advance(1.5)
    b.process(line(10))  # would exceed 1000 bytes: rotate first
    assert backups(tmp_path) == ["audit-2026-12-07T12-00-01.500.log"]
    assert path.read_bytes() == line(10)
    assert (tmp_path / "audit-2026-12-07T12-00-01.500.log").read_bytes() == \
        b"".join(line(i) for i in range(10))
    for i in range(11, 41):  # three more rotations
        clock.advance(1)
        b.process(line(i))
    b.close()
    names = backups(tmp_path)
    assert len(names) == 2, names  # the two newest
    assert names == ["audit-2026-12-07T12-00-21.500.log", "audit-2026-12-07T12-00-31.500.log"]
    # Nothing lost among what is kept, in order.
    kept = b"".join((tmp_path / n).read_bytes() for n in names) + path.read_bytes()
    assert kept == b"".join(line(i) for i in range(20, 41))
    # The mode of the file is kept across rotations (created 0600 at start).
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_max_age_removes_old_backups_and_ignores_other_files(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    for name in ("audit-2026-11-01T00-00-00.000.log", "audit-2026-12-01T00-00-00.000.log",
                 "audit-2026-11-02T00-00-00.000.log.gz", "audit-notatime.log", "other.log"):
        (tmp_path / name).write_text("old\n")
    clock = Clock("2026-12-07T12:00:00")
    b = LogBackend(str(path), max_age_days=10, clock=clock)
    b.process(line(0))  # the first open cleans up too
    b.close()
    assert backups(tmp_path) == ["audit-2026-12-01T00-00-00.000.log", "audit-notatime.log",
                                 "other.log"]


def test_max_backups_counts_compressed_ones(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    for name in ("audit-2026-12-01T00-00-00.000.log.gz", "audit-2026-12-02T00-00-00.000.log",
                 "audit-2026-12-03T00-00-00.000.log"):
        (tmp_path / name).write_text("old\n")
    b = LogBackend(str(path), max_backups=1, clock=Clock())
    b.process(line(0))
    b.close()
    assert backups(tmp_path) == ["audit-2026-12-03T00-00-00.000.log"]


def test_a_full_file_rotates_when_first_opened(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    path.write_bytes(b"y" * 950)
    b = LogBackend(str(path), clock=Clock())
    b.max_bytes = 1000
    b.process(line(0))  # 950 + 100 >= 1000
    b.close()
    assert backups(tmp_path) == ["audit-2026-12-07T12-00-00.000.log"]
    assert path.read_bytes() == line(0)


def test_no_limits_keep_every_backup_and_default_size_is_100mb(tmp_path: Path) -> None:
    b = LogBackend(str(tmp_path / "audit.log"))
    assert b.max_bytes == 100 * 1024 * 1024
    clock = Clock()
    b = LogBackend(str(tmp_path / "audit.log"), clock=clock)
    b.max_bytes = 200
    for i in range(8):
        clock.advance(1)
        b.process(line(i))
    b.close()
    assert len(backups(tmp_path)) == 3


def test_an_event_larger_than_the_file_is_dropped(tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "audit.log"
    b = LogBackend(str(path))
    b.max_bytes = 150
    with caplog.at_level(logging.ERROR, logger="pyk8s.apiserver.audit"):
        b.process(line(0, size=200))
    b.process(line(1))
    b.close()
    assert path.read_bytes() == line(1)
    assert "write length 200 exceeds maximum file size 150" in caplog.text


def test_stdout(capfd: pytest.CaptureFixture[str]) -> None:
    b = LogBackend("-")
    b.process(b'{"kind":"Event"}\n')
    b.close()
    assert capfd.readouterr().out == '{"kind":"Event"}\n'


def test_ensure_log_file(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "dir" / "audit.log"
    ensure_log_file(str(path))
    assert path.exists() and stat.S_IMODE(path.stat().st_mode) == 0o600
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.geteuid() != 0:  # root writes anywhere
            with pytest.raises(PermissionError):
                ensure_log_file(str(ro / "audit.log"))
    finally:
        ro.chmod(0o700)
