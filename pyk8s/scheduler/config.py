"""KubeSchedulerConfiguration (kubescheduler.config.k8s.io/v1), the parts pyk8s uses:
percentageOfNodesToScore, and profiles by schedulerName with plugins enabled / disabled
per extension point (filter, score, multiPoint; `*` disables all defaults), score weights
and pluginConfig args."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from pyk8s.scheduler.framework import Framework, Plugin
from pyk8s.scheduler.plugins import DEFAULT_FILTERS, DEFAULT_SCORES, REGISTRY

Obj = dict[str, Any]
DEFAULT_SCHEDULER_NAME = "default-scheduler"


class ConfigError(ValueError):
    pass


@dataclass
class Profile:
    scheduler_name: str = DEFAULT_SCHEDULER_NAME
    filters: list[str] = field(default_factory=lambda: list(DEFAULT_FILTERS))
    scores: list[tuple[str, int]] = field(default_factory=lambda: list(DEFAULT_SCORES))
    args: dict[str, Obj] = field(default_factory=dict)
    percentage_of_nodes_to_score: int = 0


@dataclass
class SchedulerConfig:
    profiles: list[Profile] = field(default_factory=lambda: [Profile()])
    percentage_of_nodes_to_score: int = 0

    def frameworks(self) -> dict[str, Framework]:
        return {p.scheduler_name: build_framework(p, self.percentage_of_nodes_to_score)
                for p in self.profiles}


def _names(lst: Any) -> list[Obj]:
    return [x for x in (lst or []) if isinstance(x, dict) and x.get("name")]


def _apply(default: list[tuple[str, int]], point: Obj | None, multi: Obj | None,
           with_weights: bool) -> list[tuple[str, int]]:
    disabled: set[str] = set()
    enabled: list[Obj] = []
    for src in (multi, point):
        if not src:
            continue
        disabled |= {d["name"] for d in _names(src.get("disabled"))}
        enabled += _names(src.get("enabled"))
    out = [] if "*" in disabled else [(n, w) for n, w in default if n not in disabled]
    for e in enabled:
        name = e["name"]
        if name not in REGISTRY:
            raise ConfigError(f"plugin {name!r} is not registered")
        w = int(e.get("weight") or 0) or dict(DEFAULT_SCORES).get(name, 1)
        out = [(n, ww) for n, ww in out if n != name]
        out.append((name, w))
    return out


def parse_profile(d: Obj, percentage: int) -> Profile:
    plugins = d.get("plugins") or {}
    multi = plugins.get("multiPoint")
    filters = _apply([(n, 0) for n in DEFAULT_FILTERS], plugins.get("filter"), multi, False)
    scores = _apply(list(DEFAULT_SCORES), plugins.get("score"), multi, True)
    # multiPoint enables a plugin at every point it implements.
    filters = [(n, w) for n, w in filters if REGISTRY[n].has_filter]
    scores = [(n, w) for n, w in scores if REGISTRY[n].has_score]
    args = {}
    for pc in d.get("pluginConfig") or []:
        if pc.get("name"):
            args[pc["name"]] = pc.get("args") or {}
    return Profile(scheduler_name=d.get("schedulerName") or DEFAULT_SCHEDULER_NAME,
                   filters=[n for n, _ in filters], scores=scores, args=args,
                   percentage_of_nodes_to_score=int(d.get("percentageOfNodesToScore") or
                                                    percentage))


def parse_config(doc: Obj | None) -> SchedulerConfig:
    doc = doc or {}
    kind = doc.get("kind")
    if kind and kind != "KubeSchedulerConfiguration":
        raise ConfigError(f"kind {kind!r} is not KubeSchedulerConfiguration")
    pct = int(doc.get("percentageOfNodesToScore") or 0)
    if not 0 <= pct <= 100:
        raise ConfigError("percentageOfNodesToScore must be in [0, 100]")
    profiles = [parse_profile(p, pct) for p in doc.get("profiles") or []] or \
        [Profile(percentage_of_nodes_to_score=pct)]
    names = [p.scheduler_name for p in profiles]
    if len(set(names)) != len(names):
        raise ConfigError("duplicate profile schedulerName")
    return SchedulerConfig(profiles=profiles, percentage_of_nodes_to_score=pct)


def load_config(path: str | None) -> SchedulerConfig:
    if not path:
        return SchedulerConfig()
    with open(path) as f:
        return parse_config(yaml.safe_load(f))


def build_framework(p: Profile, percentage: int = 0) -> Framework:
    instances: dict[str, Plugin] = {}

    def get(name: str) -> Plugin:
        if name not in instances:
            instances[name] = REGISTRY[name](p.args.get(name))
        return instances[name]

    return Framework(p.scheduler_name, [get(n) for n in p.filters],
                     [(get(n), w) for n, w in p.scores],
                     p.percentage_of_nodes_to_score or percentage)
