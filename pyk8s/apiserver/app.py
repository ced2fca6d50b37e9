"""The API server: wiring of storage, watch cache, stores and HTTP routes."""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from aiohttp import web

from pyk8s.api import errors, schemas
from pyk8s.api.catalogue import Catalogue, ResourceInfo
from pyk8s.apiserver import discovery, negotiation as neg, requestinfo
from pyk8s.apiserver.admission import Attributes
from pyk8s.apiserver.admission.plugins import admission_chain, close_admission
from pyk8s.apiserver.admission.priority import ensure_system_priority_classes
from pyk8s.apiserver.audit import filter as audit_filter
from pyk8s.apiserver.authn import ANONYMOUS, Authenticator
from pyk8s.apiserver.authz import impersonation
from pyk8s.apiserver.authz.escalation import EscalationGuard
from pyk8s.apiserver.authz.rbac import RBAC_GROUP, RBACAuthorizer
from pyk8s.apiserver.authz.reconcile import reconcile_bootstrap_policy
from pyk8s.apiserver.authz.union import Union, build_authorizer
from pyk8s.apiserver.authz.attributes import (Decision, forbidden, forbidden_message,
                                              request_attributes)
from pyk8s.apiserver.handlers import ResourceHandler
from pyk8s.apiserver.kubernetesservice import KubernetesService
from pyk8s.apiserver.openapi import OpenAPIDocs
from pyk8s.apiserver.responses import json_response, status_response
from pyk8s.registry.service.alloc import ServiceAllocators
from pyk8s.registry.service.allocator import IPAllocator, PortAllocator
from pyk8s.registry.service.ranges import parse_port_range, parse_service_cidrs
from pyk8s.registry.service.repair import Repair
from pyk8s.registry.service.store import ServiceStore
from pyk8s.registry.store import Store
from pyk8s.registry.strategy import strategy_for
from pyk8s.storage.interface import Storage, StorageInternalError, StorageUnavailable
from pyk8s.verbosity import V
from pyk8s.watch.cache import WatchCache

log = logging.getLogger("pyk8s.apiserver")
_V3 = V(3)  # the request log's verbosity

VERSION_INFO = {
    "major": "1", "minor": schemas.API_LEVEL.split(".")[1],
    "gitVersion": f"v{schemas.API_LEVEL}.0+pyk8s", "gitCommit": "pyk8s",
    "gitTreeState": "clean", "buildDate": "2026-11-23T00:00:00Z",
    "goVersion": "python3.11", "compiler": "cpython", "platform": "linux/amd64",
}

_V2_PROTO_STUB = bytes.fromhex("0a03322e3012150a0a4b756265726e6574657312077631" "2e33322e30")
_SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


@dataclass
class ServerConfig:
    server_address: str = "127.0.0.1:6443"
    min_request_timeout: float = 1800.0
    bookmark_interval: float = 15.0
    watch_cache_size: int = 5000
    compaction_interval: float = 300.0  # upstream compacts every 5 minutes
    disabled_admission_plugins: tuple[str, ...] = ()  # --disable-admission-plugins
    # Services: cluster IPs from the first CIDR, node ports from the port range.
    service_cluster_ip_range: str = "10.96.0.0/12"  # --service-cluster-ip-range
    service_node_port_range: str = "30000-32767"  # --service-node-port-range
    service_repair_interval: float = 180.0  # upstream repairs allocations every 3 minutes
    service_repair_min_age: float = 60.0  # a key nobody holds is freed once this old
    # The `default/kubernetes` Service; its endpoints are `advertise_address` (none if "")
    # and the port of `server_address`.
    kubernetes_service: bool = True
    advertise_address: str = ""  # --advertise-address
    endpoint_reconcile_interval: float = 10.0
    # Connections to kubelets (podproxy.py): --kubelet-certificate-authority verifies their
    # serving certificates ("": not verified); the client certificate the server presents.
    kubelet_certificate_authority: str = ""
    kubelet_client_certificate: str = ""
    kubelet_client_key: str = ""
    # Authorization (with authentication on): --authorization-mode, --anonymous-auth,
    # --authorization-webhook-config-file and its cache TTLs.
    authorization_modes: tuple[str, ...] = ("Node", "RBAC")
    anonymous_auth: bool = True
    authorization_webhook_config_file: str = ""
    authorization_webhook_cache_authorized_ttl: float = 300.0
    authorization_webhook_cache_unauthorized_ttl: float = 30.0
    # The audit log (pyk8s/apiserver/audit): on with both a policy file and a log path.
    audit_policy_file: str = ""  # --audit-policy-file
    audit_log_path: str = ""  # --audit-log-path ("-": standard output)
    audit_log_maxsize: int = 0  # --audit-log-maxsize, megabytes (0: lumberjack's 100)
    audit_log_maxbackup: int = 0  # --audit-log-maxbackup (0: keep all)
    audit_log_maxage: int = 0  # --audit-log-maxage, days (0: keep all)


