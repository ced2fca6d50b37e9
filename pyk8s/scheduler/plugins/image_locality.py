"""ImageLocality: favours nodes that already have the pod's images, by size, scaled by how
many nodes have each image (upstream's thresholds: 23 MB to 1000 MB per container)."""
from __future__ import annotations

from pyk8s.scheduler.framework import MAX_NODE_SCORE, CycleState, NodeInfo, Plugin, PodInfo

MB = 1024 * 1024
MIN_THRESHOLD = 23 * MB
MAX_CONTAINER_THRESHOLD = 1000 * MB


def normalized_image_name(name: str) -> str:
    last = name.rsplit("/", 1)[-1]
    if ":" not in last and "@" not in last:
        name += ":latest"
    return name


def image_score(sum_scores: int, num_containers: int) -> int:
    max_threshold = MAX_CONTAINER_THRESHOLD * max(1, num_containers)
    s = min(max(sum_scores, MIN_THRESHOLD), max_threshold)
    return MAX_NODE_SCORE * (s - MIN_THRESHOLD) // (max_threshold - MIN_THRESHOLD)


class ImageLocality(Plugin):
    name = "ImageLocality"
    has_score = True

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> bool:
        images = [normalized_image_name(c.get("image") or "")
                  for c in (pod.spec.get("initContainers") or []) + (pod.spec.get("containers") or [])]
        spread: dict[str, int] = {}
        cache = getattr(state.get("snapshot"), "cache", None)
        for img in images:
            n = cache.image_nodes.get(img, 0) if cache is not None else \
                sum(1 for nd in nodes if img in nd.images)
            if n:
                spread[img] = n
        if not spread:
            return False  # no node has any of the images: every score would be 0
        state["il.spread"] = spread
        state["il.total"] = len(nodes)
        state["il.n"] = len(images)
        return True

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        spread, total = state["il.spread"], state["il.total"]
        s = 0
        for img, n in spread.items():
            size = node.images.get(img)
            if size:
                s += int(size * n / total)
        return image_score(s, state["il.n"])
