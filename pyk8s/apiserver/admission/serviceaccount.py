"""ServiceAccount: a pod without a service account gets `default` (mutating).

Upstream also rejects pods whose service account does not exist; pyk8s does not (a bare
`pyk8s server` runs no service account controller)."""
from __future__ import annotations

from typing import Any

from pyk8s.apiserver.admission.chain import CREATE, Attributes, Plugin, forbidden

DEFAULT_SERVICE_ACCOUNT = "default"
MIRROR_POD_ANNOTATION = "kubernetes.io/config.mirror"


class ServiceAccount(Plugin):
    name = "ServiceAccount"
    mutating = True
    validating = True

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
