"""The certificate controllers against a FakeClient: csrsigning's validation per signer and
the certificates it issues, csrapproving's decisions (with a fake SubjectAccessReview)."""
from __future__ import annotations

import base64
import datetime
import ipaddress
import os
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pyk8s.client.fake import FakeClient
from pyk8s.client.informer import SharedInformerFactory
from pyk8s.controllers.certificates import IgnorableError, parse_csr
from pyk8s.controllers.csrapproving import (KUBELET_SERVING_MESSAGE, NODE_CLIENT_MESSAGE,
                                            SAR_PATH, SELF_NODE_CLIENT_MESSAGE,
                                            CSRApprovingController)
from pyk8s.controllers.csrsigning import (CAProvider, CertificateAuthority,
                                          CSRSigningController, SigningError,
                                          certificate_duration, signer_validation_error)

Obj = dict[str, Any]
CSRS = "/apis/certificates.k8s.io/v1/certificatesigningrequests"
NOW = datetime.datetime(2024, 5, 1, 12, 0, 0, tzinfo=datetime.timezone.utc)
CLIENT_USAGES = ["digital signature", "key encipherment", "client auth"]
SERVING_USAGES = ["digital signature", "key encipherment", "server auth"]


# -- fixtures ---------------------------------------------------------------------------------
def make_ca(tmp: Path, days: int = 3650) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-ca")])
    start = NOW - datetime.timedelta(days=1)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(start + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    crt, k = tmp / "ca.crt", tmp / "ca.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    k.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    return crt, k


def csr_request(cn: str, orgs: tuple[str, ...] = (), dns: tuple[str, ...] = (),
                ips: tuple[str, ...] = (), emails: tuple[str, ...] = ()) -> str:
    """spec.request: base64 of a PEM PKCS#10 request."""
    key = ec.generate_private_key(ec.SECP256R1())
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    b = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attrs))
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    sans += [x509.RFC822Name(e) for e in emails]
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    pem = b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
    return base64.b64encode(pem).decode()


def csr(name: str, request: str, signer: str, usages: list[str], *, username: str = "admin",
        groups: tuple[str, ...] = ("system:authenticated",), approved: bool = False,
        expiration_seconds: int | None = None, **spec: Any) -> Obj:
    obj: Obj = {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
                "metadata": {"name": name},
                "spec": {"request": request, "signerName": signer, "usages": usages,
                         "username": username, "groups": list(groups), **spec}}
    if expiration_seconds is not None:
        obj["spec"]["expirationSeconds"] = expiration_seconds
    if approved:
        obj["status"] = {"conditions": [{"type": "Approved", "status": "True",
                                         "reason": "Test", "message": ""}]}
    return obj


def kubelet_client_csr(name: str = "node-csr", node: str = "n1", **kw: Any) -> Obj:
    return csr(name, csr_request(f"system:node:{node}", ("system:nodes",)),
               "kubernetes.io/kube-apiserver-client-kubelet", list(CLIENT_USAGES), **kw)


def signer_harness(tmp_path: Path, duration: float = 8760 * 3600.0
                   ) -> tuple[CSRSigningController, FakeClient]:
    client = FakeClient()
    crt, key = make_ca(tmp_path)
    ctrl = CSRSigningController(client, SharedInformerFactory(client),  # type: ignore[arg-type]
                                CAProvider(str(crt), str(key)), duration=duration,
                                clock=lambda: NOW)
    return ctrl, client


def seed(ctrl: Any, client: FakeClient, obj: Obj) -> Obj:
    stored = client.seed(CSRS, obj)
    ctrl.controller.csr_informer.store.add(stored)
    return stored


def stored_csr(client: FakeClient, name: str) -> Obj:
    return client.objects[("certificates.k8s.io", "certificatesigningrequests", "", name)]


def issued(client: FakeClient, name: str) -> x509.Certificate:
    pem = base64.b64decode(stored_csr(client, name)["status"]["certificate"])
    return x509.load_pem_x509_certificate(pem)


