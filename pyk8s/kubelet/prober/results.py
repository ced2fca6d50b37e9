"""Probe results per container instance (upstream prober/results): the latest result of
each probe type, keyed by the runtime's container id; a change calls `on_update`."""
from __future__ import annotations

import enum
from typing import Callable


class Result(enum.Enum):
    UNKNOWN = "unknown"
    SUCCESS = "success"
    FAILURE = "failure"


class ResultsManager:
    def __init__(self, on_update: Callable[[str], None] | None = None) -> None:
        self._results: dict[str, Result] = {}      # container id -> result
        self.on_update = on_update                 # called with the pod's uid

    def get(self, container_id: str) -> Result | None:
        return self._results.get(container_id)

    def set(self, container_id: str, result: Result, pod_uid: str) -> None:
        if self._results.get(container_id) != result:
            self._results[container_id] = result
            if self.on_update is not None:
                self.on_update(pod_uid)

    def remove(self, container_id: str) -> None:
        self._results.pop(container_id, None)
