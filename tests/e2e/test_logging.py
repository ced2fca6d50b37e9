"""`pyk8s server`'s log as klog's: quiet at the default verbosity (no line per request),
the request log from --v 3 (upstream's httplog is V(3)), and --log-format json."""
from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import ServerProcess

MARK = "/api/v1/namespaces/default/configmaps/logging-probe"


def _traffic(srv: ServerProcess) -> None:
    for _ in range(3):
        assert srv.request("GET", MARK).status == 404
    assert srv.request("GET", "/api/v1/namespaces").status == 200


def test_default_verbosity_logs_no_requests(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path).start()
    try:
        _traffic(srv)
    finally:
        srv.stop()
    log = srv.log_path.read_text()
    assert "API server listening on" in log  # start-up is level 0
    assert MARK not in log and "GET /api/v1/namespaces " not in log


def test_v3_logs_every_request(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path, extra=["--v", "3"]).start()
    try:
        _traffic(srv)
    finally:
        srv.stop()
    lines = [ln for ln in srv.log_path.read_text().splitlines() if f"GET {MARK} 404" in ln]
    assert len(lines) == 3, srv.log_path.read_text()[-2000:]
    assert " V3 pyk8s.apiserver: " in lines[0]


def test_json_format(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path, extra=["-v=3", "--log-format", "json"]).start()
    try:
        _traffic(srv)
    finally:
        srv.stop()
    records = [json.loads(ln) for ln in srv.log_path.read_text().splitlines()
               if ln.startswith("{")]
    assert records and all({"ts", "logger", "msg", "caller"} <= r.keys() for r in records)
    started = [r for r in records if "API server listening on" in r["msg"]]
    assert started and started[0]["v"] == 0 and started[0]["logger"] == "pyk8s"
    requests = [r for r in records if r["msg"].startswith(f"GET {MARK} 404")]
    assert len(requests) == 3 and all(r["v"] == 3 for r in requests)
    assert requests[0]["logger"] == "pyk8s.apiserver"
    assert isinstance(requests[0]["ts"], float)
