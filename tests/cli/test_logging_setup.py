"""pyk8s/cli/logging_setup.py: klog's -v / --v, --log-format, the deprecated --log-level."""
from __future__ import annotations

import argparse
import io
import json
import logging
from collections.abc import Iterator

import pytest

from pyk8s.cli.logging_setup import (JSONFormatter, V, add_logging_args, configure,
                                     setup_logging, threshold, verbosity_of)


@pytest.fixture(autouse=True)
def _restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)


def parse(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_logging_args(p)
    return p.parse_args(list(argv))


def test_levels_sit_between_debug_and_info() -> None:
    assert V(0) == logging.INFO
    assert logging.DEBUG < V(3) < V(1) < logging.INFO
    assert V(10) == logging.DEBUG
    assert verbosity_of(V(3)) == 3 and verbosity_of(logging.INFO) == 0
    assert logging.getLevelName(V(3)) == "V3"


def test_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYK8S_LOG_LEVEL", raising=False)
    a = parse()
    assert (a.v, a.log_format) == (0, "text")
    assert parse("-v", "3").v == 3
    assert parse("--v=4").v == 4
    assert parse("-v=2").v == 2
    assert parse("--log-format", "json").log_format == "json"
    with pytest.raises(SystemExit):
        parse("--v", "-1")
    with pytest.raises(SystemExit):
        parse("--log-format", "yaml")


def test_threshold() -> None:
    assert threshold() == logging.INFO
    assert threshold(3) == V(3)
    assert threshold(0, default=logging.WARNING) == logging.WARNING
    assert threshold(2, default=logging.WARNING) == V(2)
    # the deprecated --log-level wins when given
    assert threshold(5, "warning") == logging.WARNING
    assert threshold(0, "DEBUG") == logging.DEBUG
    assert threshold(0, "warn") == logging.WARNING


def test_verbosity_filters_messages() -> None:
    out = io.StringIO()
    configure(v=0, stream=out)
    log = logging.getLogger("pyk8s.test.v")
    log.info("started")
    log.log(V(2), "per object")
    log.log(V(3), "GET /api 200")
    log.warning("careful")
    text = out.getvalue()
    assert "INFO pyk8s.test.v: started" in text and "careful" in text
    assert "per object" not in text and "GET /api" not in text

    out = io.StringIO()
    configure(v=3, stream=out)
    log.log(V(3), "GET /api 200")
    log.log(V(4), "too verbose")
    assert "V3 pyk8s.test.v: GET /api 200" in out.getvalue()
    assert "too verbose" not in out.getvalue()


def test_setup_logging_from_args(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYK8S_LOG_LEVEL", raising=False)
    setup_logging(parse("--v", "3", "--log-format", "json"))
    root = logging.getLogger()
    assert root.level == V(3)
    assert len(root.handlers) == 1 and isinstance(root.handlers[0].formatter, JSONFormatter)
    monkeypatch.setenv("PYK8S_LOG_LEVEL", "ERROR")  # still honoured, as before
    setup_logging(parse())
    assert root.level == logging.ERROR


def test_json_lines() -> None:
    out = io.StringIO()
    configure(v=3, fmt="json", stream=out)
    log = logging.getLogger("pyk8s.test.json")
    log.info("node %s is %s", "n1", "NotReady")
    log.log(V(3), "GET /api 200")
    log.warning("careful", extra={"node": "n1"})
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("sync failed")
    lines = [json.loads(ln) for ln in out.getvalue().splitlines()]
    assert len(lines) == 4
    first = lines[0]
    assert first["msg"] == "node n1 is NotReady" and first["v"] == 0
    assert first["logger"] == "pyk8s.test.json"
    assert first["caller"].startswith("test_logging_setup.py:")
    assert isinstance(first["ts"], float) and first["ts"] > 1.6e12  # milliseconds, as upstream
    assert lines[1]["v"] == 3
    assert lines[2]["v"] == 0 and lines[2]["node"] == "n1"
    err = lines[3]
    assert err["msg"] == "sync failed" and err["err"] == "ValueError: boom" and "v" not in err
    assert "Traceback" in err["stacktrace"]
