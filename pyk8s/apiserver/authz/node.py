"""The Node authorizer (`--authorization-mode Node`), as upstream's
plugin/pkg/auth/authorizer/node in 1.32 (AuthorizeNodeWithSelectors on, its default).

Only requests of node identities (`system:node:<name>` in `system:nodes`) get an opinion:

- secrets and configmaps (get, and list / watch of one object by name), persistent volume
  claims (get; update / patch of `status`), persistent volumes, resource claims and
  volume attachments (get) are allowed when the object reaches the node in the graph
  (nodegraph.py), and so is `serviceaccounts/<name>/token` (create);
- pods: get of a pod bound to the node, list / watch only with the field selector
  `spec.nodeName=<node>` (or of one related pod by name), create / delete (mirror pods),
  `status` update / patch and `eviction` create (NodeRestriction admission limits these to
  the node's own pods);
- nodes: get / list / watch of its own Node only, create / update / patch (of itself, by
  NodeRestriction), `status` update / patch;
- leases in `kube-node-lease` and CSINodes named as the node; resource slices of the node;
- anything else as upstream's `system:node` ClusterRole rules allow
  (bootstrappolicy.node_rules(), upstream's NodeRules()).

Everything not allowed is NO_OPINION (the next authorizer, RBAC, may still allow it), with
upstream's reasons. The graph is kept by watchers on the watch cache (pods, persistent
volumes, and volume attachments / resource slices when served), consumed in background
tasks and caught up synchronously before each graph question; before answering "no
relationship" the authorizer waits once for the cache to reach storage's revision, so a
pod bound an instant ago is seen.
"""
from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from pyk8s.api.selectors import SelectorError, parse_field_selector
from pyk8s.apiserver.authn import UserInfo
from pyk8s.apiserver.authz import nodegraph as g
from pyk8s.apiserver.authz.attributes import (Attributes, Decision, NonResourceRule,
                                              ResourceRule)
from pyk8s.apiserver.authz.bootstrappolicy import node_rules
from pyk8s.apiserver.authz.nodeidentity import node_identity
from pyk8s.apiserver.authz.rbac import rule_allows

if TYPE_CHECKING:
    from pyk8s.apiserver.app import APIServer
    from pyk8s.watch.cache import Watcher

log = logging.getLogger("pyk8s.apiserver.authz.node")
Obj = dict[str, Any]
Result = tuple[Decision, str]

NODE_LEASE_NAMESPACE = "kube-node-lease"
NO_OPINION: Result = (Decision.NO_OPINION, "")
ALLOW: Result = (Decision.ALLOW, "")
WATCH_QUEUE_SIZE = 100_000


def _field_equals(a: Attributes, field: str, value: str) -> bool:
    """The request's field selector has `field=value` (unparsable selectors have none)."""
    if not a.field_selector:
        return False
    try:
        selector = parse_field_selector(a.field_selector)
    except SelectorError:
        return False
    return any(r.field == field and r.op == "=" and r.value == value
               for r in selector.requirements)


# -- the populator (upstream's graph_populator.go) --------------------------------------------
Apply = Callable[[g.NodeGraph, Obj], None]


def _pod_bound(obj: Obj) -> bool:
    return bool((obj.get("spec") or {}).get("nodeName"))


def _set_pod(graph: g.NodeGraph, obj: Obj) -> None:
    graph.set_pod(obj)


def _delete_pod(graph: g.NodeGraph, obj: Obj) -> None:
    md = obj["metadata"]
    graph.delete_pod(md.get("namespace") or "", md["name"])


def _set_pv(graph: g.NodeGraph, obj: Obj) -> None:
    graph.set_pv(obj)


def _delete_pv(graph: g.NodeGraph, obj: Obj) -> None:
    graph.delete_pv(obj["metadata"]["name"])


def _spec_node(obj: Obj) -> str:
    return str((obj.get("spec") or {}).get("nodeName") or "")


def _set_attachment(graph: g.NodeGraph, obj: Obj) -> None:
    graph.set_volume_attachment(obj["metadata"]["name"], _spec_node(obj))


def _delete_attachment(graph: g.NodeGraph, obj: Obj) -> None:
    graph.delete_volume_attachment(obj["metadata"]["name"])


def _set_slice(graph: g.NodeGraph, obj: Obj) -> None:
    graph.set_resource_slice(obj["metadata"]["name"], _spec_node(obj))


def _delete_slice(graph: g.NodeGraph, obj: Obj) -> None:
    graph.delete_resource_slice(obj["metadata"]["name"])


def _everything(obj: Obj) -> bool:
    return True


