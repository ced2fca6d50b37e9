"""DefaultTolerationSeconds: pods tolerate not-ready / unreachable nodes for 300 s unless
they say otherwise (mutating)."""
from __future__ import annotations

from typing import Any

from pyk8s.apiserver.admission.chain import CREATE, Attributes, Plugin

NOT_READY = "node.kubernetes.io/not-ready"
UNREACHABLE = "node.kubernetes.io/unreachable"
DEFAULT_SECONDS = 300


def _tolerates(tolerations: list[dict[str, Any]], key: str) -> bool:
    for t in tolerations:
        if t.get("effect") not in (None, "", "NoExecute"):
            continue
        if t.get("key") == key or (not t.get("key") and t.get("operator") == "Exists"):
            return True
    return False


class DefaultTolerationSeconds(Plugin):
    name = "DefaultTolerationSeconds"
    mutating = True

    def __init__(self, not_ready_seconds: int = DEFAULT_SECONDS,
                 unreachable_seconds: int = DEFAULT_SECONDS) -> None:
        self.seconds = {NOT_READY: not_ready_seconds, UNREACHABLE: unreachable_seconds}

    def handles(self, attrs: Attributes) -> bool:
        return attrs.operation == CREATE and attrs.group == "" and \
            attrs.resource == "pods" and not attrs.subresource and attrs.object is not None

    async def admit(self, attrs: Attributes) -> None:
        spec = attrs.object.setdefault("spec", {})  # type: ignore[union-attr]
        tolerations = list(spec.get("tolerations") or [])
        added = False
        for key in (NOT_READY, UNREACHABLE):
            if not _tolerates(tolerations, key):
                tolerations.append({"key": key, "operator": "Exists", "effect": "NoExecute",
                                    "tolerationSeconds": self.seconds[key]})
                added = True
        if added:
            spec["tolerations"] = tolerations
