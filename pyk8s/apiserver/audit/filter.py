"""The audit HTTP filter: upstream's WithAuditInit, WithAudit and
WithFailedAuthenticationAudit (k8s.io/apiserver/pkg/endpoints/filters).

It runs after authentication and before impersonation and authorization, so the policy
sees the authenticated user and forbidden requests are audited too. Per request: the
policy gives the level (None: no event) and the omitted stages; the event is written at
RequestReceived before the handler, at ResponseStarted when a long-running request's
(watch, exec / attach / portforward / log / proxy) response starts, at ResponseComplete
when the handler is done, or at Panic when it raised something that is not an API error.
Every response of an audited server carries the `Audit-Id` header (the client's own
`Audit-ID` when it sent one). A request failing authentication gets one ResponseStarted
event with no user.
"""
from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any, Awaitable, Callable

import orjson
import yaml
from aiohttp import web

from pyk8s.api import errors
from pyk8s.api.meta import parse_bool
from pyk8s.apiserver import negotiation as neg, requestinfo
from pyk8s.apiserver.audit.backend import LogBackend, ensure_log_file
from pyk8s.apiserver.audit.event import (ANNOTATION_DECISION, ANNOTATION_REASON,
                                         HEADER_AUDIT_ID, AuditEvent, source_ips, user_info,
                                         without_managed_fields)
from pyk8s.apiserver.audit.policy import (STAGE_PANIC, STAGE_REQUEST_RECEIVED,
                                          STAGE_RESPONSE_COMPLETE, STAGE_RESPONSE_STARTED,
                                          Level, Policy, RequestAuditConfig,
                                          load_policy_file)
from pyk8s.apiserver.authn import UserInfo
from pyk8s.apiserver.authz.attributes import RequestAttributes
from pyk8s.storage.interface import StorageInternalError, StorageUnavailable

log = logging.getLogger("pyk8s.apiserver.audit")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Upstream's BasicLongRunningRequestCheck as kube-apiserver configures it.
LONG_RUNNING_VERBS = frozenset({"watch", "proxy"})
LONG_RUNNING_SUBRESOURCES = frozenset({"attach", "exec", "proxy", "log", "portforward"})

# request[...] keys: the request's audit state, or its audit ID alone (level None).
STATE_KEY = "audit_state"
ID_KEY = "audit_id"
# Others may add event annotations here (a dict), as upstream's AddAuditAnnotation.
ANNOTATIONS_KEY = "audit_annotations"

_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_STATUS_PREFIX = b'{"kind":"Status"'
_FAKED_SUCCESS = {"status": "Success", "message": "Connection closed early", "code": 200}


class AuditConfigError(ValueError):
    """The audit flags cannot be honoured: the server does not start."""


def request_attributes(request: web.Request, user: UserInfo | None) -> RequestAttributes:
    """What the policy matches: upstream's GetAuthorizerAttributes before impersonation."""
    watch = False
    if request.method == "GET":
        try:
            watch = parse_bool(request.query.get("watch"))
        except ValueError:
            pass
    ri = requestinfo.parse(request.method, request.path, watch)
    if not ri.is_resource:
        return RequestAttributes(user, request.method.lower(), False, path=request.path)
    namespace = ri.namespace or ""
    if ri.resource == "namespaces" and ri.name and not namespace:
        namespace = ri.name  # upstream: a namespace is in itself
    return RequestAttributes(user, ri.verb, True, namespace=namespace, api_group=ri.group,
                             api_version=ri.version, resource=ri.resource,
                             subresource=ri.subresource, name=ri.name, path=request.path)


def is_long_running(a: RequestAttributes) -> bool:
    return a.verb in LONG_RUNNING_VERBS or (
        a.resource_request and a.subresource in LONG_RUNNING_SUBRESOURCES)


class RequestAudit:
    """One audited request: its event and where it is in its stages."""

    __slots__ = ("event", "config", "long_running", "started", "done")

    def __init__(self, event: AuditEvent, config: RequestAuditConfig,
                 long_running: bool) -> None:
        self.event = event
        self.config = config
        self.long_running = long_running
        self.started = False
        self.done = False


