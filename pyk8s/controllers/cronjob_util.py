"""The pure parts of the CronJob controller (upstream's `pkg/controller/cronjob/utils.go`
and robfig/cron's `ParseStandard`, on top of croniter).

- Schedules: five fields (minute hour day-of-month month day-of-week; day-of-month and
  day-of-week OR'ed when both are restricted), the descriptors `@yearly` / `@annually` /
  `@monthly` / `@weekly` / `@daily` / `@midnight` / `@hourly`, `@every <duration>`, and a
  leading `TZ=<zone>` or `CRON_TZ=<zone>` (spec.timeZone becomes such a prefix).
  `Schedule.next(t)` is the first time strictly after `t` (whole seconds).
- `most_recent_schedule_time`: from the later of creationTimestamp and lastScheduleTime
  (and, when asked, now - startingDeadlineSeconds), the latest schedule time not after now
  and upstream's estimate of how many were missed (more than 100 is warned about).
- Job names: `<cronjob>-<scheduled time in minutes since the epoch>`; the Job carries the
  jobTemplate's labels, annotations and spec, the annotation
  `batch.kubernetes.io/cronjob-scheduled-timestamp` (RFC 3339 in the CronJob's time zone)
  and a controller reference to the CronJob.
"""
from __future__ import annotations

import copy
import re
import zoneinfo
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any

from croniter import croniter

from pyk8s.api.meta import parse_time

Obj = dict[str, Any]

SCHEDULED_TIMESTAMP_ANNOTATION = "batch.kubernetes.io/cronjob-scheduled-timestamp"
NEXT_SCHEDULE_DELTA = 0.1           # upstream's nextScheduleDelta (100 ms)
TOO_MANY_MISSED = 100

_DESCRIPTORS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
                "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
                "@hourly": "0 * * * *"}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def go_duration(text: str) -> float:
    """Seconds of a Go duration string ("1h30m", "90s")."""
    pos, total = 0, 0.0
    if not text:
        raise ValueError("empty duration")
    while pos < len(text):
        m = _DURATION_PART.match(text, pos)
        if m is None:
            raise ValueError(f"invalid duration {text!r}")
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    return total


def load_zone(name: str) -> tzinfo:
    if name in ("UTC", ""):
        return timezone.utc
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as e:
        raise ValueError(f"unknown time zone {name}") from e


@dataclass(frozen=True)
class Schedule:
    """A parsed schedule (robfig/cron's SpecSchedule or ConstantDelaySchedule)."""
    expr: str
    tz: tzinfo
    every: float | None = None

    def next(self, t: datetime) -> datetime:
        """The first activation strictly after `t`."""
        t = t.replace(microsecond=0)
        if self.every is not None:
            return t + timedelta(seconds=self.every)
        nxt: datetime = croniter(self.expr, t.astimezone(self.tz)).get_next(datetime)
        return nxt.astimezone(timezone.utc)

    def prev_or_at(self, t: datetime) -> datetime:
        """The latest activation not after `t` (cron expressions only)."""
        start = t.replace(microsecond=0) + timedelta(seconds=1)
        prev: datetime = croniter(self.expr, start.astimezone(self.tz)).get_prev(datetime)
        return prev.astimezone(timezone.utc)


def parse_schedule(spec: str) -> Schedule:
    """robfig/cron's ParseStandard; ValueError with a reason when invalid."""
    spec = spec.strip()
    tz: tzinfo = timezone.utc
    if spec.startswith("TZ=") or spec.startswith("CRON_TZ="):
        head, _, spec = spec.partition(" ")
        tz = load_zone(head.split("=", 1)[1])
        spec = spec.strip()
    if spec.startswith("@every"):
        delay = go_duration(spec[len("@every"):].strip())
        if delay < 1:
            delay = 1.0
        return Schedule(spec, tz, float(int(delay)))
    if spec.startswith("@"):
        if spec not in _DESCRIPTORS:
            raise ValueError(f"unrecognized descriptor: {spec}")
        spec = _DESCRIPTORS[spec]
    fields = spec.split()
    if len(fields) != 5:
        raise ValueError(f"expected exactly 5 fields, found {len(fields)}: {spec}")
    if not croniter.is_valid(spec):
        raise ValueError(f"invalid schedule: {spec}")
    return Schedule(spec, tz)


