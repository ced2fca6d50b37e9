"""DefaultStorageClass: a PersistentVolumeClaim created without a storage class gets the
default one (mutating), as upstream's `plugin/pkg/admission/storage/storageclass/setdefault`.

Rules:
- only PVC creates; a claim that has `spec.storageClassName` (even "", which asks for no
  class) or the beta annotation `volume.beta.kubernetes.io/storage-class` is left alone;
- the default class is a StorageClass annotated `storageclass.kubernetes.io/
  is-default-class: "true"` (or the beta annotation); with several, the newest
  (creationTimestamp, then name, as upstream's GetDefaultClass) wins; with none, nothing
  changes.
"""
from __future__ import annotations

from typing import Any, Awaitable, Callable

from pyk8s.apiserver.admission.chain import CREATE, Attributes, Plugin

Obj = dict[str, Any]
ListFn = Callable[[str, str, str, str | None], Awaitable[list[Obj]]]

ANN_DEFAULT = "storageclass.kubernetes.io/is-default-class"
ANN_BETA_DEFAULT = "storageclass.beta.kubernetes.io/is-default-class"
ANN_BETA_CLASS = "volume.beta.kubernetes.io/storage-class"


def is_default(sc: Obj) -> bool:
    ann = (sc.get("metadata") or {}).get("annotations") or {}
    return ann.get(ANN_DEFAULT) == "true" or ann.get(ANN_BETA_DEFAULT) == "true"


def default_class(classes: list[Obj]) -> Obj | None:
    """The newest default class; among equally new ones, the first by name."""
    defaults = sorted((sc for sc in classes if is_default(sc)),
                      key=lambda sc: str(sc["metadata"].get("name")))
    if not defaults:
        return None
    defaults.sort(key=lambda sc: str(sc["metadata"].get("creationTimestamp") or ""),
                  reverse=True)
    return defaults[0]


class DefaultStorageClass(Plugin):
    name = "DefaultStorageClass"
    mutating = True

    def __init__(self, list_objects: ListFn) -> None:
        self.list_objects = list_objects

    def handles(self, attrs: Attributes) -> bool:
        return attrs.operation == CREATE and attrs.group == "" and \
            attrs.resource == "persistentvolumeclaims" and not attrs.subresource and \
            attrs.object is not None

    async def admit(self, attrs: Attributes) -> None:
        claim = attrs.object
        assert claim is not None
        spec = claim.setdefault("spec", {})
        if spec.get("storageClassName") is not None:
            return
        if ANN_BETA_CLASS in ((claim.get("metadata") or {}).get("annotations") or {}):
            return
        sc = default_class(await self.list_objects("storage.k8s.io", "v1", "storageclasses",
                                                   None))
        if sc is not None:
            spec["storageClassName"] = sc["metadata"]["name"]
