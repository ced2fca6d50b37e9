"""DefaultStorageClass admission: PVCs without a class get the default one."""
from __future__ import annotations

from typing import Any

from pyk8s.apiserver.admission.defaultstorageclass import default_class
from pyk8s.apiserver.app import APIServer

Obj = dict[str, Any]
DEFAULT = {"storageclass.kubernetes.io/is-default-class": "true"}


def store(s: APIServer, group: str, plural: str) -> Any:
    info = s.catalogue.lookup(group, "v1", plural)
    assert info is not None
    return s.store(info)


def sc(name: str, annotations: dict[str, str] | None = None, created: str = "") -> Obj:
    md: Obj = {"name": name, "annotations": dict(annotations or {})}
    if created:
        md["creationTimestamp"] = created
    return {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": md,
            "provisioner": "rancher.io/local-path"}


def pvc(name: str, **spec: Any) -> Obj:
    return {"metadata": {"name": name},
            "spec": {"accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": "1Gi"}}, **spec}}


def test_newest_default_wins() -> None:
    old = sc("old", DEFAULT, "2024-01-01T00:00:00Z")
    new = sc("new", DEFAULT, "2024-06-01T00:00:00Z")
    beta = sc("beta", {"storageclass.beta.kubernetes.io/is-default-class": "true"},
              "2024-03-01T00:00:00Z")
    plain = sc("plain", {}, "2025-01-01T00:00:00Z")
    assert default_class([old, new, beta, plain]) is new
    assert default_class([old, beta]) is beta
    assert default_class([plain]) is None
    tie_b = sc("b", DEFAULT, "2024-01-01T00:00:00Z")
    tie_a = sc("a", DEFAULT, "2024-01-01T00:00:00Z")
    assert default_class([tie_b, tie_a]) is tie_a          # equally new: by name


async def test_pvc_gets_the_default_class(server: APIServer) -> None:
    claims = store(server, "", "persistentvolumeclaims")
    obj, _ = await claims.create("default", pvc("before"))
    assert obj["spec"].get("storageClassName") is None        # no default class yet
    await store(server, "storage.k8s.io", "storageclasses").create(None, sc("other"))
    await store(server, "storage.k8s.io", "storageclasses").create(
        None, sc("local-path", DEFAULT))
    await server.cache.consistent_rev()
    obj, _ = await claims.create("default", pvc("after"))
    assert obj["spec"]["storageClassName"] == "local-path"
    obj, _ = await claims.create("default", pvc("explicit", storageClassName="other"))
    assert obj["spec"]["storageClassName"] == "other"
    obj, _ = await claims.create("default", pvc("none", storageClassName=""))
    assert obj["spec"]["storageClassName"] == ""              # "" asks for no class
    beta = pvc("beta")
    beta["metadata"]["annotations"] = {"volume.beta.kubernetes.io/storage-class": "other"}
    obj, _ = await claims.create("default", beta)
    assert obj["spec"].get("storageClassName") is None
