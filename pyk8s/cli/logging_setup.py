"""Logging of every pyk8s command, as upstream's klog: `-v` / `--v N` (verbosity, 0 by
default) and `--log-format text|json`.

klog's verbosity maps onto Python's levels just below INFO (pyk8s/verbosity.py): a V(n)
message is logged at `V(n)` = INFO - n (V(0) is INFO, V(10) is DEBUG), so `--v N` is the
threshold INFO - N.
Level 0 shows start-up, warnings, errors and state changes; per-request and per-object
lines are V(2)..V(4) (the API server's request log is V(3), as upstream's httplog).

`--log-format json` writes one object a line with component-base/logs/json's keys: `ts`
(milliseconds since the epoch, a float), `caller`, `logger`, `msg`, `v` (the verbosity of
a non-error message) and `err` (an exception's text); anything else a record carries in
`extra=` is added as further keys.

`--log-level` (a Python level name, or PYK8S_LOG_LEVEL) still works but is deprecated:
when given it wins over `--v`.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from typing import Any, TextIO

import orjson

from pyk8s.verbosity import V, verbosity_of

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def add_logging_args(p: argparse.ArgumentParser) -> None:
    """klog's flags on one command's parser, and the deprecated --log-level."""
    g = p.add_argument_group("logging (klog's flags)")
    g.add_argument("-v", "--v", dest="v", type=_verbosity, default=0, metavar="N",
                   help="log verbosity: 0 start-up, warnings, errors and state changes; "
                        "2 per-object changes; 3 every API request; 10 debug (default 0)")
    g.add_argument("--log-format", choices=FORMATS, default="text",
                   help="text (default) or json: one JSON object a line (ts, v, logger, "
                        "msg, err)")
    g.add_argument("--log-level", default=os.environ.get("PYK8S_LOG_LEVEL") or None,
                   help="deprecated: a Python level (DEBUG, INFO, WARNING, ERROR) that "
                        "overrides --v")


def _verbosity(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid verbosity {value!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"verbosity must be >= 0, got {n}")
    return n


def threshold(v: int = 0, log_level: str | None = None,
              default: int = logging.INFO) -> int:
    """The root logger's level: --log-level when given, else V(v) when v > 0, else
    `default` (INFO; a quiet command such as `pyk8s image` passes WARNING)."""
    if log_level:
        s = str(log_level).strip().upper()
        if s.isdigit():
            return int(s)
        if s in ("WARN",):
            s = "WARNING"
        level = logging.getLevelName(s)
        if isinstance(level, int):
            return level
        return logging.INFO
    return V(v) if v > 0 else default


class TextFormatter(logging.Formatter):
    """`2026-12-07 14:02:38,123 INFO pyk8s.scheduler: …`; V(n) messages show `Vn`."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)


class JSONFormatter(logging.Formatter):
    """One JSON object a line, component-base/logs/json's keys."""

    _STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
        "message", "asctime", "taskName"}

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {"ts": record.created * 1000.0,
                               "caller": f"{os.path.basename(record.pathname)}:{record.lineno}",
                               "logger": record.name, "msg": record.getMessage()}
        if record.levelno < logging.ERROR:
            out["v"] = verbosity_of(record.levelno)
        if record.exc_info and record.exc_info[0] is not None:
            etype, exc, _ = record.exc_info
            out["err"] = f"{etype.__name__}: {exc}" if str(exc) else etype.__name__
            out["stacktrace"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        elif record.levelno >= logging.ERROR and record.exc_text:
            out["err"] = record.exc_text
        for k, val in vars(record).items():  # `extra=` key/value pairs
            if k not in self._STANDARD and k not in out:
                out[k] = val
        return orjson.dumps(out, default=str).decode()


def make_formatter(fmt: str) -> logging.Formatter:
    if fmt == "json":
        return JSONFormatter()
    if fmt == "text":
        return TextFormatter()
    raise ValueError(f"unknown log format {fmt!r} (text or json)")


def configure(v: int = 0, fmt: str = "text", log_level: str | None = None,
              default: int = logging.INFO, stream: TextIO | None = None) -> logging.Handler:
    """Replace the root logger's handlers with one writing to `stream` (stderr)."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(make_formatter(fmt))
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(threshold(v, log_level, default))
    return handler


def setup_logging(args: argparse.Namespace, default: int = logging.INFO) -> logging.Handler:
    """configure() from a command's parsed flags (add_logging_args)."""
    return configure(getattr(args, "v", 0) or 0, getattr(args, "log_format", "text") or "text",
                     getattr(args, "log_level", None), default)


__all__ = ["V", "verbosity_of", "add_logging_args", "threshold", "configure", "setup_logging",
           "TextFormatter", "JSONFormatter", "make_formatter"]