def format_schedule(cj: Obj) -> str:
    """The schedule with spec.timeZone as a `TZ=` prefix (upstream's formatSchedule)."""
    spec = cj.get("spec") or {}
    schedule = str(spec.get("schedule") or "")
    tz = spec.get("timeZone")
    if tz is not None and not schedule.startswith(("TZ=", "CRON_TZ=")):
        return f"TZ={tz} {schedule}"
    return schedule


@dataclass
class Missed:
    earliest: datetime
    most_recent: datetime | None
    count: int


def most_recent_schedule_time(cj: Obj, now: datetime, schedule: Schedule,
                              include_starting_deadline: bool) -> Missed:
    """upstream's mostRecentScheduleTime; ValueError for schedules that never repeat."""
    md, spec = cj.get("metadata") or {}, cj.get("spec") or {}
    earliest = parse_time(md.get("creationTimestamp")) or now
    last = parse_time((cj.get("status") or {}).get("lastScheduleTime"))
    if last is not None:
        earliest = last
    deadline = spec.get("startingDeadlineSeconds")
    if include_starting_deadline and deadline is not None:
        scheduling_deadline = now - timedelta(seconds=int(deadline))
        if scheduling_deadline > earliest:
            earliest = scheduling_deadline
    t1 = schedule.next(earliest)
    t2 = schedule.next(t1)
    if now < t1:
        return Missed(earliest, None, 0)
    if now < t2:
        return Missed(earliest, t1, 1)
    between = round((t2 - t1).total_seconds())
    if between < 1:
        raise ValueError("time difference between two schedules is less than 1 second")
    missed = int((now - t1).total_seconds()) // between + 1
    if schedule.every is not None:
        most_recent = t1 + timedelta(seconds=(missed - 1) * between)
    else:
        most_recent = max(schedule.prev_or_at(now), t1)
    return Missed(earliest, most_recent, missed)


def next_schedule_delay(cj: Obj, now: datetime, schedule: Schedule) -> float:
    """Seconds until the next activation after the most recent one (+100 ms)."""
    try:
        m = most_recent_schedule_time(cj, now, schedule, False)
        base = m.most_recent or m.earliest
    except ValueError:
        base = now
    return (schedule.next(base) - now).total_seconds() + NEXT_SCHEDULE_DELTA


def job_name(cj: Obj, scheduled: datetime) -> str:
    return f"{(cj.get('metadata') or {}).get('name')}-{int(scheduled.timestamp()) // 60}"


def go_rfc3339(t: datetime) -> str:
    """Go's time.RFC3339: `Z` for UTC, else the numeric offset."""
    off = t.utcoffset()
    if off is None or off == timedelta(0):
        return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return t.replace(microsecond=0).isoformat()


def job_from_template(cj: Obj, scheduled: datetime) -> Obj:
    """upstream's getJobFromTemplate2."""
    md, spec = cj.get("metadata") or {}, cj.get("spec") or {}
    template = spec.get("jobTemplate") or {}
    tmd = template.get("metadata") or {}
    tz = load_zone(str(spec.get("timeZone") or "UTC"))
    annotations = dict(tmd.get("annotations") or {})
    annotations[SCHEDULED_TIMESTAMP_ANNOTATION] = go_rfc3339(scheduled.astimezone(tz))
    job_md: Obj = {"name": job_name(cj, scheduled), "annotations": annotations,
                   "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob",
                                        "name": md.get("name"), "uid": md.get("uid"),
                                        "controller": True, "blockOwnerDeletion": True}]}
    if tmd.get("labels"):
        job_md["labels"] = dict(tmd["labels"])
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": job_md,
            "spec": copy.deepcopy(template.get("spec") or {})}


__all__ = ["Schedule", "parse_schedule", "format_schedule", "most_recent_schedule_time",
           "next_schedule_delay", "job_name", "job_from_template", "go_rfc3339",
           "SCHEDULED_TIMESTAMP_ANNOTATION", "TOO_MANY_MISSED", "Missed"]