# -- csrsigning --------------------------------------------------------------------------------
async def test_signs_approved_kubelet_client_csr(tmp_path: Path) -> None:
    ctrl, client = signer_harness(tmp_path)
    seed(ctrl, client, kubelet_client_csr(approved=True))
    await ctrl.sync("node-csr")
    [action] = client.by_verb("update")
    assert action.subresource == "status"
    cert = issued(client, "node-csr")
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "system:node:n1"
    assert [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] \
        == ["system:nodes"]
    ca = x509.load_pem_x509_certificate((tmp_path / "ca.crt").read_bytes())
    assert cert.issuer == ca.subject
    cert.verify_directly_issued_by(ca)
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and ku.value.key_encipherment
    assert not ku.value.key_cert_sign
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    # 8760 h, backdated 5 min at both ends (long-lived certificates).
    assert cert.not_valid_before_utc == NOW - datetime.timedelta(minutes=5)
    assert cert.not_valid_after_utc == NOW + datetime.timedelta(hours=8760, minutes=-5)
    # The public key is the request's.
    req = parse_csr(stored_csr(client, "node-csr")["spec"]["request"])
    assert cert.public_key() == req.public_key()


async def test_expiration_seconds_shortens_and_has_a_floor(tmp_path: Path) -> None:
    ctrl, client = signer_harness(tmp_path, duration=24 * 3600.0)
    seed(ctrl, client, kubelet_client_csr("short", approved=True, expiration_seconds=3600))
    seed(ctrl, client, kubelet_client_csr("long", approved=True,
                                          expiration_seconds=10 * 24 * 3600))
    await ctrl.sync("short")
    await ctrl.sync("long")
    # Under 8 h: not backdated at the end.
    assert issued(client, "short").not_valid_after_utc == NOW + datetime.timedelta(hours=1)
    assert issued(client, "long").not_valid_after_utc == \
        NOW + datetime.timedelta(hours=24, minutes=-5)
    assert certificate_duration(3600.0, 60) == 600.0
    assert certificate_duration(3600.0, None) == 3600.0
    assert certificate_duration(3600.0, 1200) == 1200.0


async def test_capped_at_the_ca_expiry(tmp_path: Path) -> None:
    crt, key = make_ca(tmp_path, days=30)
    ca = CAProvider(str(crt), str(key)).current()
    req = parse_csr(csr_request("x"))
    cert = ca.sign(req, ["client auth"], 8760 * 3600.0, NOW)
    assert cert.not_valid_after_utc == ca.certificate.not_valid_after_utc
    with pytest.raises(SigningError, match="expired"):
        ca.sign(req, ["client auth"], 3600.0, NOW + datetime.timedelta(days=60))


async def test_unapproved_denied_failed_foreign_and_issued_are_left_alone(tmp_path: Path) -> None:
    ctrl, client = signer_harness(tmp_path)
    seed(ctrl, client, kubelet_client_csr("pending"))
    denied = kubelet_client_csr("denied")
    denied["status"] = {"conditions": [{"type": "Denied", "status": "True"}]}
    seed(ctrl, client, denied)
    failed = kubelet_client_csr("failed", approved=True)
    failed["status"]["conditions"].append({"type": "Failed", "status": "True"})
    seed(ctrl, client, failed)
    seed(ctrl, client, csr("foreign", csr_request("x"), "example.com/signer", ["client auth"],
                           approved=True))
    done = kubelet_client_csr("done", approved=True)
    done["status"]["certificate"] = "AAAA"
    seed(ctrl, client, done)
    for name in ("pending", "denied", "failed", "foreign", "done", "missing"):
        await ctrl.sync(name)
    assert client.by_verb("update") == []


async def test_kubelet_csr_with_wrong_organization_fails(tmp_path: Path) -> None:
    ctrl, client = signer_harness(tmp_path)
    seed(ctrl, client, csr("bad", csr_request("system:node:n1", ("system:masters",)),
                           "kubernetes.io/kube-apiserver-client-kubelet", list(CLIENT_USAGES),
                           approved=True))
    await ctrl.sync("bad")
    got = stored_csr(client, "bad")
    assert "certificate" not in got["status"]
    failed = [c for c in got["status"]["conditions"] if c["type"] == "Failed"]
    assert failed == [{"type": "Failed", "status": "True", "reason": "SignerValidationFailure",
                       "message": "subject organization is not system:nodes",
                       "lastUpdateTime": failed[0]["lastUpdateTime"],
                       "lastTransitionTime": failed[0]["lastTransitionTime"]}]


