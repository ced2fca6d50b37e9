"""The CRI log format: the line writer (splitter, records) and the reader (renderer)."""
from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from pyk8s.kubelet import crilog
from pyk8s.kubelet.crilog import (MAX_LINE, LineSplitter, LogRenderer, format_record,
                                  format_timestamp, parse_record, parse_timestamp)

TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$")


def test_timestamps() -> None:
    ns = 1_700_000_000_123_456_789
    s = format_timestamp(ns)
    assert s == "2023-11-14T22:13:20.123456789Z" and TS.match(s)
    assert parse_timestamp(s) == ns
    assert format_timestamp(1_700_000_000_000_000_000) == "2023-11-14T22:13:20.000000000Z"
    # Lenient input: trimmed fractions, no fraction, offsets.
    assert parse_timestamp("2023-11-14T22:13:20.1234Z") == 1_700_000_000_123_400_000
    assert parse_timestamp("2023-11-14T22:13:20Z") == 1_700_000_000_000_000_000
    assert parse_timestamp("2023-11-15T00:13:20+02:00") == 1_700_000_000_000_000_000
    assert parse_timestamp("2023-11-14T20:13:20.5-02:00") == 1_700_000_000_500_000_000
    with pytest.raises(ValueError):
        parse_timestamp("yesterday")


def test_record_roundtrip() -> None:
    line = format_record("stderr", False, b"oops: a b  c", ts=1_700_000_000_000_000_001)
    assert line == b"2023-11-14T22:13:20.000000001Z stderr F oops: a b  c\n"
    rec = parse_record(line)
    assert rec is not None
    assert (rec.ts, rec.stream, rec.partial, rec.content) == (
        1_700_000_000_000_000_001, "stderr", False, b"oops: a b  c")
    rec = parse_record(b"2023-11-14T22:13:20Z stdout P ")
    assert rec is not None and rec.partial and rec.content == b""
    assert parse_record(b"2023-11-14T22:13:20Z stdout F") is not None   # empty line
    assert parse_record(b"2023-11-14T22:13:20Z stdout P:x more") is not None   # tags
    for bad in (b"hello world", b"2023-11-14T22:13:20Z other F x", b"",
                b"notatime stdout F x"):
        assert parse_record(bad) is None


def test_splitter_lines_and_partials() -> None:
    sp = LineSplitter()
    assert sp.feed(b"one\ntw") == [(False, b"one")]
    assert sp.feed(b"o\r\nthree\n\n") == [(False, b"two"), (False, b"three"), (False, b"")]
    assert sp.feed(b"no newline") == []
    assert sp.close() == [(True, b"no newline")]
    assert sp.close() == []


def test_splitter_long_lines() -> None:
    sp = LineSplitter()
    exact = b"x" * MAX_LINE
    assert sp.feed(exact + b"\n") == [(False, exact)]   # exactly the limit: one record
    long = b"a" * MAX_LINE + b"b" * MAX_LINE + b"c" * 10
    recs = sp.feed(long[:5000]) + sp.feed(long[5000:]) + sp.feed(b"\n")
    assert recs == [(True, b"a" * MAX_LINE), (True, b"b" * MAX_LINE), (False, b"c" * 10)]
    # Small limits: the same rules.
    sp = LineSplitter(max_line=4)
    assert sp.feed(b"abcdefghij\nxy") == [(True, b"abcd"), (True, b"efgh"), (False, b"ij")]
    assert sp.close() == [(True, b"xy")]


def _log(*recs: tuple[int, str, bool, bytes]) -> bytes:
    return b"".join(format_record(s, p, c, ts=t) for t, s, p, c in recs)


