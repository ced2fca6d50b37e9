"""Shared by bench/startup.py, bench/pods.py, bench/hollow_nodes.py: a `pyk8s up` (and
agents) in child processes, a blocking admin client, process-tree RSS."""
from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import urllib3

ROOT = Path(__file__).resolve().parent.parent
urllib3.disable_warnings()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it (by /proc/*/stat ppid)."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def tree_rss_mb(pid: int) -> float:
    return sum(rss_kb(p) for p in descendants(pid)) / 1024


def pct(values: list[float], p: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, int(len(v) * p))] if v else 0.0


class Proc:
    """A `python -m pyk8s.cli.main ...` child with its log in `log`."""

    def __init__(self, args: list[str], log: Path) -> None:
        self.log = log
        self.p = subprocess.Popen([sys.executable, "-m", "pyk8s.cli.main", *args],
                                  stdout=open(log, "ab"), stderr=subprocess.STDOUT, cwd=ROOT)

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self, timeout: float = 30.0) -> None:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()


class Cluster:
    """`pyk8s up` in `data_dir`; `extra` adds flags (e.g. --disable-agent)."""

    def __init__(self, data_dir: Path, *extra: str) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.started = time.monotonic()
        self.proc = Proc(["up", "--data-dir", str(data_dir), "--port", str(self.port),
                          *extra], data_dir / "up.log")
        self.http = urllib3.PoolManager(cert_reqs="CERT_NONE", retries=False, maxsize=4)
        self._token = ""

    def token(self) -> str:
        if not self._token:
            self._token = (self.data_dir / "token").read_text().strip()
        return self._token

    def req(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        r = self.http.request(method, self.url + path, timeout=30.0,
                              body=json.dumps(body) if body is not None else None,
                              headers={"Authorization": f"Bearer {self.token()}",
                                       "Content-Type": "application/json"})
        try:
            return r.status, json.loads(r.data)
        except ValueError:
            return r.status, None

    def wait_api(self, timeout: float = 60.0) -> None:
        wait(lambda: (self.data_dir / "token").exists() and self._ok("/readyz"), timeout,
             "API server ready", self.proc)

    def _ok(self, path: str) -> bool:
        try:
            return self.req("GET", path)[0] == 200
        except (urllib3.exceptions.HTTPError, OSError):
            return False

    def ready_nodes(self) -> int:
        try:
            st, body = self.req("GET", "/api/v1/nodes")
        except (urllib3.exceptions.HTTPError, OSError):
            return 0
        if st != 200:
            return 0
        return sum(1 for n in body["items"] for c in n.get("status", {}).get("conditions") or []
                   if c["type"] == "Ready" and c["status"] == "True")

    def agent(self, log: Path, *extra: str) -> Proc:
        return Proc(["agent", "--server", self.url, "--token-file",
                     str(self.data_dir / "node-token"), "--certificate-authority",
                     str(self.data_dir / "tls" / "ca.crt"), *extra], log)


def wait(cond: Callable[[], Any], timeout: float, what: str, proc: Proc | None = None,
         step: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if proc is not None and proc.p.poll() is not None:
            raise SystemExit(f"{what}: process exited: {proc.text()[-2000:]}")
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(step)