@pytest.mark.parametrize("signer,cn,orgs,dns,ips,usages,problem", [
    # kube-apiserver-client-kubelet
    ("kubernetes.io/kube-apiserver-client-kubelet", "system:node:n1", ("system:nodes",), (),
     (), CLIENT_USAGES, None),
    ("kubernetes.io/kube-apiserver-client-kubelet", "system:node:n1", ("system:nodes",), (),
     (), ["digital signature", "client auth"], None),
    ("kubernetes.io/kube-apiserver-client-kubelet", "system:node:n1",
     ("system:nodes", "extra"), (), (), CLIENT_USAGES,
     "subject organization is not system:nodes"),
    ("kubernetes.io/kube-apiserver-client-kubelet", "system:node:n1", ("system:nodes",),
     ("n1",), (), CLIENT_USAGES, "DNS subjectAltNames are not allowed"),
    ("kubernetes.io/kube-apiserver-client-kubelet", "system:node:n1", ("system:nodes",), (),
     ("10.0.0.1",), CLIENT_USAGES, "IP subjectAltNames are not allowed"),
    ("kubernetes.io/kube-apiserver-client-kubelet", "jane", ("system:nodes",), (), (),
     CLIENT_USAGES, "subject common name does not begin with system:node:"),
    ("kubernetes.io/kube-apiserver-client-kubelet", "system:node:n1", ("system:nodes",), (),
     (), ["client auth"],
     "usages did not match [client auth digital signature key encipherment]"),
    # kubelet-serving
    ("kubernetes.io/kubelet-serving", "system:node:n1", ("system:nodes",), ("n1",),
     ("10.0.0.1",), SERVING_USAGES, None),
    ("kubernetes.io/kubelet-serving", "system:node:n1", ("system:nodes",), (), (),
     SERVING_USAGES, "DNS or IP subjectAltName is required"),
    ("kubernetes.io/kubelet-serving", "system:node:n1", ("system:nodes",), ("n1",), (),
     CLIENT_USAGES, "usages did not match [digital signature key encipherment server auth]"),
    ("kubernetes.io/kubelet-serving", "n1", ("system:nodes",), ("n1",), (), SERVING_USAGES,
     "subject common name does not begin with system:node:"),
    # kube-apiserver-client
    ("kubernetes.io/kube-apiserver-client", "jane", ("devs",), (), (), ["client auth"], None),
    ("kubernetes.io/kube-apiserver-client", "jane", (), (), (),
     ["client auth", "server auth"], "invalid usage for client certificate: server auth"),
    ("kubernetes.io/kube-apiserver-client", "jane", (), (), (), ["digital signature"],
     "missing required usage for client certificate: client auth"),
    # legacy-unknown: anything
    ("kubernetes.io/legacy-unknown", "whatever", (), ("a.example",), (),
     ["server auth", "client auth"], None),
])
def test_signer_rules(signer: str, cn: str, orgs: tuple[str, ...], dns: tuple[str, ...],
                      ips: tuple[str, ...], usages: list[str], problem: str | None) -> None:
    req = parse_csr(csr_request(cn, orgs, dns, ips))
    assert signer_validation_error(signer, req, list(usages)) == problem


async def test_serving_certificate_keeps_the_sans(tmp_path: Path) -> None:
    ctrl, client = signer_harness(tmp_path)
    seed(ctrl, client, csr("serving", csr_request("system:node:n1", ("system:nodes",),
                                                  ("n1", "n1.example"), ("10.0.0.7",)),
                           "kubernetes.io/kubelet-serving", list(SERVING_USAGES),
                           approved=True))
    await ctrl.sync("serving")
    cert = issued(client, "serving")
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["n1", "n1.example"]
    assert [str(i) for i in san.get_values_for_type(x509.IPAddress)] == ["10.0.0.7"]
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == \
        [ExtendedKeyUsageOID.SERVER_AUTH]


async def test_ca_files_are_reread_when_they_change(tmp_path: Path) -> None:
    crt, key = make_ca(tmp_path)
    provider = CAProvider(str(crt), str(key))
    first = provider.current()
    assert provider.current() is first
    (tmp_path / "other").mkdir()
    crt2, key2 = make_ca(tmp_path / "other")
    crt.write_bytes(crt2.read_bytes())
    key.write_bytes(key2.read_bytes())
    os.utime(crt, (1, 1))  # a different mtime, whatever the clock's resolution
    assert provider.current().certificate != first.certificate
    # A key that is not the certificate's is refused.
    with pytest.raises(SigningError, match="does not match"):
        CertificateAuthority.from_pem(crt.read_bytes(), key_pem(first))


def key_pem(ca: CertificateAuthority) -> bytes:
    return ca.private_key.private_bytes(serialization.Encoding.PEM,
                                        serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())


