"""Recording core/v1 Events, after client-go's `tools/record`.

`EventBroadcaster(client)` owns a queue and one writer task; `new_recorder(component)`
gives an `EventRecorder` whose `event(obj, type, reason, message)` never blocks (events
are dropped, with a log line, when 1,000 are already queued). Before writing, each event
goes through upstream's correlator:

- aggregation: more than 10 events with the same source, involved object, type and reason
  but different messages within 10 minutes become one event whose message is
  `(combined from similar events): <latest message>`;
- deduplication: an event equal to one already written (same source, involved object,
  type, reason and message) is not created again: the existing one is PATCHed with
  `count + 1`, `lastTimestamp` and `message`;
- spam filter: per source and involved object, a token bucket of 25 events refilled at
  one per 5 minutes; events beyond it are dropped.

Event names are `<involved object name>.<nanoseconds, hex>`; cluster-scoped objects' events
go to the `default` namespace. `kubectl describe` finds them by involvedObject.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import random
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from pyk8s.client.rest import AlreadyExists, ApiError, NotFound
from pyk8s.client.workqueue import TokenBucket

log = logging.getLogger("pyk8s.client.events")

Obj = dict[str, Any]

NORMAL = "Normal"
WARNING = "Warning"

MAX_LRU_CACHE_ENTRIES = 4096
AGGREGATE_MAX_EVENTS = 10
AGGREGATE_INTERVAL_SECONDS = 600
SPAM_BURST = 25
SPAM_QPS = 1.0 / 300.0
MAX_QUEUED_EVENTS = 1000
MAX_TRIES_PER_EVENT = 12


def object_reference(obj: Obj, *, field_path: str = "") -> Obj:
    """The `ObjectReference` of an API object (kind and apiVersion must be set)."""
    md = obj.get("metadata") or {}
    ref: Obj = {"kind": obj.get("kind") or "", "namespace": md.get("namespace") or "",
                "name": md.get("name") or "", "uid": md.get("uid") or "",
                "apiVersion": obj.get("apiVersion") or "",
                "resourceVersion": md.get("resourceVersion") or ""}
    if field_path:
        ref["fieldPath"] = field_path
    return {k: v for k, v in ref.items() if v}


def _rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class _LRU(collections.OrderedDict[str, Any]):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def get_item(self, key: str) -> Any:
        v = self.get(key)
        if v is not None:
            self.move_to_end(key)
        return v

    def put(self, key: str, value: Any) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)


def _src(ev: Obj) -> Obj:
    return ev.get("source") or {}


def _inv(ev: Obj) -> Obj:
    return ev.get("involvedObject") or {}


def event_key(ev: Obj) -> str:
    """Everything that makes two events "the same" (upstream's getEventKey)."""
    s, o = _src(ev), _inv(ev)
    return "".join(str(x or "") for x in (
        s.get("component"), s.get("host"), o.get("kind"), o.get("namespace"), o.get("name"),
        o.get("fieldPath"), o.get("uid"), o.get("apiVersion"), ev.get("type"), ev.get("reason"),
        ev.get("message")))


def aggregate_key(ev: Obj) -> tuple[str, str]:
    """(key without the message, the message): upstream's EventAggregatorByReasonFunc."""
    s, o = _src(ev), _inv(ev)
    key = "".join(str(x or "") for x in (
        s.get("component"), s.get("host"), o.get("kind"), o.get("namespace"), o.get("name"),
        o.get("uid"), o.get("apiVersion"), ev.get("type"), ev.get("reason"),
        ev.get("reportingComponent"), ev.get("reportingInstance")))
    return key, str(ev.get("message") or "")


def spam_key(ev: Obj) -> str:
    s, o = _src(ev), _inv(ev)
    return "".join(str(x or "") for x in (
        s.get("component"), s.get("host"), o.get("kind"), o.get("namespace"), o.get("name"),
        o.get("uid"), o.get("apiVersion"), ev.get("type")))


@dataclass
class _Aggregate:
    local_keys: set[str]
    last: float


@dataclass
class _Observed:
    count: int
    first_timestamp: str
    name: str
    resource_version: str


@dataclass
class CorrelateResult:
    event: Obj | None          # None: dropped by the spam filter
    patch: Obj | None = None   # set when an existing event is to be updated


class EventCorrelator:
    """Aggregation, deduplication and spam filtering (upstream's EventCorrelator)."""

    def __init__(self, clock: Callable[[], float] = time.time, *,
                 spam_burst: int = SPAM_BURST, spam_qps: float = SPAM_QPS,
                 max_events: int = AGGREGATE_MAX_EVENTS,
                 max_interval: float = AGGREGATE_INTERVAL_SECONDS) -> None:
        self.clock = clock
        self.spam_burst = spam_burst
        self.spam_qps = spam_qps
        self.max_events = max_events
        self.max_interval = max_interval
        self._aggregates = _LRU(MAX_LRU_CACHE_ENTRIES)
        self._observed = _LRU(MAX_LRU_CACHE_ENTRIES)
        self._spam = _LRU(MAX_LRU_CACHE_ENTRIES)

    def _aggregate(self, ev: Obj) -> tuple[Obj, str]:
        now = self.clock()
        key, local = aggregate_key(ev)
        rec: _Aggregate | None = self._aggregates.get_item(key)
        if rec is None or now - rec.last > self.max_interval:
            rec = _Aggregate(set(), now)
        rec.local_keys.add(local)
        rec.last = now
        self._aggregates.put(key, rec)
        if len(rec.local_keys) < self.max_events:
            return ev, event_key(ev)
        rec.local_keys.pop()  # do not grow the set beyond max
        ts = _rfc3339(now)
        inv = _inv(ev)
        combined = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{inv.get('name')}.{int(now * 1e9):x}",
                         "namespace": (ev.get("metadata") or {}).get("namespace")},
            "involvedObject": inv, "reason": ev.get("reason"),
            "message": "(combined from similar events): " + str(ev.get("message") or ""),
            "source": ev.get("source"), "firstTimestamp": ts, "lastTimestamp": ts,
            "count": 1, "type": ev.get("type"),
            "reportingComponent": ev.get("reportingComponent") or "",
            "reportingInstance": ev.get("reportingInstance") or ""}
        return combined, key

    def _observe(self, ev: Obj, key: str) -> tuple[Obj, Obj | None]:
        ev = {**ev, "metadata": dict(ev.get("metadata") or {})}
        last: _Observed | None = self._observed.get_item(key)
        patch = None
        if last is not None and last.count > 0:
            ev["metadata"]["name"] = last.name
            ev["metadata"]["resourceVersion"] = last.resource_version
            ev["firstTimestamp"] = last.first_timestamp
            ev["count"] = last.count + 1
            patch = {"count": ev["count"], "lastTimestamp": ev.get("lastTimestamp"),
                     "message": ev.get("message")}
        self._observed.put(key, _Observed(int(ev.get("count") or 1),
                                          str(ev.get("firstTimestamp") or ""),
                                          str(ev["metadata"].get("name") or ""),
                                          str(ev["metadata"].get("resourceVersion") or "")))
        ev["_key"] = key
        return ev, patch

    def _filter(self, ev: Obj) -> bool:
        key = spam_key(ev)
        bucket: TokenBucket | None = self._spam.get_item(key)
        if bucket is None:
            bucket = TokenBucket(self.spam_qps, self.spam_burst, self.clock)
            self._spam.put(key, bucket)
        return not bucket.try_accept()

    def correlate(self, ev: Obj) -> CorrelateResult:
        aggregated, key = self._aggregate(ev)
        observed, patch = self._observe(aggregated, key)
        if self._filter(observed):
            return CorrelateResult(None)
        return CorrelateResult(observed, patch)

    def update_state(self, key: str, written: Obj) -> None:
        md = written.get("metadata") or {}
        self._observed.put(key, _Observed(int(written.get("count") or 1),
                                          str(written.get("firstTimestamp") or ""),
                                          str(md.get("name") or ""),
                                          str(md.get("resourceVersion") or "")))