class APIServer:
    def __init__(self, storage: Storage, config: ServerConfig,
                 catalogue: Catalogue | None = None,
                 authn: Authenticator | None = None) -> None:
        """`authn` None (or without static tokens) serves every request unauthenticated."""
        self.storage = storage
        self.config = config
        self.authn = authn
        if authn is not None:
            authn.sa_uid = self._service_account_uid
        self.catalogue = catalogue or Catalogue()
        self.cache = WatchCache(storage, window_size=config.watch_cache_size)
        self.stores: dict[tuple[str, str, str], Store] = {}
        from pyk8s.apiserver.crd import CRDController
        self.crds = CRDController(self)
        self.openapi = OpenAPIDocs(self.catalogue, schema_provider=self.crds.schema_for)
        self.resources = ResourceHandler(self)
        from pyk8s.apiserver.podproxy import PodProxy
        self.pod_proxy = PodProxy(self)
        self.admission = admission_chain(self)
        self.rbac = RBACAuthorizer(self.cache, {
            plural: self._info(RBAC_GROUP, "v1", plural).storage_prefix
            for plural in ("roles", "rolebindings", "clusterroles", "clusterrolebindings")})
        # None without authentication (--insecure-http, in-process tests): nothing to check.
        self.authorizer: Union | None = None
        if authn is not None and authn.enabled:
            self.authorizer = build_authorizer(self, list(config.authorization_modes))
        # None (no middleware at all) unless a policy and a log path are configured.
        self.audit = audit_filter.from_config(
            config.audit_policy_file, config.audit_log_path, config.audit_log_maxsize,
            config.audit_log_maxbackup, config.audit_log_maxage)
        self.ready = False
        self._compactor: asyncio.Task[None] | None = None
        service_ranges = parse_service_cidrs(config.service_cluster_ip_range)
        if len(service_ranges) > 1:
            log.warning("pyk8s allocates single-stack cluster IPs: the secondary service "
                        "range %s is not used", service_ranges[1])
        self.service_allocators = ServiceAllocators(
            IPAllocator(service_ranges[0], storage, self.cache),
            PortAllocator(parse_port_range(config.service_node_port_range), storage,
                          self.cache))
        services_info = self.catalogue.lookup("", "v1", "services")
        assert services_info is not None
        self.service_repair = Repair(storage, self.service_allocators,
                                     services_info.storage_prefix,
                                     min_age=config.service_repair_min_age)
        self._repairer: asyncio.Task[None] | None = None
        self.kubernetes_service: KubernetesService | None = None
        if config.kubernetes_service:
            self.kubernetes_service = KubernetesService(
                self, service_ranges[0].first(), config.advertise_address,
                int(config.server_address.rsplit(":", 1)[1]),
                interval=config.endpoint_reconcile_interval)

    def _info(self, group: str, version: str, plural: str) -> ResourceInfo:
        info = self.catalogue.lookup(group, version, plural)
        assert info is not None, (group, version, plural)
        return info

    def store(self, info: ResourceInfo) -> Store:
        key = (info.group, info.version, info.plural)
        s = self.stores.get(key)
        if s is None:
            custom = self.crds.strategy_for(info)
            if (info.group, info.kind) == ("", "Service") and custom is None:
                s = ServiceStore(info, self.storage, self.cache, self.service_allocators)
            else:
                s = Store(info, self.storage, self.cache, custom or strategy_for(info))
            s.admission = EscalationGuard(self.admission, self) \
                if info.group == RBAC_GROUP else self.admission
            s.attributes = Attributes
            if custom is not None:
                s.conversion = self.crds.conversion_for(info)
            self.stores[key] = s
        return s

    async def list_objects(self, group: str, version: str, plural: str,
                           namespace: str | None) -> list[dict[str, Any]]:
        """Current objects of a resource (in a namespace) from the watch cache."""
        store = self.stores.get((group, version, plural))
        if store is None:
            info = self.catalogue.lookup(group, version, plural)
            if info is None:
                return []
            store = self.store(info)
        info = store.info
        rc = self.cache.resource(info.storage_prefix)
        if not rc.objects:
            return []
        return rc.items(info.list_prefix(namespace))

    def is_namespaced(self, group: str, version: str, plural: str) -> bool:
        store = self.stores.get((group, version, plural))
        if store is not None:
            return store.info.namespaced
        info = self.catalogue.lookup(group, version, plural)
        return bool(info and info.namespaced)

    async def namespace_labels(self, namespace: str) -> dict[str, str]:
        ns_info = self.catalogue.lookup("", "v1", "namespaces")
        assert ns_info is not None
        obj = self.cache.resource(ns_info.storage_prefix).objects.get(ns_info.key(None, namespace))
        return dict(((obj or {}).get("metadata") or {}).get("labels") or {})

    async def service_account(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A ServiceAccount: the watch cache first, then storage (a just-created account),
        as upstream's lister-then-client service account getter."""
        info = self.catalogue.lookup("", "v1", "serviceaccounts")
        assert info is not None
        cached = self.cache.resource(info.storage_prefix).objects.get(info.key(namespace, name))
        if cached is not None:
            return cached
        try:
            return await self.store(info).get(namespace, name)
        except errors.NotFound:
            return None

    async def _service_account_uid(self, namespace: str, name: str) -> str | None:
        account = await self.service_account(namespace, name)
        return None if account is None else (account.get("metadata") or {}).get("uid")

    async def check_namespace(self, namespace: str) -> None:
        """A namespaced create needs an existing namespace that is not terminating."""
        ns_info = self.catalogue.lookup("", "v1", "namespaces")
        assert ns_info is not None
        key = ns_info.key(None, namespace)
        obj = self.cache.resource(ns_info.storage_prefix).objects.get(key)
        if obj is None:
            try:
                obj = await self.store(ns_info).get(None, namespace)
            except errors.NotFound:
                raise errors.NotFound.of("", "namespaces", namespace) from None
        if obj.get("metadata", {}).get("deletionTimestamp") or \
                (obj.get("status") or {}).get("phase") == "Terminating":
            msg = (f"unable to create new content in namespace {namespace} because it is "
                   "being terminated")
            raise errors.Forbidden(msg, details={
                "name": namespace, "kind": "namespaces",
                "causes": [{"reason": "NamespaceTerminating", "message": msg,
                            "field": "metadata.namespace"}]})

    async def start(self) -> None:
        await self.cache.start()
        if self.authorizer is not None:
            await self.authorizer.start()
        ns_info = self.catalogue.lookup("", "v1", "namespaces")
        assert ns_info is not None
        for name in _SYSTEM_NAMESPACES:
            try:
                await self.store(ns_info).create(None, {"metadata": {"name": name}})
            except errors.AlreadyExists:
                pass
        try:
            await reconcile_bootstrap_policy(self)
        except Exception:  # storage trouble: the next start reconciles again
            log.exception("reconciling the RBAC bootstrap policy failed")
        try:  # system-node-critical, system-cluster-critical
            await ensure_system_priority_classes(self)
        except Exception:
            log.exception("creating the system priority classes failed")
        await self.crds.start()
        try:
            await self.service_repair.run_once()
        except Exception:  # storage trouble: the periodic pass tries again
            log.exception("service allocation repair failed")
        if self.config.service_repair_interval > 0:
            self._repairer = asyncio.create_task(self.service_repair.run_periodically(
                self.config.service_repair_interval), name="service-allocation-repair")
        if self.kubernetes_service is not None:
            await self.kubernetes_service.start()
        if self.config.compaction_interval > 0:
            self._compactor = asyncio.create_task(self._compact_periodically(), name="compactor")
        self.ready = True

    async def _compact_periodically(self) -> None:
        """Like upstream: every interval, compact history up to the revision that was current
        one interval ago, so watches can resume from anything newer."""
        previous = await self.storage.current_revision()
        while True:
            await asyncio.sleep(self.config.compaction_interval)
            try:
                if previous > 0:
                    await self.storage.compact(previous)
                previous = await self.storage.current_revision()
            except Exception:
                log.exception("compaction failed; will retry")

    def close_watches(self) -> None:
        self.ready = False
        self.cache.close_watchers("server shutting down")

    async def stop(self) -> None:
        self.ready = False
        if self._compactor:
            self._compactor.cancel()
        if self._repairer:
            self._repairer.cancel()
        if self.kubernetes_service is not None:
            await self.kubernetes_service.stop()
        await self.crds.stop()
        await close_admission(self.admission)
        if self.authorizer is not None:
            await self.authorizer.close()
        await self.pod_proxy.close()
        await self.cache.stop()
        await self.storage.close()
        if self.audit is not None:
            self.audit.close()

    # -- HTTP ------------------------------------------------------------------------------
    def app(self) -> web.Application:
        # As upstream's handler chain: authentication, then audit (which sees forbidden
        # requests too), then impersonation and authorization.
        audit = [self._audit_mw] if self.audit is not None else []
        app = web.Application(middlewares=[self._log_mw, self._error_mw, self._authn_mw,
                                           *audit, self._authz_mw],
                              client_max_size=neg.MAX_BODY)
        if self.audit is not None:  # the Audit-Id header, long-running requests' start
            app.on_response_prepare.append(self.audit.on_response_prepare)
        r = app.router
        for p in ("/healthz", "/livez", "/readyz"):
            r.add_get(p, self._health)
            r.add_get(p + "/{check:.*}", self._health)
        r.add_get("/version", self._version)
        r.add_get("/version/", self._version)
        r.add_get("/openapi/v2", self._openapi_v2)
        r.add_get("/openapi/v3", self._openapi_v3_index)
        r.add_get("/openapi/v3/", self._openapi_v3_index)
        r.add_get("/openapi/v3/{gv:.+}", self._openapi_v3_doc)
        r.add_route("*", "/{tail:.*}", self._api)
        return app

    @web.middleware
    async def _log_mw(self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        start = time.perf_counter()
        status = 500
        try:
            resp = await handler(request)
            status = resp.status
            return resp
        finally:
            if log.isEnabledFor(_V3):  # upstream's httplog: V(3)
                log.log(_V3, "%s %s %d %.1fms", request.method, request.path_qs, status,
                        (time.perf_counter() - start) * 1000)

    @web.middleware
    async def _error_mw(self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        try:
            return await handler(request)
        except errors.ApiError as e:
            return status_response(e)
        except StorageUnavailable as e:
            return status_response(errors.ServiceUnavailable(f"storage unavailable: {e}"))
        except StorageInternalError as e:  # a stored value cannot be read (encryption key)
            return status_response(errors.InternalError.of(str(e)))
        except web.HTTPException as e:
            if e.status == 413:
                return status_response(errors.RequestEntityTooLarge(
                    f"Request entity too large: limit is {neg.MAX_BODY}"))
            raise
        except (asyncio.CancelledError, ConnectionResetError):
            raise
        except Exception as e:  # a bug: report it as upstream does, keep serving
            log.exception("internal error serving %s %s", request.method, request.path)
            return status_response(errors.InternalError(f"Internal error occurred: {e!r}"))

    @web.middleware
    async def _authn_mw(self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        """Sets request["user"] (the authenticated UserInfo): a bearer token, else a client
        certificate, else (`--anonymous-auth`) system:anonymous. A bad token is a 401."""
        if self.authn is not None and self.authn.enabled:
            auth = request.headers.get("Authorization", "")
            token = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
            if token:
                user = await self.authn.authenticate(token)
            else:
                user = self.authn.authenticate_request_certificate(request)
                if user is None and self.config.anonymous_auth:
                    user = ANONYMOUS
            if user is None:
                err = errors.Unauthorized("Unauthorized")
                if self.audit is not None:
                    self.audit.failed_authentication(request, err)
                raise err
            request["user"] = user
        return await handler(request)

    @web.middleware
    async def _audit_mw(self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        """The audit log's events (pyk8s/apiserver/audit/filter.py); only when configured."""
        assert self.audit is not None
        return await self.audit.middleware(request, handler)

    @web.middleware
    async def _authz_mw(self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        """Impersonation (request["user"] becomes the impersonated user, the authenticated
        one moves to request["impersonator"]), then authorization."""
        user = request.get("user")
        if user is None or self.authorizer is None:
            return await handler(request)
        if impersonation.requested(request.headers):
            request["impersonator"] = user
            user = request["user"] = await impersonation.impersonate(
                request.headers, user, self.authorizer)
        ri = self.request_info(request)
        a = request_attributes(ri, user, request)
        decision, reason = await self.authorizer.authorize(a)
        if decision != Decision.ALLOW:
            # The indexes may lag a write that just granted access: catch up once.
            await self.cache.consistent_rev()
            decision, reason = await self.authorizer.authorize(a)
        request["authz_decision"] = "allow" if decision == Decision.ALLOW else "forbid"
        request["authz_reason"] = reason
        if decision != Decision.ALLOW:
            log.info("forbidden: %s", forbidden_message(a))
            raise forbidden(a, reason)
        return await handler(request)

    def request_info(self, request: web.Request) -> requestinfo.RequestInfo:
        """The request's RequestInfo, parsed once."""
        ri = request.get("request_info")
        if ri is None:
            watch = False
            if request.method == "GET":
                try:
                    from pyk8s.api.meta import parse_bool
                    watch = parse_bool(request.query.get("watch"))
                except ValueError as e:
                    raise errors.BadRequest(str(e)) from None
            ri = request["request_info"] = requestinfo.parse(request.method, request.path,
                                                             watch)
        return ri

    async def _health(self, request: web.Request) -> web.Response:
        if request.path.startswith("/readyz") and not self.ready:
            return web.Response(status=500, text="[-]informer-sync failed: not ready\nreadyz check failed\n")
        return web.Response(text="ok", content_type="text/plain")

    async def _version(self, request: web.Request) -> web.Response:
        return json_response(VERSION_INFO)

    async def _openapi_v2(self, request: web.Request) -> web.Response:
        accept = request.headers.get("Accept", "")
        if "protobuf" in accept and "json" not in accept and "*/*" not in accept:
            # kubectl 1.27/1.28 insist on protobuf here; a minimal Document (swagger "2.0" +
            # info) lets them fall back to OpenAPI v3, which carries the real schemas.
            return web.Response(body=_V2_PROTO_STUB, headers={
                "Content-Type": "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"})
        return json_response(self.openapi.v2(), headers={"Vary": "Accept"})

    async def _openapi_v3_index(self, request: web.Request) -> web.Response:
        return json_response(self.openapi.v3_index())

    async def _openapi_v3_doc(self, request: web.Request) -> web.Response:
        gv = request.match_info["gv"].strip("/")
        doc = self.openapi.v3_document(gv)
        if doc is None:
            raise errors.NotFound("the server could not find the requested resource")
        current = self.openapi.v3_hash(gv) or ""
        asked = request.query.get("hash")
        if asked and asked != current:
            raise web.HTTPMovedPermanently(f"/openapi/v3/{gv}?hash={current}")
        etag = f'"{current}"'
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={"ETag": etag})
        headers = {"ETag": etag, "Vary": "Accept"}
        if asked:
            headers["Cache-Control"] = "public, immutable"
        return json_response(doc, headers=headers)

    async def _api(self, request: web.Request) -> web.StreamResponse:
        ri = self.request_info(request)
        if ri.is_resource:
            return await self.resources.handle(request, ri)
        return await self._discovery(request, ri.parts)

    async def _discovery(self, request: web.Request, parts: tuple[str, ...]) -> web.Response:
        if request.method != "GET":
            raise errors.NotFound("the server could not find the requested resource")
        cat = self.catalogue
        if parts in (("api",), ("apis",)):
            agg = _aggregated_version(request.headers.get("Accept"))
            if agg:
                body = discovery.aggregated(cat, parts == ("api",), agg)
                ct = f"application/json;g=apidiscovery.k8s.io;v={agg};as=APIGroupDiscoveryList"
                return json_response(body, content_type=ct, headers={"Vary": "Accept"})
            if parts == ("api",):
                return json_response(discovery.api_versions(self.config.server_address),
                                     headers={"Vary": "Accept"})
            return json_response(discovery.api_group_list(cat), headers={"Vary": "Accept"})
        doc: Any = None
        if len(parts) == 2 and parts[0] == "api":
            doc = discovery.api_resource_list(cat, "", parts[1])
        elif len(parts) == 2 and parts[0] == "apis":
            doc = discovery.api_group(cat, parts[1])
        elif len(parts) == 3 and parts[0] == "apis":
            doc = discovery.api_resource_list(cat, parts[1], parts[2])
        if doc is None:
            raise errors.NotFound("the server could not find the requested resource")
        return json_response(doc)


def _aggregated_version(accept: str | None) -> str | None:
    """The aggregated discovery version the client asks for first, if any."""
    for r in neg.parse_accept(accept):
        if r.params.get("as") == "APIGroupDiscoveryList" and \
                r.params.get("g") == "apidiscovery.k8s.io" and r.params.get("v") in ("v2", "v2beta1"):
            return r.params["v"]
        if r.type in (neg.JSON, "*/*", "application/*") and not r.params.get("as"):
            return None
    return None