class AuditFilter:
    """The audit middleware, its response hook and its failed-authentication recorder."""

    def __init__(self, policy: Policy, backend: LogBackend) -> None:
        self.policy = policy
        self.backend = backend

    def close(self) -> None:
        self.backend.close()

    # -- the middleware ------------------------------------------------------------------
    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        received = time.time()
        audit_id = request.headers.get(HEADER_AUDIT_ID) or str(uuid.uuid4())
        attrs = request_attributes(request, request.get("user"))
        config = self.policy.evaluate(attrs)
        if config.level == Level.NONE:
            request[ID_KEY] = audit_id
            return await handler(request)
        event = AuditEvent(config.level, audit_id, request.raw_path, attrs,
                           source_ips(request.headers, request.remote),
                           request.headers.get("User-Agent", ""), received)
        state = RequestAudit(event, config, is_long_running(attrs))
        request[STATE_KEY] = state
        self._emit(state, STAGE_REQUEST_RECEIVED, received)
        try:
            resp = await handler(request)
        except errors.ApiError as e:
            await self._complete_error(state, request, e)
            raise
        except StorageUnavailable as e:  # what the error middleware answers
            await self._complete_error(
                state, request, errors.ServiceUnavailable(f"storage unavailable: {e}"))
            raise
        except StorageInternalError as e:
            await self._complete_error(state, request, errors.InternalError.of(str(e)))
            raise
        except web.HTTPException as e:
            if e.status == 413:
                await self._complete_error(state, request, errors.RequestEntityTooLarge(
                    f"Request entity too large: limit is {neg.MAX_BODY}"))
            else:
                await self._complete(state, request, e.status, None)
            raise
        except (asyncio.CancelledError, ConnectionResetError):
            # The client went away: what was sent stands, else upstream's faked success.
            await self._complete(state, request, 0, None)
            raise
        except Exception as e:
            await self._panic(state, request, e)
            raise
        await self._complete_with(state, request, resp)
        return resp

    async def on_response_prepare(self, request: web.Request,
                                  response: web.StreamResponse) -> None:
        """Headers are about to go out: the Audit-Id header, and a long-running request's
        ResponseStarted event."""
        state: RequestAudit | None = request.get(STATE_KEY)
        audit_id = state.event.audit_id if state is not None else request.get(ID_KEY)
        if audit_id and HEADER_AUDIT_ID not in response.headers:
            response.headers[HEADER_AUDIT_ID] = audit_id
        if state is not None and state.long_running and not state.started and not state.done:
            state.event.log_response(response.status)
            self._start(state, request)

    def failed_authentication(self, request: web.Request, err: errors.ApiError) -> None:
        """A request that failed authentication (upstream's WithFailedAuthenticationAudit):
        one ResponseStarted event, no user, the 401's Status."""
        received = time.time()
        audit_id = request.headers.get(HEADER_AUDIT_ID) or str(uuid.uuid4())
        request[ID_KEY] = audit_id
        attrs = request_attributes(request, None)
        config = self.policy.evaluate(attrs)
        if config.level == Level.NONE:
            return
        event = AuditEvent(config.level, audit_id, request.raw_path, attrs,
                           source_ips(request.headers, request.remote),
                           request.headers.get("User-Agent", ""), received)
        event.log_response(err.code, err.status())
        state = RequestAudit(event, config, True)
        state.started = state.done = True
        self._emit(state, STAGE_RESPONSE_STARTED, time.time())

    # -- stages --------------------------------------------------------------------------
    def _emit(self, state: RequestAudit, stage: str, ts: float) -> None:
        if stage in state.config.omit_stages:
            return
        try:
            line = state.event.encode(stage, ts)
        except (TypeError, ValueError) as e:
            log.error("Error in audit plugin 'log' affecting 1 audit events: %s", e)
            return
        self.backend.process(line)

    def _collect(self, state: RequestAudit, request: web.Request) -> None:
        """What inner layers learnt: the impersonated user and the authorization decision
        (set by the authorization middleware), other annotations."""
        ev = state.event
        if request.get("impersonator") is not None and ev.impersonated_user is None:
            ev.impersonated_user = user_info(request.get("user"))
        decision = request.get("authz_decision")
        if decision:
            ev.annotate(ANNOTATION_DECISION, str(decision))
            ev.annotate(ANNOTATION_REASON, str(request.get("authz_reason") or ""))
        extra = request.get(ANNOTATIONS_KEY)
        if extra:
            for k, v in extra.items():
                ev.annotate(k, v)

    def _start(self, state: RequestAudit, request: web.Request) -> None:
        state.started = True
        self._collect(state, request)
        self._emit(state, STAGE_RESPONSE_STARTED, time.time())

    async def _complete(self, state: RequestAudit, request: web.Request, code: int,
                        status: dict[str, Any] | None, obj: Any = None) -> None:
        """ResponseComplete (after ResponseStarted for a long-running request that never
        started: its response goes out after this). `code` 0: nothing was decided."""
        if state.done:
            return
        await self._log_request_object(state, request)
        ev = state.event
        if not state.started:
            if code:
                ev.log_response(code, status, obj)
            else:
                ev.log_response(200, _FAKED_SUCCESS)
            if state.long_running:
                self._start(state, request)
        state.done = True
        self._collect(state, request)
        self._emit(state, STAGE_RESPONSE_COMPLETE, time.time())

    async def _complete_error(self, state: RequestAudit, request: web.Request,
                              err: errors.ApiError) -> None:
        status = err.status()  # also the response object at RequestResponse, as upstream
        await self._complete(state, request, err.code, status, status)

    async def _complete_with(self, state: RequestAudit, request: web.Request,
                             resp: web.StreamResponse) -> None:
        if resp.prepared or state.started:  # streamed: the status went out with the headers
            await self._complete(state, request, resp.status, None)
            return
        status: dict[str, Any] | None = None
        obj: Any = None
        body = resp.body if isinstance(resp, web.Response) else None
        if isinstance(body, bytes):
            if body.startswith(_STATUS_PREFIX):
                try:
                    status = orjson.loads(body)
                except orjson.JSONDecodeError:
                    status = None
            if state.event.level >= Level.REQUEST_RESPONSE and \
                    state.event.object_ref is not None:  # not for non-resource requests
                strip = state.config.omit_managed_fields
                obj = status if status is not None else _response_object(resp, body, strip)
                if obj is not None and strip:
                    obj = without_managed_fields(obj)
        await self._complete(state, request, resp.status, status, obj)

    async def _panic(self, state: RequestAudit, request: web.Request,
                     e: BaseException) -> None:
        """A bug (the error middleware answers 500): the Panic stage alone."""
        if state.done:
            return
        await self._log_request_object(state, request)
        state.done = True
        self._collect(state, request)
        state.event.log_response(500, {"status": "Failure", "reason": "InternalError",
                                       "message": f"APIServer panic'd: {e!r}", "code": 500})
        self._emit(state, STAGE_PANIC, time.time())

    async def _log_request_object(self, state: RequestAudit, request: web.Request) -> None:
        """The body the handler read (upstream logs it from the handlers): a body nobody
        read (a forbidden request, a 404 before decoding) is not logged."""
        ev = state.event
        if ev.object_ref is None or request.method not in _WRITE_METHODS or \
                not request.body_exists or not request.content.at_eof():
            return
        if request.method in ("PATCH", "DELETE") and ev.level < Level.REQUEST:
            return  # neither a patch nor DeleteOptions names the object
        raw = await request.read()  # cached by the handler's read: no I/O here
        if not raw or raw.isspace():
            return
        try:
            obj = neg.decode_object(raw, neg.media_type(request))
        except errors.ApiError:
            return
        if request.method == "PATCH":
            if ev.level >= Level.REQUEST:
                ev.request_object = obj  # the patch itself, as upstream's LogRequestPatch
            return
        if state.config.omit_managed_fields:
            obj = without_managed_fields(obj)
        ev.log_request_object(obj)


