"""An acknowledged write survives kill -9 of the server."""
from __future__ import annotations

import threading
import time
from pathlib import Path

from tests.conftest import ServerProcess

CM = "/api/v1/namespaces/default/configmaps"


def test_kill9_mid_stream_keeps_every_acknowledged_create(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path).start()
    acked: dict[str, int] = {}
    stop = threading.Event()

    def writer(worker: int) -> None:
        i = 0
        while not stop.is_set():
            name = f"w{worker}-{i}"
            try:
                r = srv.post(CM, {"metadata": {"name": name}, "data": {"i": str(i)}}, timeout=5)
            except Exception:
                return  # the server is gone
            if r.status == 201:
                acked[name] = int(r.json()["metadata"]["resourceVersion"])
            i += 1

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    srv.kill9()
    stop.set()
    for t in threads:
        t.join(10)
    assert len(acked) > 50
    max_rv = max(acked.values())

    srv.port = srv.port  # same data dir, same port
    srv.start()
    try:
        items = srv.get(CM).json()["items"]
        have = {o["metadata"]["name"] for o in items}
        missing = set(acked) - have
        assert not missing, f"{len(missing)} acknowledged creates lost: {sorted(missing)[:5]}"
        r = srv.post(CM, {"metadata": {"name": "after-restart"}})
        assert r.status == 201 and int(r.json()["metadata"]["resourceVersion"]) > max_rv
    finally:
        srv.stop()
