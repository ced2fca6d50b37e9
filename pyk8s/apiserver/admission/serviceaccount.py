"""ServiceAccount: a pod without a service account gets `default` (mutating).

Upstream also rejects pods whose service account does not exist; pyk8s does not (a bare
`pyk8s server` runs no service account controller)."""
from __future__ import annotations

from pyk8s.apiserver.admission.chain import CREATE, Attributes, Plugin

DEFAULT_SERVICE_ACCOUNT = "default"
MIRROR_POD_ANNOTATION = "kubernetes.io/config.mirror"


class ServiceAccount(Plugin):
    name = "ServiceAccount"
    mutating = True

    def handles(self, attrs: Attributes) -> bool:
        return attrs.operation == CREATE and attrs.group == "" and \
            attrs.resource == "pods" and not attrs.subresource and attrs.object is not None

    async def admit(self, attrs: Attributes) -> None:
        pod = attrs.object
        assert pod is not None
        if MIRROR_POD_ANNOTATION in ((pod.get("metadata") or {}).get("annotations") or {}):
            return
        spec = pod.setdefault("spec", {})
        if not spec.get("serviceAccountName"):
            spec["serviceAccountName"] = spec.get("serviceAccount") or DEFAULT_SERVICE_ACCOUNT
        if not spec.get("serviceAccount"):
            spec["serviceAccount"] = spec["serviceAccountName"]
