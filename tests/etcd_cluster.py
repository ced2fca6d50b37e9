"""Throwaway etcd members for tests and benchmarks: free loopback ports, temp data dirs.

    with EtcdCluster(3) as c:        # or EtcdCluster(1); .start() / .stop() by hand
        c.endpoints                  # "http://127.0.0.1:P1,http://127.0.0.1:P2,..."
        c.members[1].kill()          # SIGKILL one member (by pid); .start() brings it back

Every member is a real `etcd` (Debian's etcd-server) started by pid and stopped by pid;
data dirs live under one temp dir that is removed on stop. `tmpfs=True` puts the data on
/dev/shm (cheap fsync: for fast tests; benchmarks use the disk). Nothing is left running
when the test process exits (an atexit hook stops what is still up) or is killed (members
get SIGKILL when their parent dies).
"""
from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import weakref
from pathlib import Path

ETCD = os.environ.get("ETCD", shutil.which("etcd") or "/usr/bin/etcd")

_live: "weakref.WeakSet[EtcdMember]" = weakref.WeakSet()


# SIGKILL for a member whose parent dies (util-linux; exec's etcd, so the pid stays etcd's).
# Not preexec_fn: forking a process that runs gRPC (the etcd storage) runs gRPC's fork
# handlers in the child, which can kill it before it execs.
SETPRIV = shutil.which("setpriv")


def etcd_available() -> bool:
    return os.path.exists(ETCD)


def _free_ports(n: int) -> list[int]:
    """`n` distinct free loopback ports (held open together so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


class EtcdMember:
    def __init__(self, name: str, data_dir: Path, client_port: int, peer_port: int,
                 host: str = "127.0.0.1") -> None:
        self.name = name
        self.host = host
        self.data_dir = data_dir
        self.client_port = client_port
        self.peer_port = peer_port
        self.proc: subprocess.Popen[bytes] | None = None
        self.initial_cluster = ""
        self.cluster_token = ""
        self.log_path = data_dir.parent / f"{name}.log"

    @property
    def client_url(self) -> str:
        return f"http://{self.host}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://{self.host}:{self.peer_port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self) -> "EtcdMember":
        if self.running():
            return self
        prefix = [SETPRIV, "--pdeathsig", "KILL", "--"] if SETPRIV else []
        cmd = [*prefix, ETCD, "--name", self.name, "--data-dir", str(self.data_dir),
               "--listen-client-urls", self.client_url,
               "--advertise-client-urls", self.client_url,
               "--listen-peer-urls", self.peer_url,
               "--initial-advertise-peer-urls", self.peer_url,
               "--initial-cluster", self.initial_cluster,
               "--initial-cluster-token", self.cluster_token,
               "--initial-cluster-state", "new",
               # Fast fail-over on loopback (defaults are 100 ms / 1 s).
               "--heartbeat-interval", "50", "--election-timeout", "500",
               "--log-level", "warn", "--logger", "zap"]
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        finally:
            log.close()
        _live.add(self)
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def healthy(self, timeout: float = 1.0) -> bool:
        try:
            with urllib.request.urlopen(self.client_url + "/health", timeout=timeout) as r:
                return json.loads(r.read()).get("health") == "true"
        except (OSError, ValueError, urllib.error.URLError):
            return False

    def wait_healthy(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"etcd {self.name} exited:\n{self.log_tail()}")
            if self.healthy(0.5):
                return
            time.sleep(0.05)
        raise RuntimeError(f"etcd {self.name} not healthy after {timeout}s:\n{self.log_tail()}")

    def log_tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def _signal(self, sig: int, wait: float) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            try:
                os.kill(proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                proc.wait(wait)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        self.proc = None

    def stop(self) -> None:
        """SIGTERM (SIGKILL after 10 s)."""
        self._signal(signal.SIGTERM, 10)

    def kill(self) -> None:
        """SIGKILL."""
        self._signal(signal.SIGKILL, 10)

    def pause(self) -> None:
        """SIGSTOP: the member hangs (connections stay open, nothing answers)."""
        if self.running():
            assert self.proc is not None
            os.kill(self.proc.pid, signal.SIGSTOP)
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline:  # stopped once every thread is ("T")
                try:
                    states = {Path(f"/proc/{self.proc.pid}/task/{t}/stat").read_text()
                              .rsplit(")", 1)[1].split()[0]
                              for t in os.listdir(f"/proc/{self.proc.pid}/task")}
                except OSError:
                    break
                if states <= {"T", "t"}:
                    break
                time.sleep(0.005)

    def resume(self) -> None:
        if self.running():
            assert self.proc is not None
            os.kill(self.proc.pid, signal.SIGCONT)


class EtcdCluster:
    """`size` members on loopback (or on `host`, an address of the test's, e.g. a NetHosts
    gateway); `endpoints` is the comma-separated client URL list."""

    def __init__(self, size: int = 1, *, tmpfs: bool = True, host: str = "127.0.0.1") -> None:
        base = "/dev/shm" if tmpfs and os.path.isdir("/dev/shm") else None
        self.dir = Path(tempfile.mkdtemp(prefix="pyk8s-etcd-", dir=base))
        ports = _free_ports(2 * size)
        token = self.dir.name
        self.members = [EtcdMember(f"m{i}", self.dir / f"m{i}.etcd", ports[2 * i],
                                   ports[2 * i + 1], host) for i in range(size)]
        initial = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        for m in self.members:
            m.initial_cluster = initial
            m.cluster_token = token

    @property
    def endpoints(self) -> str:
        return ",".join(m.client_url for m in self.members)

    def start(self, timeout: float = 20.0) -> "EtcdCluster":
        try:
            for m in self.members:
                m.start()
            for m in self.members:
                m.wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for m in self.members:
            m.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "EtcdCluster":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@atexit.register
def _stop_leftovers() -> None:
    for m in list(_live):
        try:
            m.resume()
            m.kill()
        except Exception:
            pass