# -- csrapproving ------------------------------------------------------------------------------
class SARClient(FakeClient):
    """A FakeClient answering SubjectAccessReviews: `allowed` is the set of (user,
    subresource) allowed."""

    def __init__(self, allowed: set[tuple[str, str]]) -> None:
        super().__init__()
        self.allowed = allowed
        self.reviews: list[Obj] = []

    async def create(self, path: str, body: Obj, params: Any = None) -> Obj:
        if path != SAR_PATH:
            return await super().create(path, body, params)
        self.reviews.append(body)
        spec = body["spec"]
        sub = spec["resourceAttributes"]["subresource"]
        return {**body, "status": {"allowed": (spec["user"], sub) in self.allowed}}


def approver_harness(allowed: set[tuple[str, str]]) -> tuple[CSRApprovingController, SARClient]:
    client = SARClient(allowed)
    return CSRApprovingController(client, SharedInformerFactory(client)), client  # type: ignore[arg-type]


def approval(client: FakeClient, name: str) -> list[Obj]:
    return [c for c in stored_csr(client, name).get("status", {}).get("conditions", [])
            if c["type"] == "Approved"]


async def test_bootstrap_identity_gets_a_new_node_client_certificate_approved() -> None:
    ctrl, client = approver_harness({("system:bootstrap:pyk8s", "nodeclient")})
    seed(ctrl, client, kubelet_client_csr(username="system:bootstrap:pyk8s",
                                          groups=("system:bootstrappers", "system:authenticated"),
                                          uid="u-1", extra={"k": ["v"]}))
    await ctrl.sync("node-csr")
    # CN != requester: only nodeclient is asked, with the requester's whole identity.
    [review] = client.reviews
    assert review["spec"] == {
        "user": "system:bootstrap:pyk8s", "uid": "u-1", "extra": {"k": ["v"]},
        "groups": ["system:bootstrappers", "system:authenticated"],
        "resourceAttributes": {"group": "certificates.k8s.io",
                               "resource": "certificatesigningrequests", "verb": "create",
                               "subresource": "nodeclient"}}
    [update] = client.by_verb("update")
    assert update.subresource == "approval"
    assert approval(client, "node-csr") == [{"type": "Approved", "status": "True",
                                             "reason": "AutoApproved",
                                             "message": NODE_CLIENT_MESSAGE}]


async def test_node_renewing_its_own_certificate_is_selfnodeclient() -> None:
    ctrl, client = approver_harness({("system:node:n1", "selfnodeclient")})
    seed(ctrl, client, kubelet_client_csr(username="system:node:n1",
                                          groups=("system:nodes", "system:authenticated")))
    await ctrl.sync("node-csr")
    assert [r["spec"]["resourceAttributes"]["subresource"] for r in client.reviews] == \
        ["selfnodeclient"]
    assert approval(client, "node-csr")[0]["message"] == SELF_NODE_CLIENT_MESSAGE


async def test_denied_review_is_retried_and_nothing_approved() -> None:
    ctrl, client = approver_harness(set())
    seed(ctrl, client, kubelet_client_csr(username="system:node:n1"))
    with pytest.raises(IgnorableError, match=r"as \[selfnodeclient nodeclient\] but subject "
                                             r"access review was not approved"):
        await ctrl.sync("node-csr")
    assert client.by_verb("update") == []
    # Another node's certificate: not "self", and nodeclient is not allowed either.
    ctrl, client = approver_harness({("system:node:n2", "selfnodeclient")})
    seed(ctrl, client, kubelet_client_csr(username="system:node:n2"))
    with pytest.raises(IgnorableError, match=r"\[nodeclient\]"):
        await ctrl.sync("node-csr")


async def test_approver_ignores_other_requests() -> None:
    ctrl, client = approver_harness({("admin", "nodeclient"), ("admin", "selfnodeclient")})
    # Wrong shape (O), other signers, already decided or issued: no review, no approval.
    seed(ctrl, client, csr("wrong-o", csr_request("system:node:n1", ("devs",)),
                           "kubernetes.io/kube-apiserver-client-kubelet", list(CLIENT_USAGES)))
    seed(ctrl, client, csr("client", csr_request("jane"), "kubernetes.io/kube-apiserver-client",
                           ["client auth"]))
    seed(ctrl, client, kubelet_client_csr("approved", approved=True))
    denied = kubelet_client_csr("denied")
    denied["status"] = {"conditions": [{"type": "Denied", "status": "True"}]}
    seed(ctrl, client, denied)
    for name in ("wrong-o", "client", "approved", "denied"):
        await ctrl.sync(name)
    assert client.reviews == [] and client.by_verb("update") == []


