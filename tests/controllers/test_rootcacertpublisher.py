"""The root CA certificate publisher against a seeded fake (no server): what it queues,
what it creates and restores, the --root-ca-file flag and the manager's choice of CA."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

from pyk8s.apiserver.certs import ensure_credentials
from pyk8s.cli.main import _add_controller_args, controller_options
from pyk8s.client.fake import FakeClient
from pyk8s.client.informer import SharedInformerFactory
from pyk8s.client.rest import ApiError, ClientConfig, NotFound, RESTClient
from pyk8s.controllers.manager import ControllerManagerOptions, root_ca, run_all
from pyk8s.controllers.rootcacertpublisher import (DESCRIPTION, DESCRIPTION_ANNOTATION,
                                                   ROOT_CA_CERT_CONFIG_MAP_NAME,
                                                   RootCACertPublisher, read_root_ca)

Obj = dict[str, Any]
CM = ROOT_CA_CERT_CONFIG_MAP_NAME
PEM = b"-----BEGIN CERTIFICATE-----\nroot\n-----END CERTIFICATE-----\n"


def harness() -> tuple[RootCACertPublisher, FakeClient]:
    client = FakeClient()
    ctrl = RootCACertPublisher(client, SharedInformerFactory(client),  # type: ignore[arg-type]
                               PEM)
    return ctrl, client


def namespace(name: str, phase: str = "Active") -> Obj:
    return {"metadata": {"name": name}, "status": {"phase": phase}}


def seed_cm(ctrl: RootCACertPublisher, client: FakeClient, ns: str, **fields: Any) -> Obj:
    obj = client.seed(f"/api/v1/namespaces/{ns}/configmaps",
                      {"apiVersion": "v1", "kind": "ConfigMap", **fields})
    ctrl.cm_informer.store.add(obj)
    return obj


def published(annotations: Obj | None = None) -> Obj:
    return {"metadata": {"name": CM, "annotations": annotations or
                         {DESCRIPTION_ANNOTATION: DESCRIPTION}},
            "data": {"ca.crt": PEM.decode()}}


def test_the_configmap_informer_watches_only_the_published_name() -> None:
    ctrl, _ = harness()
    assert ctrl.cm_informer.params == {"fieldSelector": f"metadata.name={CM}"}
    ctrl.queue.shutdown()


def test_namespaces_and_published_configmaps_are_queued() -> None:
    ctrl, _ = harness()
    ctrl._namespace_added(namespace("new"))
    ctrl._namespace_updated(namespace("new"), namespace("dying", "Terminating"))
    ctrl._namespace_updated(namespace("old"), namespace("old"))
    cm = {"metadata": {"name": CM, "namespace": "edited"}}
    ctrl._cm_handler.on_update(cm, cm)
    ctrl._cm_handler.on_delete({"metadata": {"name": CM, "namespace": "deleted"}})
    ctrl._cm_handler.on_delete({"metadata": {"name": "other", "namespace": "ignored"}})
    assert ctrl.queue._dirty == {"new", "old", "edited", "deleted"}
    ctrl.queue.shutdown()


async def test_missing_configmap_is_created_with_the_ca_and_description() -> None:
    ctrl, client = harness()
    await ctrl.sync("ns")
    [create] = client.by_verb("create", "configmaps")
    assert create.namespace == "ns"
    assert create.body == {"apiVersion": "v1", "kind": "ConfigMap", **published()}
    assert DESCRIPTION.startswith("Contains a CA bundle that can be used to verify the "
                                  "kube-apiserver when using internal endpoints")


async def test_up_to_date_configmap_is_left_alone() -> None:
    ctrl, client = harness()
    seed_cm(ctrl, client, "ns", **published({DESCRIPTION_ANNOTATION: "an admin's words"}))
    await ctrl.sync("ns")
    assert client.actions == []


@pytest.mark.parametrize("fields", [
    {"data": {"ca.crt": "edited"}},
    {"data": {"ca.crt": PEM.decode(), "extra": "x"}},
    {},
    {"data": {"ca.crt": PEM.decode()}, "metadata": {"name": CM, "annotations": {"a": "b"}}},
])
async def test_edited_configmap_is_restored_keeping_other_metadata(fields: Obj) -> None:
    ctrl, client = harness()
    md = fields.pop("metadata", {"name": CM, "labels": {"keep": "me"}})
    cached = seed_cm(ctrl, client, "ns", metadata=md, **fields)
    await ctrl.sync("ns")
    [update] = client.by_verb("update", "configmaps")
    assert update.name == CM and update.body["data"] == {"ca.crt": PEM.decode()}
    annotations = update.body["metadata"]["annotations"]
    assert annotations[DESCRIPTION_ANNOTATION] == DESCRIPTION
    assert {k: v for k, v in update.body["metadata"].items() if k != "annotations"} == {
        k: v for k, v in cached["metadata"].items() if k != "annotations"}
    assert ctrl.cm_informer.store.get(f"ns/{CM}") == cached   # the cache is untouched


async def test_create_in_a_missing_or_terminating_namespace_is_not_retried() -> None:
    ctrl, client = harness()
    client.fail("create", "configmaps", NotFound(404, "NotFound", 'namespaces "ns" not found'))
    await ctrl.sync("ns")
    terminating = ApiError(403, "Forbidden", "unable to create new content in namespace ns "
                           "because it is being terminated", {"details": {"causes": [
                               {"reason": "NamespaceTerminating", "field": "metadata.namespace",
                                "message": "namespace ns is being terminated"}]}})
    client.fail("create", "configmaps", terminating)
    await ctrl.sync("ns")
    client.fail("create", "configmaps", ApiError(500, "InternalError", "boom"))
    with pytest.raises(ApiError, match="boom"):
        await ctrl.sync("ns")


# -- the CA and the flag ----------------------------------------------------------------------
def test_read_root_ca_needs_a_certificate(tmp_path: Path) -> None:
    ca = ensure_credentials(tmp_path).ca_cert
    assert read_root_ca(str(ca)) == ca.read_bytes()
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate\n")
    with pytest.raises(ValueError, match=f"error parsing root-ca-file at {bad}: "):
        read_root_ca(str(bad))
    with pytest.raises(ValueError, match="error parsing root-ca-file at /nonexistent"):
        read_root_ca("/nonexistent")


def test_root_ca_file_flag(tmp_path: Path) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data-dir", default=str(tmp_path))
    p.add_argument("--command", default="controller-manager")
    _add_controller_args(p)
    assert controller_options(p.parse_args([])).root_ca_file == ""
    assert controller_options(p.parse_args(["--root-ca-file=/ca.pem"])).root_ca_file == "/ca.pem"
    # `up` publishes the CA that signed its serving certificate.
    o = controller_options(p.parse_args(["--command=up"]))
    assert o.root_ca_file == str(tmp_path.resolve() / "tls" / "ca.crt")
    o = controller_options(p.parse_args(["--command=up", "--root-ca-file=/ca.pem"]))
    assert o.root_ca_file == "/ca.pem"


async def test_manager_publishes_the_file_else_the_kubeconfig_ca(tmp_path: Path) -> None:
    ca = ensure_credentials(tmp_path).ca_cert
    other = tmp_path / "other.pem"
    other.write_bytes(ca.read_bytes() * 2)
    client = RESTClient(ClientConfig(server="https://127.0.0.1:1", ca_data=ca.read_bytes()))
    assert root_ca(client, ControllerManagerOptions()) == ca.read_bytes()
    assert root_ca(client, ControllerManagerOptions(root_ca_file=str(other))) == \
        other.read_bytes()
    assert root_ca(RESTClient(ClientConfig(server="http://127.0.0.1:1")),
                   ControllerManagerOptions()) == b""


async def test_manager_without_a_ca_skips_the_publisher(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="pyk8s.controllers.manager")
    await run_all(FakeClient(), ControllerManagerOptions(  # type: ignore[arg-type]
        controllers=("root-ca-cert-publisher",)))
    assert "Skipping root CA certificate publisher" in caplog.text
