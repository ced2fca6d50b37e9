"""pyk8s API servers on real etcd: two servers on one etcd, etcd outages, a 3-member cluster
losing a member under write load. Every etcd is a throwaway member on loopback ports."""
from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.request
from typing import Any, Iterator

import pytest

from pyk8s.storage.etcd import EtcdStorage
from tests.conftest import ServerProcess, WatchReader
from tests.etcd_cluster import EtcdCluster, EtcdMember


def cm(name: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def etcd_server(srv_dir: Any, endpoints: str) -> ServerProcess:
    return ServerProcess(srv_dir, storage="etcd", extra=["--etcd-servers", endpoints])


def make_ns(srv: ServerProcess, name: str) -> str:
    r = srv.post("/api/v1/namespaces", {"metadata": {"name": name}})
    assert r.status == 201, r
    return f"/api/v1/namespaces/{name}/configmaps"


# -- two API servers, one etcd ----------------------------------------------------------------
@pytest.fixture(scope="module")
def etcd() -> Iterator[EtcdCluster]:
    with EtcdCluster(1) as c:
        yield c


@pytest.fixture(scope="module")
def pair(etcd: EtcdCluster, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    a = etcd_server(tmp_path_factory.mktemp("a"), etcd.endpoints)
    b = etcd_server(tmp_path_factory.mktemp("b"), etcd.endpoints)
    try:
        a.start()
        b.start()
        yield a, b
    finally:
        a.stop()
        b.stop()


def test_write_on_a_seen_by_watch_and_list_on_b(pair: tuple[ServerProcess, ServerProcess]) -> None:
    a, b = pair
    cms = make_ns(a, "ab-watch")
    rv = b.get(cms).json()["metadata"]["resourceVersion"]  # consistent: b saw the namespace
    w = WatchReader(b, f"{cms}?watch=1&resourceVersion={rv}&timeoutSeconds=20")
    try:
        created = a.post(cms, cm("x", v="1")).json()
        ev = w.wait_for(1)[0]
        assert ev["type"] == "ADDED" and ev["object"]["metadata"]["name"] == "x"
        assert ev["object"]["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
        assert ev["object"]["metadata"]["uid"] == created["metadata"]["uid"]

        # an update through b: a reads it back with the same resourceVersion
        got = b.get(f"{cms}/x").json()
        got["data"]["v"] = "2"
        updated = b.put(f"{cms}/x", got).json()
        on_a = a.get(f"{cms}/x").json()
        assert on_a["data"] == {"v": "2"}
        assert on_a["metadata"]["resourceVersion"] == updated["metadata"]["resourceVersion"]
        # a consistent LIST on a right after b's write includes it (a's cache caught up)
        listed = a.get(cms).json()
        assert [o["data"] for o in listed["items"]] == [{"v": "2"}]
        assert int(listed["metadata"]["resourceVersion"]) >= int(updated["metadata"]["resourceVersion"])

        # a stale write through a conflicts with b's update (one etcd, one revision line)
        stale = dict(created, data={"v": "stale"})
        assert a.put(f"{cms}/x", stale).status == 409
        deleted = a.delete(f"{cms}/x")
        assert deleted.status == 200, deleted
        types = [e["type"] for e in w.wait_for(3)]
        assert types == ["ADDED", "MODIFIED", "DELETED"]
        assert w.events[1]["object"]["metadata"]["resourceVersion"] == \
            updated["metadata"]["resourceVersion"]
    finally:
        w.close()


def test_both_servers_hand_out_the_same_revisions(pair: tuple[ServerProcess, ServerProcess]) -> None:
    a, b = pair
    cms = make_ns(b, "ab-revs")
    rvs = {}
    for i in range(10):
        srv = (a, b)[i % 2]
        r = srv.post(cms, cm(f"c{i}"))
        assert r.status == 201, r
        rvs[f"c{i}"] = r.json()["metadata"]["resourceVersion"]
    assert len(set(rvs.values())) == 10
    for srv in (a, b):
        items = srv.get(cms).json()["items"]
        assert {o["metadata"]["name"]: o["metadata"]["resourceVersion"] for o in items} == rvs


def test_writes_outside_registry_do_not_stall_consistent_reads(
        etcd: EtcdCluster, pair: tuple[ServerProcess, ServerProcess]) -> None:
    """Another etcd client moves the revision without any /registry/ event: a consistent
    LIST must still answer at once (the watch cache follows every revision)."""
    a, _ = pair

    async def foreign_writes() -> int:
        s = await EtcdStorage.open(etcd.endpoints, wait=5)
        try:
            for i in range(5):
                await s.create(f"/not-kubernetes/{time.monotonic_ns()}-{i}", b"x")
            return await s.current_revision()
        finally:
            await s.close()

    rev = asyncio.run(foreign_writes())
    t = time.monotonic()
    r = a.get("/api/v1/namespaces/default/configmaps")
    assert r.status == 200, r
    assert time.monotonic() - t < 1.0
    assert int(r.json()["metadata"]["resourceVersion"]) >= rev


# -- faults -------------------------------------------------------------------------------------
def test_etcd_down_fails_fast_and_server_recovers(tmp_path: Any) -> None:
    with EtcdCluster(1) as c:
        srv = etcd_server(tmp_path, c.endpoints).start()
        try:
            cms = "/api/v1/namespaces/default/configmaps"
            assert srv.post(cms, cm("before")).status == 201
            c.members[0].stop()
            for method, path, body in [("GET", f"{cms}/before", None), ("GET", cms, None),
                                       ("POST", cms, cm("during")),
                                       ("DELETE", f"{cms}/before", None)]:
                t = time.monotonic()
                r = srv.request(method, path, body, timeout=15)
                took = time.monotonic() - t
                assert r.status in (503, 504), (method, path, r)
                assert r.json()["kind"] == "Status"
                assert took < 6.0, (method, path, took)

            c.members[0].start().wait_healthy()
            deadline = time.monotonic() + 15
            while True:  # the server reconnects by itself
                r = srv.post(cms, cm("after"))
                if r.status == 201 or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            assert r.status == 201, r
            after_rv = int(r.json()["metadata"]["resourceVersion"])
            # the watch cache resumed: a consistent LIST has both, a watch sees new writes
            listed = srv.get(cms).json()
            assert {o["metadata"]["name"] for o in listed["items"]} == {"before", "after"}
            w = WatchReader(srv, f"{cms}?watch=1&resourceVersion={after_rv}&timeoutSeconds=20")
            try:
                assert srv.post(cms, cm("later")).status == 201
                assert w.wait_for(1)[0]["object"]["metadata"]["name"] == "later"
            finally:
                w.close()
        finally:
            srv.stop()


def _leader(members: list[EtcdMember]) -> EtcdMember:
    """The current raft leader (etcd's JSON gateway: /v3/maintenance/status)."""
    for _ in range(100):
        for m in members:
            try:
                req = urllib.request.Request(m.client_url + "/v3/maintenance/status", data=b"{}",
                                             method="POST")
                with urllib.request.urlopen(req, timeout=2) as r:
                    st = json.loads(r.read())
            except OSError:
                continue
            if st.get("leader") and st["leader"] == st["header"]["member_id"]:
                return m
        time.sleep(0.05)
    raise AssertionError("no etcd leader")


def test_three_members_lose_the_leader_under_write_load(tmp_path: Any) -> None:
    """SIGKILL the raft leader of a 3-member etcd while 4 clients create objects: every
    acknowledged create survives and writes go on (failures meanwhile are 503/504 only)."""
    with EtcdCluster(3) as c:
        srv = etcd_server(tmp_path, c.endpoints).start()
        try:
            cms = make_ns(srv, "load")
            acked: dict[str, str] = {}
            statuses: dict[int, int] = {}
            killed_at: list[float] = []
            after_kill = 0
            stop = threading.Event()
            lock = threading.Lock()

            def writer(worker: int) -> None:
                nonlocal after_kill
                i = 0
                while not stop.is_set():
                    name = f"w{worker}-{i}"
                    i += 1
                    try:
                        r = srv.post(cms, cm(name), timeout=15)
                    except Exception:
                        continue
                    with lock:
                        statuses[r.status] = statuses.get(r.status, 0) + 1
                        if r.status == 201:
                            acked[name] = r.json()["metadata"]["resourceVersion"]
                            if killed_at:
                                after_kill += 1

            threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
            for t in threads:
                t.start()
            time.sleep(1.0)
            leader = _leader(c.members)
            leader.kill()
            killed_at.append(time.monotonic())
            # Writes in flight to the dead leader wait out their deadline (5 s), as
            # upstream's would (etcd drops proposals forwarded to a dead leader).
            deadline = time.monotonic() + 20
            while after_kill < 50 and time.monotonic() < deadline:
                time.sleep(0.05)
            stop.set()
            for t in threads:
                t.join(20)
            assert after_kill >= 50, (after_kill, statuses)
            assert set(statuses) <= {201, 503, 504}, statuses

            items = srv.get(cms).json()["items"]
            have = {o["metadata"]["name"]: o["metadata"]["resourceVersion"] for o in items}
            missing = set(acked) - set(have)
            assert not missing, f"{len(missing)} acknowledged creates lost: {sorted(missing)[:5]}"
            assert all(have[n] == rv for n, rv in acked.items())

            # straight from the two surviving members, too
            alive = ",".join(m.client_url for m in c.members if m is not leader)

            async def in_etcd() -> set[str]:
                s = await EtcdStorage.open(alive, wait=5)
                try:
                    kvs, _ = await s.list("/registry/configmaps/load/")
                    return {kv.key.rsplit("/", 1)[1] for kv in kvs}
                finally:
                    await s.close()

            assert set(acked) <= asyncio.run(in_etcd())
        finally:
            srv.stop()