def test_renderer_reassembles_and_timestamps() -> None:
    t0 = 1_700_000_000_000_000_000
    data = _log((t0, "stdout", True, b"hel"), (t0 + 1, "stderr", False, b"err"),
                (t0 + 2, "stdout", False, b"lo"), (t0 + 3, "stdout", True, b"end"))
    assert LogRenderer().feed(data) == b"helerr\nlo\nend"
    assert LogRenderer(streams=("stdout",)).feed(data) == b"hello\nend"
    out = LogRenderer(timestamps=True).feed(data).decode()
    assert out == (f"{format_timestamp(t0)} hel{format_timestamp(t0 + 1)} err\nlo\n"
                   f"{format_timestamp(t0 + 3)} end")
    only_out = LogRenderer(timestamps=True, streams=("stdout",)).feed(data).decode()
    assert only_out == f"{format_timestamp(t0)} hello\n{format_timestamp(t0 + 3)} end"
    # Fed in arbitrary chunks (a record cut in two): the same output.
    r = LogRenderer()
    assert b"".join(r.feed(data[i:i + 7]) for i in range(0, len(data), 7)) == b"helerr\nlo\nend"
    # Lines that are not records are left out.
    assert LogRenderer().feed(b"garbage\n" + data[:0] + _log((t0, "stdout", False, b"ok"))) \
        == b"ok\n"


def test_renderer_since() -> None:
    t0 = 1_700_000_000_000_000_000
    s = 1_000_000_000
    data = _log((t0, "stdout", False, b"old"), (t0 + s, "stderr", False, b"older err"),
                (t0 + 2 * s, "stdout", False, b"new"), (t0 + 3 * s, "stderr", False, b"e"))
    assert LogRenderer(since=t0 + 2 * s).feed(data) == b"new\ne\n"
    assert LogRenderer(since=t0 + 5 * s).feed(data) == b""
    assert LogRenderer(since=t0).feed(data) == b"old\nolder err\nnew\ne\n"


def test_renderer_tail() -> None:
    t0 = 1_700_000_000_000_000_000
    data = _log((t0, "stdout", False, b"1"), (t0, "stdout", True, b"2a"),
                (t0, "stderr", False, b"e"), (t0, "stdout", False, b"2b"),
                (t0, "stdout", False, b"3"))
    assert LogRenderer().feed_tail(data, 1) == b"3\n"
    # Line 2 (stdout) began before the stderr line: the last 2 lines are "e" and "3", and
    # the rest of line 2 is left out rather than shown as a line of its own.
    assert LogRenderer().feed_tail(data, 2) == b"e\n3\n"
    # Records come out in file order (as upstream): stderr's line within line 2.
    assert LogRenderer().feed_tail(data, 3) == b"2ae\n2b\n3\n"
    assert LogRenderer().feed_tail(data, 10) == b"1\n2ae\n2b\n3\n"
    assert LogRenderer().feed_tail(data, 0) == b""
    r = LogRenderer()
    assert r.feed_tail(data, 0) == b""
    assert r.feed(_log((t0, "stdout", False, b"4"))) == b"4\n"   # follow goes on


def test_pump_writes_records(tmp_path: Path) -> None:
    path = tmp_path / "0.log"

    async def main() -> None:
        f = crilog.LogFile(path)
        proc = await asyncio.create_subprocess_exec(
            "sh", "-c", "echo out1; echo err1 >&2; printf 'x%.0s' $(seq 20000); echo; "
                        "printf tail", stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        assert proc.stdout is not None and proc.stderr is not None
        await asyncio.gather(crilog.pump(proc.stdout, "stdout", f),
                             crilog.pump(proc.stderr, "stderr", f), proc.wait())
        f.close()

    asyncio.run(main())
    raw = path.read_bytes()
    recs = [parse_record(line) for line in raw.splitlines()]
    assert all(r is not None for r in recs), raw[:300]
    assert all(TS.match(line.split(b" ")[0].decode()) for line in raw.splitlines())
    out = [(r.stream, r.partial, r.content[:5]) for r in recs if r is not None]
    assert ("stderr", False, b"err1") in out
    assert [o for o in out if o[0] == "stdout"] == [
        ("stdout", False, b"out1"), ("stdout", True, b"xxxxx"), ("stdout", False, b"xxxxx"),
        ("stdout", True, b"tail")]
    assert crilog.read_output(path, "stdout") == "out1\n" + "x" * 20000 + "\ntail"
    assert crilog.read_output(path, "stderr") == "err1\n"
