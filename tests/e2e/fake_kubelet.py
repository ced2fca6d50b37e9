"""A stand-in kubelet for e2e tests (there is no real one yet): a thread that polls the
pods of a namespace and does what a kubelet's status manager would.

- pods it accepts (`accept(pod)`; all by default) become Running and Ready through
  PATCH pods/status, with a pod IP (10.244.<n>.<m>, unique per kubelet), `podIPs`,
  the PodScheduled / Initialized / ContainersReady / Ready conditions and ready
  container statuses — after `ready_delay` seconds;
- with `node` set, unbound pods are bound to that node first (POST pods/binding, what
  the scheduler would do); their deletion is then graceful, and the kubelet finishes it
  (DELETE with gracePeriodSeconds 0) once a pod has been terminating for
  `terminate_delay` seconds (`hold_terminating()` keeps them terminating);
- `set_ready(name, False)` flips a pod's readiness (a failing readiness probe).
"""
from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timezone
from typing import Any, Callable

import urllib3

from tests.conftest import ServerProcess

Obj = dict[str, Any]


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeKubelet:
    _subnets = iter(range(1, 250))

    def __init__(self, server: ServerProcess, namespace: str, *, node: str | None = None,
                 accept: Callable[[Obj], bool] | None = None, ready_delay: float = 0.0,
                 terminate_delay: float = 0.0, interval: float = 0.05) -> None:
        self.server = server
        self.namespace = namespace
        self.node = node
        self.accept = accept or (lambda pod: True)
        self.ready_delay = ready_delay
        self.terminate_delay = terminate_delay
        self.interval = interval
        self.subnet = next(FakeKubelet._subnets)
        self._ips: dict[str, str] = {}
        self._seen: dict[str, float] = {}
        self._not_ready: set[str] = set()
        self._hold = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"fake-kubelet-{namespace}")
        self.http = urllib3.PoolManager(cert_reqs="CERT_NONE", retries=False, maxsize=4)
        self.errors: list[str] = []

    # -- control --------------------------------------------------------------------------
    def start(self) -> "FakeKubelet":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def __enter__(self) -> "FakeKubelet":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def hold_terminating(self, hold: bool = True) -> None:
        self._hold = hold

    def set_ready(self, name: str, ready: bool) -> None:
        if ready:
            self._not_ready.discard(name)
        else:
            self._not_ready.add(name)

    def ip_of(self, name: str) -> str | None:
        return self._ips.get(name)

    # -- HTTP -----------------------------------------------------------------------------
    def _request(self, method: str, path: str, body: Any = None,
                 content_type: str = "application/json") -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.server.token}"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = content_type
        r = self.http.request(method, self.server.url + path, body=data, headers=headers,
                              timeout=10.0)
        try:
            return r.status, json.loads(r.data) if r.data else None
        except ValueError:
            return r.status, None

    # -- the loop -------------------------------------------------------------------------
    def _run(self) -> None:
        base = f"/api/v1/namespaces/{self.namespace}/pods"
        while not self._stop.is_set():
            try:
                status, body = self._request("GET", base)
                if status == 200:
                    for pod in body.get("items") or []:
                        self._handle(base, pod)
            except Exception as e:  # keep going: the server may be busy
                self.errors.append(repr(e))
            self._stop.wait(self.interval)

    def _ip(self, name: str) -> str:
        ip = self._ips.get(name)
        if ip is None:
            n = len(self._ips) + 1
            ip = f"10.{self.subnet}.{n // 250}.{n % 250 + 1}"
            self._ips[name] = ip
        return ip

    def _handle(self, base: str, pod: Obj) -> None:
        md, spec, st = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
        name = md["name"]
        now = time.monotonic()
        if md.get("deletionTimestamp"):
            if spec.get("nodeName") and not self._hold:
                first = self._seen.setdefault("deleting/" + name, now)
                if now - first >= self.terminate_delay:
                    self._request("DELETE", f"{base}/{name}",
                                  {"kind": "DeleteOptions", "apiVersion": "v1",
                                   "gracePeriodSeconds": 0,
                                   "preconditions": {"uid": md["uid"]}})
            return
        if not self.accept(pod) or st.get("phase") in ("Succeeded", "Failed"):
            return
        if self.node and not spec.get("nodeName"):
            self._request("POST", f"{base}/{name}/binding",
                          {"apiVersion": "v1", "kind": "Binding",
                           "metadata": {"name": name},
                           "target": {"apiVersion": "v1", "kind": "Node", "name": self.node}})
            return  # handled on the next round, bound
        first = self._seen.setdefault(name, now)
        if now - first < self.ready_delay:
            return
        want_ready = name not in self._not_ready
        conds = {c.get("type"): c.get("status") for c in st.get("conditions") or []}
        ready_now = conds.get("Ready") == "True"
        if st.get("phase") == "Running" and ready_now == want_ready and st.get("podIP"):
            return
        ip = self._ip(name)
        flag = "True" if want_ready else "False"
        ts = _now()
        containers = [{"name": c["name"], "image": c.get("image", ""), "imageID": "",
                       "ready": want_ready, "started": True, "restartCount": 0,
                       "state": {"running": {"startedAt": ts}}}
                      for c in spec.get("containers") or []]
        patch = {"status": {
            "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": "192.168.0.10",
            "startTime": st.get("startTime") or ts,
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": ts},
                {"type": "Initialized", "status": "True", "lastTransitionTime": ts},
                {"type": "ContainersReady", "status": flag, "lastTransitionTime": ts},
                {"type": "Ready", "status": flag, "lastTransitionTime": ts}],
            "containerStatuses": containers}}
        self._request("PATCH", f"{base}/{name}/status", patch,
                      "application/merge-patch+json")


def create_node(server: ServerProcess, name: str, zone: str | None = None) -> None:
    labels = {"kubernetes.io/hostname": name}
    if zone:
        labels["topology.kubernetes.io/zone"] = zone
    r = server.post("/api/v1/nodes", {"apiVersion": "v1", "kind": "Node",
                                      "metadata": {"name": name, "labels": labels}})
    assert r.status in (201, 409), r