class EventRecorder:
    """Records events for one component (`source.component`)."""

    def __init__(self, broadcaster: "EventBroadcaster", component: str, host: str = "") -> None:
        self.broadcaster = broadcaster
        self.component = component
        self.host = host

    def event(self, obj: Obj, type_: str, reason: str, message: str, *,
              ref: Obj | None = None) -> None:
        """Record an event about `obj` (or about `ref`, an ObjectReference). Never blocks."""
        if type_ not in (NORMAL, WARNING):
            log.error("unsupported event type %r", type_)
            return
        ref = ref if ref is not None else object_reference(obj)
        now = self.broadcaster.clock()
        ts = _rfc3339(now)
        source: Obj = {"component": self.component}
        if self.host:
            source["host"] = self.host
        ev: Obj = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{ref.get('name')}.{int(now * 1e9):x}",
                         "namespace": ref.get("namespace") or "default"},
            "involvedObject": ref, "reason": reason, "message": message,
            "firstTimestamp": ts, "lastTimestamp": ts, "count": 1, "type": type_,
            "source": source, "reportingComponent": self.component,
            "reportingInstance": self.host}
        self.broadcaster.action(ev)

    def eventf(self, obj: Obj, type_: str, reason: str, fmt: str, *args: Any) -> None:
        self.event(obj, type_, reason, fmt % args if args else fmt)