def _response_object(resp: web.Response, body: bytes, parse: bool) -> Any:
    """The object a response carries: our own compact JSON goes into the event as is
    (an orjson Fragment: no decoding and re-encoding of large lists) unless it must be
    edited (`parse`); YAML is decoded; other bodies (logs, text) are not objects."""
    ct = (resp.content_type or "").lower()
    try:
        if ct == neg.JSON or ct.endswith("+json"):
            if not parse and b"\n" not in body:
                return orjson.Fragment(body)
            return orjson.loads(body)
        if ct in (neg.YAML, "application/x-yaml", "text/yaml"):
            return yaml.safe_load(body)
    except (orjson.JSONDecodeError, yaml.YAMLError):
        return None
    return None


def from_config(policy_file: str, log_path: str, max_size_mb: int = 0,
                max_backups: int = 0, max_age_days: int = 0) -> AuditFilter | None:
    """The filter for kube-apiserver's audit flags, or None (no policy, or no log path:
    upstream writes no events then). An invalid policy or an unwritable log path is an
    AuditConfigError."""
    for flag, value in (("--audit-log-maxsize", max_size_mb),
                        ("--audit-log-maxbackup", max_backups),
                        ("--audit-log-maxage", max_age_days)):
        if value < 0:
            raise AuditConfigError(f"{flag} {value} can't be a negative number")
    if not policy_file:
        return None
    try:
        policy = load_policy_file(policy_file)
    except ValueError as e:
        raise AuditConfigError(f"loading audit policy file: {e}") from None
    if not log_path:
        log.info("no --audit-log-path: no events will be recorded for the log backend")
        return None
    try:
        ensure_log_file(log_path)
    except OSError as e:
        raise AuditConfigError(f"ensureLogFile: {e}") from None
    return AuditFilter(policy, LogBackend(log_path, max_size_mb, max_backups, max_age_days))


def check_config(policy_file: str, log_path: str, max_size_mb: int = 0,
                 max_backups: int = 0, max_age_days: int = 0) -> None:
    """from_config's checks alone (the CLI, before anything starts)."""
    audit = from_config(policy_file, log_path, max_size_mb, max_backups, max_age_days)
    if audit is not None:
        audit.close()
