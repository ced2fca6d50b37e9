"""The scheduler cache: nodes and the pods counted against them, bound or assumed.

A pod is *assumed* on its node when the scheduling cycle picks the node, before the bind
request returns, so the next cycle already sees it; the informer's update (spec.nodeName
set) confirms it; a failed bind forgets it. Assumed pods whose binding finished but whose
confirmation never came expire after `ttl` seconds (upstream: 30 s in older releases, kept
here as a safety net).
"""
from __future__ import annotations

import time
from typing import Any, Callable

from pyk8s.scheduler.framework import NodeInfo, PodInfo

Obj = dict[str, Any]


class _PodState:
    __slots__ = ("info", "node", "assumed", "binding_finished", "deadline")

    def __init__(self, info: PodInfo, node: str, assumed: bool) -> None:
        self.info = info
        self.node = node
        self.assumed = assumed
        self.binding_finished = False
        self.deadline = 0.0


class Cache:
    def __init__(self, ttl: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.clock = clock
        self.nodes: dict[str, NodeInfo] = {}
        self.pods: dict[str, _PodState] = {}
        self._list: list[NodeInfo] | None = None
        self.generation = 0
        # Names of the nodes whose pods changed, in order: plugins keeping aggregates over
        # all nodes (PodTopologySpread) replay it instead of rescanning every node. `epoch`
        # changes when the node set changes or the log is trimmed (aggregates rebuild).
        self.changes: list[str] = []
        self.epoch = 0
        # Cluster-wide tallies that let plugins skip whole scans.
        self.pods_with_affinity = 0
        self.pods_with_required_anti_affinity = 0
        self.image_nodes: dict[str, int] = {}    # image name → nodes that have it
        self.nodes_with_taints = 0
        self.nodes_unschedulable = 0

    def _images(self, ni: NodeInfo, sign: int) -> None:
        """Per-node tallies (images, taints, unschedulable) in or out."""
        if ni.taints:
            self.nodes_with_taints += sign
        if ni.unschedulable:
            self.nodes_unschedulable += sign
        for img in ni.images:
            n = self.image_nodes.get(img, 0) + sign
            if n <= 0:
                self.image_nodes.pop(img, None)
            else:
                self.image_nodes[img] = n

    def _tally(self, info: PodInfo, sign: int) -> None:
        if info.has_affinity:
            self.pods_with_affinity += sign
        if info.required_anti_affinity:
            self.pods_with_required_anti_affinity += sign

    def _changed(self, name: str) -> None:
        self.changes.append(name)
        if len(self.changes) > 100_000:
            self.changes = []
            self.epoch += 1

    # -- nodes ----------------------------------------------------------------------------
    def add_node(self, node: Obj) -> NodeInfo:
        name = node["metadata"]["name"]
        ni = self.nodes.get(name)
        if ni is None:
            ni = self.nodes[name] = NodeInfo(node)
            self._list = None
            self.epoch += 1
            self._images(ni, 1)
        else:
            had_node, old_labels = ni.node is not None, ni.labels
            if had_node:
                self._images(ni, -1)
            ni.set_node(node)
            self._images(ni, 1)
            if not had_node:
                self._list = None
            if not had_node or old_labels != ni.labels:
                self.epoch += 1
        self.generation += 1
        return ni

    update_node = add_node

    def remove_node(self, node: Obj) -> None:
        name = node["metadata"]["name"]
        ni = self.nodes.get(name)
        if ni is None:
            return
        if ni.node is not None:
            self._images(ni, -1)
        if ni.pods:
            ni.node = None  # pods still count until they go; the node is no longer listed
        else:
            del self.nodes[name]
        self._list = None
        self.epoch += 1
        self.generation += 1

    def node_list(self) -> list[NodeInfo]:
        """The nodes (with a Node object), in a stable order."""
        if self._list is None:
            self._list = [n for n in self.nodes.values() if n.node is not None]
        return self._list

    # -- pods -----------------------------------------------------------------------------
    def _node_for(self, name: str) -> NodeInfo:
        ni = self.nodes.get(name)
        if ni is None:
            ni = self.nodes[name] = NodeInfo(name=name)
        return ni

    def _remove_from_node(self, st: _PodState) -> None:
        ni = self.nodes.get(st.node)
        if ni is not None:
            if ni.remove_pod(st.info):
                self._tally(st.info, -1)
            self._changed(st.node)
            if ni.node is None and not ni.pods:
                del self.nodes[st.node]

    def assume(self, info: PodInfo, node: str) -> None:
        if info.key in self.pods:
            raise ValueError(f"pod {info.key} is in the cache already")
        self.pods[info.key] = _PodState(info, node, True)
        self._node_for(node).add_pod(info)
        self._tally(info, 1)
        self._changed(node)
        self.generation += 1

    def finish_binding(self, key: str) -> None:
        st = self.pods.get(key)
        if st is not None and st.assumed:
            st.binding_finished = True
            st.deadline = self.clock() + self.ttl

    def forget(self, key: str) -> None:
        st = self.pods.get(key)
        if st is not None and st.assumed:
            self._remove_from_node(st)
            del self.pods[key]
            self.generation += 1

    def is_assumed(self, key: str) -> bool:
        st = self.pods.get(key)
        return st is not None and st.assumed

    def add_pod(self, info: PodInfo) -> None:
        """A bound pod from the informer (confirms an assumed one)."""
        st = self.pods.get(info.key)
        if st is not None:
            self._remove_from_node(st)
        self.pods[info.key] = _PodState(info, info.node_name, False)
        self._node_for(info.node_name).add_pod(info)
        self._tally(info, 1)
        self._changed(info.node_name)
        self.generation += 1

    update_pod = add_pod

    def remove_pod(self, key: str) -> None:
        st = self.pods.pop(key, None)
        if st is not None:
            self._remove_from_node(st)
            self.generation += 1

    def cleanup_expired(self) -> list[str]:
        now = self.clock()
        gone = [k for k, st in self.pods.items()
                if st.assumed and st.binding_finished and st.deadline <= now]
        for k in gone:
            self.forget(k)
        return gone

    def snapshot(self) -> "Snapshot":
        return Snapshot(self.node_list(), self.generation, self)


class Snapshot:
    """The nodes as one scheduling cycle sees them.

    The cycle runs synchronously in the event loop (no await between the snapshot and the
    assume), so the cache cannot change under it and the snapshot shares the cache's
    NodeInfos instead of copying them (upstream copies because its informers run on other
    goroutines). Preemption works on clones (`NodeInfo.clone`)."""
    __slots__ = ("nodes", "generation", "_by_name", "cache")

    def __init__(self, nodes: list[NodeInfo], generation: int, cache: Cache | None = None) -> None:
        self.nodes = nodes
        self.generation = generation
        self.cache = cache
        self._by_name: dict[str, NodeInfo] | None = None

    def get(self, name: str) -> NodeInfo | None:
        if self._by_name is None:
            self._by_name = {n.name: n for n in self.nodes}
        return self._by_name.get(name)