# (group, version, plural, which objects matter, on add / update, on delete); resources the
# server does not serve are skipped.
_SOURCES: tuple[tuple[str, str, str, Callable[[Obj], bool], Apply, Apply], ...] = (
    ("", "v1", "pods", _pod_bound, _set_pod, _delete_pod),
    ("", "v1", "persistentvolumes", _everything, _set_pv, _delete_pv),
    ("storage.k8s.io", "v1", "volumeattachments", _everything, _set_attachment,
     _delete_attachment),
    ("resource.k8s.io", "v1beta1", "resourceslices", _everything, _set_slice, _delete_slice),
)


class _Feed:
    """One resource's watcher and what its events do to the graph."""

    def __init__(self, watcher: "Watcher", on_set: Apply, on_delete: Apply) -> None:
        self.watcher = watcher
        self.on_set = on_set
        self.on_delete = on_delete

    def apply(self, graph: g.NodeGraph, item: tuple[str, Obj, Any]) -> bool:
        """Apply one queued event; False when the watcher was closed."""
        type_, obj, ev = item
        if type_ == "CLOSED":
            return False
        if ev is not None:
            obj = ev.obj
        if type_ == "DELETED":
            self.on_delete(graph, obj)
        else:
            self.on_set(graph, obj)
        return True