class EventBroadcaster:
    """Queues events from its recorders and writes them, one at a time, in a task."""

    def __init__(self, client: Any, *, clock: Callable[[], float] = time.time,
                 max_queued: int = MAX_QUEUED_EVENTS, retry_sleep: float = 2.0,
                 max_tries: int = MAX_TRIES_PER_EVENT,
                 correlator: EventCorrelator | None = None) -> None:
        self.client = client
        self.clock = clock
        self.max_queued = max_queued
        self.retry_sleep = retry_sleep
        self.max_tries = max_tries
        self.correlator = correlator or EventCorrelator(clock)
        self._queue: collections.deque[Obj] = collections.deque()
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0
        self.written = 0

    def new_recorder(self, component: str, host: str = "") -> EventRecorder:
        return EventRecorder(self, component, host)

    def action(self, ev: Obj) -> None:
        if len(self._queue) >= self.max_queued:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:  # one line per burst, not per event
                log.warning("unable to record event: too many queued events, dropped %s %s "
                            "(%d dropped so far)", ev.get("reason"), ev.get("message"),
                            self.dropped)
            return
        self._queue.append(ev)
        self._idle.clear()
        self._wakeup.set()

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> asyncio.Task[None]:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(),
                                                                name="event broadcaster")
        return self._task

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued event has been handled."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    async def shutdown(self, timeout: float = 2.0) -> None:
        """Write what is queued (for at most `timeout` seconds), then stop."""
        if self._task is not None:
            await self.flush(timeout)
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            while not self._queue:
                self._idle.set()
                self._wakeup.clear()
                await self._wakeup.wait()
            ev = self._queue.popleft()
            try:
                await self.record_to_sink(ev)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("recording event failed")

    async def record_to_sink(self, ev: Obj) -> None:
        result = self.correlator.correlate(ev)
        if result.event is None:
            return
        tries = 0
        while not await self._record(result.event, result.patch):
            tries += 1
            if tries >= self.max_tries:
                log.error("unable to write event %s (retry limit exceeded)",
                          result.event["metadata"].get("name"))
                return
            await asyncio.sleep(self.retry_sleep * (random.random() if tries == 1 else 1.0))

    async def _record(self, ev: Obj, patch: Obj | None) -> bool:
        key = ev.get("_key", "")
        body = {k: v for k, v in ev.items() if k != "_key"}
        ns = body["metadata"].get("namespace") or "default"
        path = f"/api/v1/namespaces/{ns}/events"
        try:
            written = None
            if patch is not None:
                try:
                    written = await self.client.patch(f"{path}/{body['metadata']['name']}",
                                                      patch, "strategic")
                except NotFound:
                    written = None
            if written is None:
                body["metadata"] = {k: v for k, v in body["metadata"].items()
                                    if k != "resourceVersion"}
                written = await self.client.create(path, body)
        except (AlreadyExists, ApiError) as e:
            if isinstance(e, AlreadyExists) or e.has_cause("NamespaceTerminating"):
                log.debug("event %s not written: %s", body["metadata"].get("name"), e)
            elif e.code >= 500 or e.code == 429:
                return False  # the server may recover: retry
            else:
                log.error("server rejected event %s: %s", body["metadata"].get("name"), e)
            return True
        except asyncio.CancelledError:
            raise
        except Exception as e:  # transport errors: keep trying
            log.debug("event %s: %s", body["metadata"].get("name"), e)
            return False
        self.written += 1
        self.correlator.update_state(key, written)
        return True


class FakeRecorder(EventRecorder):
    """Keeps events as `"<type> <reason> <message>"` strings (client-go's FakeRecorder)."""

    def __init__(self, component: str = "fake") -> None:
        self.component = component
        self.host = ""
        self.events: list[str] = []
        self.objects: list[Obj] = []

    def event(self, obj: Obj, type_: str, reason: str, message: str, *,
              ref: Obj | None = None) -> None:
        self.events.append(f"{type_} {reason} {message}")
        self.objects.append(ref if ref is not None else object_reference(obj))


__all__ = ["EventBroadcaster", "EventRecorder", "EventCorrelator", "FakeRecorder",
           "object_reference", "NORMAL", "WARNING", "event_key"]