def node(name: str, *addresses: tuple[str, str]) -> Obj:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
            "status": {"addresses": [{"type": t, "address": a} for t, a in addresses]}}


def serving_csr(name: str = "serving", cn: str = "system:node:n1",
                dns: tuple[str, ...] = ("n1",), ips: tuple[str, ...] = ("10.0.0.7",),
                username: str = "system:node:n1",
                groups: tuple[str, ...] = ("system:nodes", "system:authenticated")) -> Obj:
    return csr(name, csr_request(cn, ("system:nodes",), dns, ips),
               "kubernetes.io/kubelet-serving", list(SERVING_USAGES), username=username,
               groups=groups)


async def test_node_serving_certificate_for_its_own_addresses_is_approved() -> None:
    ctrl, client = approver_harness(set())
    ctrl.node_informer.store.add(node("n1", ("InternalIP", "10.0.0.7"), ("Hostname", "n1")))
    seed(ctrl, client, serving_csr())
    await ctrl.sync("serving")
    assert approval(client, "serving")[0]["message"] == KUBELET_SERVING_MESSAGE
    assert client.reviews == []  # pyk8s's rule: the requester is the node itself


async def test_node_serving_certificate_for_foreign_names_is_not_approved() -> None:
    ctrl, client = approver_harness(set())
    ctrl.node_informer.store.add(node("n1", ("InternalIP", "10.0.0.7"), ("Hostname", "n1")))
    seed(ctrl, client, serving_csr("apiserver", dns=("kubernetes.default.svc",)))
    with pytest.raises(IgnorableError, match="is not an address of node"):
        await ctrl.sync("apiserver")
    seed(ctrl, client, serving_csr("other-ip", ips=("10.0.0.8",)))
    with pytest.raises(IgnorableError, match='IP address "10.0.0.8"'):
        await ctrl.sync("other-ip")
    # Another node's name, or a requester that is not a node: left to the admin.
    seed(ctrl, client, serving_csr("n2", cn="system:node:n2"))
    seed(ctrl, client, serving_csr("admin", username="admin", groups=("system:masters",)))
    await ctrl.sync("n2")
    await ctrl.sync("admin")
    assert client.by_verb("update") == []


async def test_serving_csr_waits_for_its_node_and_is_requeued_by_it() -> None:
    ctrl, client = approver_harness(set())
    seed(ctrl, client, serving_csr())
    with pytest.raises(IgnorableError, match='node "n1" is not registered'):
        await ctrl.sync("serving")
    n1 = node("n1", ("InternalIP", "10.0.0.7"))
    ctrl.node_informer.store.add(n1)
    ctrl.node_changed(n1)
    assert len(ctrl.controller.queue) == 1
    await ctrl.sync("serving")
    assert approval(client, "serving")


# -- flags --------------------------------------------------------------------------------------
def test_signing_flags(tmp_path: Path) -> None:
    import argparse

    from pyk8s.cli.main import _add_controller_args, controller_options
    p = argparse.ArgumentParser()
    p.add_argument("--data-dir", default=str(tmp_path))
    p.add_argument("--command", default="controller-manager")
    _add_controller_args(p)
    o = controller_options(p.parse_args([]))
    assert (o.cluster_signing_cert_file, o.cluster_signing_key_file) == ("", "")
    assert o.cluster_signing_duration == 8760 * 3600.0
    o = controller_options(p.parse_args(["--cluster-signing-cert-file=/ca.crt",
                                         "--cluster-signing-key-file=/ca.key",
                                         "--cluster-signing-duration=720h"]))
    assert (o.cluster_signing_cert_file, o.cluster_signing_key_file,
            o.cluster_signing_duration) == ("/ca.crt", "/ca.key", 720 * 3600.0)
    # `up` signs with its own CA by default.
    o = controller_options(p.parse_args(["--command=up"]))
    assert o.cluster_signing_cert_file == str(tmp_path.resolve() / "tls" / "ca.crt")
    assert o.cluster_signing_key_file == str(tmp_path.resolve() / "tls" / "ca.key")


async def test_manager_without_signing_files_skips_csrsigning(
        caplog: pytest.LogCaptureFixture) -> None:
    from pyk8s.controllers.manager import ControllerManagerOptions, run_all
    caplog.set_level("INFO", logger="pyk8s.controllers.manager")
    await run_all(FakeClient(), ControllerManagerOptions(  # type: ignore[arg-type]
        controllers=("csrsigning",)))
    assert "Skipping CSR signer controller because no csr cert/key was specified" in \
        caplog.text
