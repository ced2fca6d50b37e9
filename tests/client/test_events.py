"""Event recording: upstream's correlator (dedup, aggregation, spam filter) and the writer."""
from __future__ import annotations

import re

from pyk8s.client.events import EventBroadcaster, EventCorrelator, object_reference
from pyk8s.client.fake import FakeClient

RS = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
      "metadata": {"name": "web", "namespace": "ns", "uid": "u1", "resourceVersion": "7"}}


class Clock:
    def __init__(self) -> None:
        self.t = 1_700_000_000.0

    def __call__(self) -> float:
        return self.t


def test_object_reference() -> None:
    assert object_reference(RS) == {"kind": "ReplicaSet", "namespace": "ns", "name": "web",
                                    "uid": "u1", "apiVersion": "apps/v1", "resourceVersion": "7"}


async def test_create_then_count_patch_for_the_same_event() -> None:
    client = FakeClient()
    clock = Clock()
    b = EventBroadcaster(client, clock=clock)
    rec = b.new_recorder("replicaset-controller")
    b.start()
    rec.event(RS, "Normal", "SuccessfulCreate", "Created pod: web-abcde")
    assert await b.flush(2.0)
    [create] = client.by_verb("create", "events")
    ev = create.body
    assert re.fullmatch(r"web\.[0-9a-f]+", ev["metadata"]["name"])
    assert int(ev["metadata"]["name"].split(".")[1], 16) == int(clock.t * 1e9)
    assert ev["metadata"]["namespace"] == "ns" and ev["count"] == 1
    assert ev["involvedObject"]["uid"] == "u1" and ev["involvedObject"]["kind"] == "ReplicaSet"
    assert ev["source"] == {"component": "replicaset-controller"}
    assert ev["reportingComponent"] == "replicaset-controller"
    assert ev["firstTimestamp"] == ev["lastTimestamp"] == "2023-11-14T22:13:20Z"
    clock.t += 5
    rec.event(RS, "Normal", "SuccessfulCreate", "Created pod: web-abcde")
    assert await b.flush(2.0)
    [patch] = client.by_verb("patch", "events")
    assert patch.name == ev["metadata"]["name"]
    assert patch.body == {"count": 2, "lastTimestamp": "2023-11-14T22:13:25Z",
                          "message": "Created pod: web-abcde"}
    stored = client.stored("", "events", "ns")
    assert len(stored) == 1 and stored[0]["count"] == 2
    await b.shutdown()


async def test_patch_of_a_vanished_event_creates_it_again() -> None:
    client = FakeClient()
    b = EventBroadcaster(client, clock=Clock())
    rec = b.new_recorder("c")
    b.start()
    rec.event(RS, "Warning", "FailedCreate", "Error creating: nope")
    await b.flush(2.0)
    client.objects.clear()
    rec.event(RS, "Warning", "FailedCreate", "Error creating: nope")
    await b.flush(2.0)
    assert [a.verb for a in client.actions] == ["create", "patch", "create"]
    assert client.stored("", "events")[0]["count"] == 2
    await b.shutdown()


def test_aggregation_after_ten_similar_messages() -> None:
    c = EventCorrelator(Clock(), spam_burst=1000)
    ev = {"metadata": {"name": "x", "namespace": "ns"}, "involvedObject":
          object_reference(RS), "reason": "SuccessfulCreate", "type": "Normal",
          "source": {"component": "rs"}, "count": 1}
    results = [c.correlate({**ev, "message": f"Created pod: p{i}"}) for i in range(12)]
    msgs = [r.event["message"] for r in results if r.event]
    assert msgs[:9] == [f"Created pod: p{i}" for i in range(9)]
    assert msgs[9] == "(combined from similar events): Created pod: p9"
    assert results[9].patch is None  # the combined event is created once…
    assert results[10].patch is not None and results[10].event["count"] == 2  # …then counted
    assert results[11].event["message"] == "(combined from similar events): Created pod: p11"


def test_spam_filter_drops_beyond_burst_per_object() -> None:
    clock = Clock()
    c = EventCorrelator(clock)
    ev = {"metadata": {"name": "x", "namespace": "ns"}, "involvedObject": object_reference(RS),
          "reason": "R", "type": "Normal", "source": {"component": "rs"}, "message": "m"}
    kept = [c.correlate(dict(ev)).event is not None for _ in range(30)]
    assert kept.count(True) == 25
    clock.t += 300  # one token every 5 minutes
    assert c.correlate(dict(ev)).event is not None
    assert c.correlate(dict(ev)).event is None
    other = {**ev, "involvedObject": {**ev["involvedObject"], "uid": "u2", "name": "other"}}
    assert c.correlate(other).event is not None
