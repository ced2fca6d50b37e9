"""CertificateSigningRequests in the registry (upstream's strategy and validation): the
requester recorded at creation, request validation, and what the main resource, /status
and /approval may change."""
from __future__ import annotations

import base64
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pyk8s.api import errors
from pyk8s.apiserver.app import APIServer
from pyk8s.apiserver.authn import UserInfo
from pyk8s.apiserver.certs import ensure_credentials, issue_client_certificate

Obj = dict[str, Any]


def csrs(s: APIServer) -> Any:
    info = s.catalogue.lookup("certificates.k8s.io", "v1", "certificatesigningrequests")
    assert info is not None
    return s.store(info)


def request(cn: str = "jane") -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
           .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
    return base64.b64encode(pem).decode()


def body(name: str = "c", **spec: Any) -> Obj:
    return {"metadata": {"name": name}, "spec": {
        "request": request(), "signerName": "kubernetes.io/kube-apiserver-client",
        "usages": ["client auth"], **spec}}


def certificate_b64(tmp_path: Any) -> str:
    creds = ensure_credentials(tmp_path)
    cert_pem, _ = issue_client_certificate(creds.ca_cert, tmp_path / "tls" / "ca.key", "jane",
                                           ["devs"], days=1)
    return base64.b64encode(cert_pem).decode()


async def test_requester_is_recorded_whatever_was_sent(server: APIServer) -> None:
    user = UserInfo("alice", uid="u-1", groups=("devs", "system:authenticated"),
                    extra={"scopes": ["a", "b"]})
    obj, _ = await csrs(server).create(None, body(username="mallory", groups=["system:masters"],
                                                  uid="x", extra={"k": ["v"]}), user=user)
    assert obj["spec"]["username"] == "alice" and obj["spec"]["uid"] == "u-1"
    assert obj["spec"]["groups"] == ["devs", "system:authenticated"]
    assert obj["spec"]["extra"] == {"scopes": ["a", "b"]}


async def test_no_pre_approved_requests(server: APIServer) -> None:
    b = body()
    b["status"] = {"conditions": [{"type": "Approved", "status": "True"}], "certificate": "AA=="}
    obj, _ = await csrs(server).create(None, b)
    assert "status" not in obj or not obj["status"]


@pytest.mark.parametrize("spec,message", [
    ({"request": base64.b64encode(b"-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n"
                                  ).decode()}, "PEM block type must be CERTIFICATE REQUEST"),
    ({"signerName": "kubernetes.io/legacy-unknown"},
     "the legacy signerName is not allowed via this API version"),
    ({"usages": ["client auth", "client auth"]}, "Duplicate value"),
    ({"usages": ["teleport"]}, "Unsupported value"),
    ({"expirationSeconds": 60}, "may not specify a duration less than 600 seconds"),
])
async def test_invalid_requests(server: APIServer, spec: Obj, message: str) -> None:
    with pytest.raises(errors.Invalid, match=message):
        await csrs(server).create(None, body(**spec))


async def test_tampered_request_signature_is_invalid(server: APIServer) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "jane")]))
           .sign(key, hashes.SHA256()))
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    der[der.index(b"jane")] = ord("J")  # the signed subject changes: the signature is wrong
    pem = b"-----BEGIN CERTIFICATE REQUEST-----\n" + base64.encodebytes(bytes(der)) + \
        b"-----END CERTIFICATE REQUEST-----\n"
    with pytest.raises(errors.Invalid, match="signature"):
        await csrs(server).create(None, body(request=base64.b64encode(pem).decode()))


async def test_main_resource_keeps_spec_and_status(server: APIServer) -> None:
    await csrs(server).create(None, body())

    def change(cur: Obj) -> Obj:
        cur["spec"]["signerName"] = "example.com/other"
        cur["status"] = {"conditions": [{"type": "Approved", "status": "True"}]}
        cur["metadata"]["labels"] = {"a": "b"}
        return cur
    obj, _, _ = await csrs(server).update(None, "c", change)
    assert obj["spec"]["signerName"] == "kubernetes.io/kube-apiserver-client"
    assert not (obj.get("status") or {}).get("conditions")
    assert obj["metadata"]["labels"] == {"a": "b"}


async def test_status_sets_certificate_once_and_never_approval(server: APIServer,
                                                               tmp_path: Any) -> None:
    store = csrs(server)
    await store.create(None, body())

    def add_approved(cur: Obj) -> Obj:
        cur["status"] = {"conditions": [{"type": "Approved", "status": "True"}]}
        return cur
    with pytest.raises(errors.Invalid, match='updates may not add a condition of type '
                                             '\\\\?"Approved'):
        await store.update(None, "c", add_approved, subresource="status")

    def bad_certificate(cur: Obj) -> Obj:
        cur["status"] = {"certificate": base64.b64encode(b"not pem").decode()}
        return cur
    with pytest.raises(errors.Invalid, match="must contain at least one CERTIFICATE PEM block"):
        await store.update(None, "c", bad_certificate, subresource="status")

    cert = certificate_b64(tmp_path)

    def issue(cur: Obj) -> Obj:
        cur.setdefault("status", {})["certificate"] = cert
        cur["status"]["conditions"] = [{"type": "Failed", "reason": "X", "message": "m"}]
        return cur
    obj, _, _ = await store.update(None, "c", issue, subresource="status")
    assert obj["status"]["certificate"] == cert
    [failed] = obj["status"]["conditions"]
    assert failed["status"] == "True" and failed["lastUpdateTime"] and \
        failed["lastTransitionTime"]

    def reissue(cur: Obj) -> Obj:
        cur["status"]["certificate"] = certificate_b64(tmp_path)
        return cur
    with pytest.raises(errors.Invalid, match="updates may not modify existing certificate"):
        await store.update(None, "c", reissue, subresource="status")

    def drop_failed(cur: Obj) -> Obj:
        cur["status"]["conditions"] = []
        return cur
    with pytest.raises(errors.Invalid, match='may not remove a condition of type \\\\?"Failed'):
        await store.update(None, "c", drop_failed, subresource="status")


async def test_approval_changes_only_conditions(server: APIServer) -> None:
    store = csrs(server)
    await store.create(None, body())

    def approve(cur: Obj) -> Obj:
        cur["status"] = {"conditions": [{"type": "Approved", "reason": "OK", "message": "m"}],
                         "certificate": "AAAA"}
        cur["spec"]["usages"] = ["digital signature", "client auth"]
        return cur
    obj, _, _ = await store.update(None, "c", approve, subresource="approval")
    [cond] = obj["status"]["conditions"]
    assert cond["type"] == "Approved" and cond["status"] == "True"
    assert cond["lastUpdateTime"] and cond["lastTransitionTime"]
    assert "certificate" not in obj["status"]
    assert obj["spec"]["usages"] == ["client auth"]

    def deny_too(cur: Obj) -> Obj:
        cur["status"]["conditions"].append({"type": "Denied", "status": "True"})
        return cur
    with pytest.raises(errors.Invalid, match="mutually exclusive"):
        await store.update(None, "c", deny_too, subresource="approval")

    def unapprove(cur: Obj) -> Obj:
        cur["status"]["conditions"] = []
        return cur
    with pytest.raises(errors.Invalid, match="may not remove a condition"):
        await store.update(None, "c", unapprove, subresource="approval")
