"""ServiceAccount (upstream's plugin/pkg/admission/serviceaccount), on pod creation:

- a pod without a service account gets `default`;
- the account must exist: looked up in the watch cache, then in storage (`default`, which
  the service account controller creates with the namespace, up to 10 times ~150 ms
  apart), else 403 `error looking up service account <ns>/<name>: ...`;
- unless `automountServiceAccountToken: false` on the pod (or, the pod silent, on the
  account), every container and init container without a mount at
  /var/run/secrets/kubernetes.io/serviceaccount gets one of a projected volume
  `kube-api-access-<5 random>`: a bound token (`expirationSeconds: 3607`, refreshed by the
  kubelet), the `kube-root-ca.crt` ConfigMap's `ca.crt` (the root-CA publisher keeps it in
  every namespace) and the namespace from the downward API.

Mirror pods are left alone, and may not use service accounts, secrets or tokens."""
from __future__ import annotations

import asyncio
import random
from typing import Any, Awaitable, Callable

from pyk8s.api.meta import generate_name
from pyk8s.apiserver.admission.chain import CREATE, Attributes, Plugin, forbidden

DEFAULT_SERVICE_ACCOUNT = "default"
MIRROR_POD_ANNOTATION = "kubernetes.io/config.mirror"
API_ACCESS_VOLUME_PREFIX = "kube-api-access-"
TOKEN_MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
TOKEN_EXPIRATION_SECONDS = 3607   # upstream's WarnOnlyBoundTokenExpirationSeconds
ROOT_CA_CONFIGMAP = "kube-root-ca.crt"
DEFAULT_ACCOUNT_ATTEMPTS = 10     # the controller creates `default` just after the namespace

Obj = dict[str, Any]
AccountGetter = Callable[[str, str], Awaitable[Obj | None]]


def api_access_volume(name: str) -> Obj:
    """The projected volume, as upstream's createVolume writes it (defaults included)."""
    return {"name": name, "projected": {"defaultMode": 0o644, "sources": [
        {"serviceAccountToken": {"expirationSeconds": TOKEN_EXPIRATION_SECONDS,
                                 "path": "token"}},
        {"configMap": {"name": ROOT_CA_CONFIGMAP,
                       "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {
            "apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]}}


def should_automount(account: Obj, spec: Obj) -> bool:
    """The pod's automountServiceAccountToken, else the account's, else true."""
    if spec.get("automountServiceAccountToken") is not None:
        return bool(spec["automountServiceAccountToken"])
    if account.get("automountServiceAccountToken") is not None:
        return bool(account["automountServiceAccountToken"])
    return True


def mount_api_access(spec: Obj) -> None:
    """Upstream's mountServiceAccountToken: an existing kube-api-access-* volume is reused;
    containers that mount something at the token path already are left as they are."""
    name = next((v.get("name") for v in spec.get("volumes") or []
                 if str(v.get("name") or "").startswith(API_ACCESS_VOLUME_PREFIX)), None)
    has_volume = name is not None
    name = name or generate_name(API_ACCESS_VOLUME_PREFIX)
    needed = False
    for key in ("initContainers", "containers"):
        for c in spec.get(key) or []:
            mounts = c.setdefault("volumeMounts", [])
            if any(m.get("mountPath") == TOKEN_MOUNT_PATH for m in mounts):
                continue
            mounts.append({"name": name, "readOnly": True, "mountPath": TOKEN_MOUNT_PATH})
            needed = True
    if needed and not has_volume:
        spec.setdefault("volumes", []).append(api_access_volume(name))


class ServiceAccount(Plugin):
    name = "ServiceAccount"
    mutating = True
    validating = True

    def __init__(self, get_account: AccountGetter | None = None,
                 retry_interval: float | None = None) -> None:
        """`get_account(namespace, name)`: the ServiceAccount or None; without one (unit
        tests of the other parts) accounts are not checked and no token is mounted."""
        self.get_account = get_account
        self.retry_interval = retry_interval if retry_interval is not None else \
            random.uniform(0.1, 0.2)

    def handles(self, attrs: Attributes) -> bool:
        return attrs.operation == CREATE and attrs.group == "" and \
            attrs.resource == "pods" and not attrs.subresource and attrs.object is not None

    async def admit(self, attrs: Attributes) -> None:
        pod = attrs.object
        assert pod is not None
        if MIRROR_POD_ANNOTATION in ((pod.get("metadata") or {}).get("annotations") or {}):
            return   # not touched: the kubelet would see a spec not its static pod's
        spec = pod.setdefault("spec", {})
        if not spec.get("serviceAccountName"):
            spec["serviceAccountName"] = spec.get("serviceAccount") or DEFAULT_SERVICE_ACCOUNT
        if not spec.get("serviceAccount"):
            spec["serviceAccount"] = spec["serviceAccountName"]
        if self.get_account is None:
            return
        name = spec["serviceAccountName"]
        account = await self._account(attrs.namespace, name)
        if account is None:
            raise forbidden(attrs, f"error looking up service account {attrs.namespace}/"
                                   f'{name}: serviceaccount "{name}" not found')
        if should_automount(account, spec):
            mount_api_access(spec)

    async def _account(self, namespace: str, name: str) -> Obj | None:
        """Upstream's getServiceAccount: `default` is waited for a little (the controller
        creates it right after the namespace), any other account is looked up once."""
        assert self.get_account is not None
        attempts = DEFAULT_ACCOUNT_ATTEMPTS if name == DEFAULT_SERVICE_ACCOUNT else 1
        for i in range(attempts):
            if i:
                await asyncio.sleep(self.retry_interval)
            account = await self.get_account(namespace, name)
            if account is not None:
                return account
        return None

    async def validate(self, attrs: Attributes) -> None:
        """Upstream's checks of mirror pods: no service account, secrets or token
        projections (the kubelet runs them without the API's credentials)."""
        pod = attrs.object
        assert pod is not None
        if MIRROR_POD_ANNOTATION not in ((pod.get("metadata") or {}).get("annotations") or {}):
            return
        spec = pod.get("spec") or {}
        if spec.get("serviceAccountName"):
            raise forbidden(attrs, "a mirror pod may not reference service accounts")
        if _references_secrets(spec):
            raise forbidden(attrs, "a mirror pod may not reference secrets")
        for v in spec.get("volumes") or []:
            for src in ((v.get("projected") or {}).get("sources") or []):
                if src.get("serviceAccountToken") is not None:
                    raise forbidden(attrs, "a mirror pod may not use ServiceAccountToken "
                                           "volume projections")


def _references_secrets(spec: dict[str, Any]) -> bool:
    """Upstream's VisitPodSecretNames, for the usual places."""
    if spec.get("imagePullSecrets"):
        return True
    for v in spec.get("volumes") or []:
        if v.get("secret"):
            return True
        for src in ((v.get("projected") or {}).get("sources") or []):
            if src.get("secret"):
                return True
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for c in spec.get(key) or []:
            for ef in c.get("envFrom") or []:
                if ef.get("secretRef"):
                    return True
            for e in c.get("env") or []:
                if ((e.get("valueFrom") or {}).get("secretKeyRef")):
                    return True
    return False