class NodeAuthorizer:
    """Upstream's NodeAuthorizer over a graph kept from the API server's watch cache."""

    def __init__(self, server: "APIServer", rules: list[Obj] | None = None) -> None:
        self.server = server
        self.rules = node_rules() if rules is None else rules
        self.graph = g.NodeGraph()
        self._feeds: list[_Feed] = []
        self._restart = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._consumers: list[asyncio.Task[None]] = []

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        """Build the graph from the watch cache and follow it (after the cache started)."""
        if self._task is not None:
            return
        self._load()
        self._task = asyncio.create_task(self._supervise(), name="node-authorizer-graph")

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *self._consumers) if t is not None]
        for t in tasks:
            t.cancel()
        for t in tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass
        self._task = None
        self._consumers = []
        self._close_feeds()

    async def close(self) -> None:
        """The union authorizer's shutdown hook."""
        await self.stop()

    def _load(self) -> None:
        """A new graph from the cache's current objects, and watchers for what follows
        (synchronous: no event slips in between)."""
        self._close_feeds()
        cache = self.server.cache
        graph = g.NodeGraph()
        feeds: list[_Feed] = []
        for group, version, plural, matches, on_set, on_delete in _SOURCES:
            info = self.server.catalogue.lookup(group, version, plural)
            if info is None:
                continue
            prefix = info.storage_prefix
            for obj in cache.resource(prefix).objects.values():
                if matches(obj):
                    on_set(graph, obj)
            watcher = cache.watch(prefix, prefix, cache.processed_rev, matches, initial=[],
                                  queue_size=WATCH_QUEUE_SIZE)
            feeds.append(_Feed(watcher, on_set, on_delete))
        self.graph = graph
        self._feeds = feeds
        self._restart.clear()

    def _close_feeds(self) -> None:
        for feed in self._feeds:
            feed.watcher.close("node authorizer stopped following")
        self._feeds = []

    async def _supervise(self) -> None:
        while True:
            self._consumers = [asyncio.create_task(self._consume(f), name="node-graph-feed")
                               for f in self._feeds]
            await self._restart.wait()
            for t in self._consumers:
                t.cancel()
            reason = next((f.watcher.closed_reason for f in self._feeds
                           if f.watcher.closed_reason), "")
            if reason == "server shutting down":
                return
            log.info("node authorizer graph: a watch closed (%s); rebuilding", reason)
            while True:
                try:  # a reloading cache: wait until it has caught up again
                    await self.server.cache.consistent_rev()
                    self._load()
                    break
                except asyncio.CancelledError:
                    raise
                except Exception:  # storage unreachable meanwhile: try again
                    log.exception("node authorizer graph: rebuilding failed; retrying")
                    await asyncio.sleep(0.5)

    def _apply(self, feed: _Feed, item: tuple[str, Obj, Any]) -> bool:
        """Apply one queued event (a failure is logged and skipped); False when the
        watcher was closed: the graph is to be rebuilt."""
        try:
            ok = feed.apply(self.graph, item)
        except Exception:
            log.exception("node authorizer graph: applying %s failed", item[0])
            return True
        if not ok:
            self._restart.set()
        return ok

    async def _consume(self, feed: _Feed) -> None:
        queue = feed.watcher.queue
        while self._apply(feed, await queue.get()):
            pass

    def catch_up(self) -> None:
        """Apply whatever the watchers queued (the graph then is as current as the cache)."""
        for feed in self._feeds:
            queue = feed.watcher.queue
            while not queue.empty() and self._apply(feed, queue.get_nowait()):
                pass

    # -- Authorizer ---------------------------------------------------------------------------
    async def authorize(self, a: Attributes) -> Result:
        node, is_node = node_identity(a.user)
        if not is_node:
            return NO_OPINION
        if not node:
            return Decision.NO_OPINION, f'unknown node for user "{a.user.username}"'
        if a.resource_request:
            handler = _HANDLERS.get((a.api_group, a.resource))
            if handler is not None:
                return await handler(self, node, a)
        if any(rule_allows(a, rule) for rule in self.rules):
            return ALLOW
        return NO_OPINION

    def rules_for(self, user: UserInfo, namespace: str) -> tuple[
            list[ResourceRule], list[NonResourceRule], bool, str]:
        """Nodes' permissions are not enumerable (upstream's RulesFor)."""
        if node_identity(user)[1]:
            return [], [], True, "node authorizer does not support user rule resolution"
        return [], [], False, ""

    # -- the graph ------------------------------------------------------------------------------
    async def _related(self, node: str, vertex_type: str, a: Attributes) -> Result:
        """Upstream's authorize(): allowed when the named object reaches the node."""
        if not a.name:
            return Decision.NO_OPINION, "No Object name found"
        if self._task is None:  # not started by the server (tests): follow the cache now
            await self.start()
        if self._reaches(node, vertex_type, a):
            return ALLOW
        # A pod bound an instant ago may not have reached the graph: catch up with storage
        # once before saying no (denials are rare; this keeps them from being flakes).
        try:
            await self.server.cache.consistent_rev()
        except Exception:
            pass
        if self._reaches(node, vertex_type, a):
            return ALLOW
        log.debug("NODE DENY: %s", self.graph.why_not(node, vertex_type, a.namespace, a.name))
        return Decision.NO_OPINION, f"no relationship found between node '{node}' and this object"

    def _reaches(self, node: str, vertex_type: str, a: Attributes) -> bool:
        self.catch_up()
        return self.graph.has_path(node, vertex_type, a.namespace, a.name)

    # -- per resource ---------------------------------------------------------------------------
    async def _read_namespaced(self, node: str, vertex_type: str, a: Attributes) -> Result:
        """Secrets and configmaps: get, or list / watch of one object by name."""
        if a.verb not in ("get", "list", "watch"):
            return Decision.NO_OPINION, "can only read resources of this type"
        if a.subresource:
            return Decision.NO_OPINION, "cannot read subresource"
        if not a.namespace:
            return Decision.NO_OPINION, "can only read namespaced object of this type"
        return await self._related(node, vertex_type, a)

    async def _get(self, node: str, vertex_type: str, a: Attributes) -> Result:
        if a.verb != "get":
            return Decision.NO_OPINION, "can only get individual resources of this type"
        if a.subresource:
            return Decision.NO_OPINION, "cannot get subresource"
        return await self._related(node, vertex_type, a)

    async def _secret(self, node: str, a: Attributes) -> Result:
        return await self._read_namespaced(node, g.SECRET, a)

    async def _configmap(self, node: str, a: Attributes) -> Result:
        return await self._read_namespaced(node, g.CONFIGMAP, a)

    async def _pvc(self, node: str, a: Attributes) -> Result:
        if a.subresource == "status":
            if a.verb not in ("update", "patch"):
                return Decision.NO_OPINION, "can only get/update/patch this type"
            return await self._related(node, g.PVC, a)
        return await self._get(node, g.PVC, a)

    async def _pv(self, node: str, a: Attributes) -> Result:
        return await self._get(node, g.PV, a)

    async def _resource_claim(self, node: str, a: Attributes) -> Result:
        return await self._get(node, g.RESOURCE_CLAIM, a)

    async def _volume_attachment(self, node: str, a: Attributes) -> Result:
        return await self._get(node, g.VOLUME_ATTACHMENT, a)

    async def _service_account(self, node: str, a: Attributes) -> Result:
        """Tokens for the service accounts of pods on the node."""
        if a.verb != "create" or not a.name:
            return Decision.NO_OPINION, "can only create tokens for individual service accounts"
        if a.subresource != "token":
            return Decision.NO_OPINION, "can only create token subresource of serviceaccount"
        return await self._related(node, g.SERVICE_ACCOUNT, a)

    async def _lease(self, node: str, a: Attributes) -> Result:
        if a.verb not in ("get", "create", "update", "patch", "delete"):
            return Decision.NO_OPINION, ("can only get, create, update, patch, or delete a "
                                         "node lease")
        if a.namespace != NODE_LEASE_NAMESPACE:
            return Decision.NO_OPINION, (f'can only access leases in the '
                                         f'"{NODE_LEASE_NAMESPACE}" system namespace')
        # On create the name is not known here: NodeRestriction checks the object's.
        if a.verb != "create" and a.name != node:
            return Decision.NO_OPINION, ("can only access node lease with the same name as "
                                         "the requesting node")
        return ALLOW

    async def _csinode(self, node: str, a: Attributes) -> Result:
        if a.verb not in ("get", "create", "update", "patch", "delete"):
            return Decision.NO_OPINION, "can only get, create, update, patch, or delete a CSINode"
        if a.subresource:
            return Decision.NO_OPINION, "cannot authorize CSINode subresources"
        if a.verb != "create" and a.name != node:
            return Decision.NO_OPINION, ("can only access CSINode with the same name as the "
                                         "requesting node")
        return ALLOW

    async def _resource_slice(self, node: str, a: Attributes) -> Result:
        if a.subresource:
            return Decision.NO_OPINION, "cannot authorize ResourceSlice subresources"
        if a.verb == "create":  # NodeRestriction checks spec.nodeName
            return ALLOW
        if a.verb in ("get", "update", "patch", "delete"):
            return await self._related(node, g.RESOURCE_SLICE, a)
        if a.verb in ("watch", "list", "deletecollection"):
            if _field_equals(a, "spec.nodeName", node):
                return ALLOW
            return Decision.NO_OPINION, ("can only list/watch/deletecollection resourceslices "
                                         "with nodeName field selector")
        return Decision.NO_OPINION, ("only the following verbs are allowed for a "
                                     "ResourceSlice: get, watch, list, create, update, patch, "
                                     "delete, deletecollection")

    async def _node(self, node: str, a: Attributes) -> Result:
        if not a.subresource:
            if a.verb in ("create", "update", "patch"):  # NodeRestriction: only itself
                return ALLOW
            if a.verb in ("get", "list", "watch"):
                # The name, not the graph: a kubelet reads its Node before creating it.
                if a.name == node:
                    return ALLOW
                if not a.name:
                    return Decision.NO_OPINION, (f"node '{node}' cannot read all nodes, only "
                                                 "its own Node object")
                return Decision.NO_OPINION, (f"node '{node}' cannot read '{a.name}', only its "
                                             "own Node object")
        elif a.subresource == "status" and a.verb in ("update", "patch"):
            return ALLOW
        return NO_OPINION

    async def _pod(self, node: str, a: Attributes) -> Result:
        if not a.subresource:
            if a.verb == "get":
                return await self._get(node, g.POD, a)
            if a.verb in ("list", "watch"):
                if _field_equals(a, "spec.nodeName", node):
                    return ALLOW
                if a.name:  # one pod known to be on the node
                    return await self._related(node, g.POD, a)
                return Decision.NO_OPINION, ("can only list/watch pods with spec.nodeName "
                                             "field selector")
            if a.verb in ("create", "delete"):  # mirror pods: NodeRestriction
                return ALLOW
        elif a.subresource == "status" and a.verb in ("update", "patch"):
            return ALLOW
        elif a.subresource == "eviction" and a.verb == "create":
            return ALLOW
        return NO_OPINION


Handler = Callable[[NodeAuthorizer, str, Attributes], Awaitable[Result]]
_HANDLERS: dict[tuple[str, str], Handler] = {
    ("", "secrets"): NodeAuthorizer._secret,
    ("", "configmaps"): NodeAuthorizer._configmap,
    ("", "persistentvolumeclaims"): NodeAuthorizer._pvc,
    ("", "persistentvolumes"): NodeAuthorizer._pv,
    ("resource.k8s.io", "resourceclaims"): NodeAuthorizer._resource_claim,
    ("storage.k8s.io", "volumeattachments"): NodeAuthorizer._volume_attachment,
    ("", "serviceaccounts"): NodeAuthorizer._service_account,
    ("coordination.k8s.io", "leases"): NodeAuthorizer._lease,
    ("storage.k8s.io", "csinodes"): NodeAuthorizer._csinode,
    ("resource.k8s.io", "resourceslices"): NodeAuthorizer._resource_slice,
    ("", "nodes"): NodeAuthorizer._node,
    ("", "pods"): NodeAuthorizer._pod,
}
