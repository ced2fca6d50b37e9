"""pyk8s's approval of node add-on identities (system:kube-proxy, the kube-dns service
account) through kubernetes.io/kube-apiserver-client CSRs."""
from __future__ import annotations

import base64
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pyk8s.controllers.certificates import parse_csr
from pyk8s.controllers.csrapproving import node_addon_problem

NODE = {"username": "system:node:n1", "groups": ["system:nodes", "system:authenticated"]}


def csr(cn: str, orgs: tuple[str, ...] = (), requester: dict[str, Any] = NODE,
        usages: tuple[str, ...] = ("digital signature", "client auth"),
        san: str = "") -> tuple[dict[str, Any], x509.CertificateSigningRequest]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([*(x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    b = x509.CertificateSigningRequestBuilder().subject_name(name)
    if san:
        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(san)]), critical=False)
    pem = b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
    obj = {"spec": {**requester, "signerName": "kubernetes.io/kube-apiserver-client",
                    "usages": list(usages), "request": base64.b64encode(pem).decode()}}
    return obj, parse_csr(obj["spec"]["request"])


def test_a_node_may_get_its_add_ons_identities() -> None:
    assert node_addon_problem(*csr("system:kube-proxy")) is None
    assert node_addon_problem(*csr("system:serviceaccount:kube-system:kube-dns",
                                   ("system:serviceaccounts",
                                    "system:serviceaccounts:kube-system"))) is None


def test_nothing_else() -> None:
    admin = {"username": "jane", "groups": ["system:authenticated"]}
    assert node_addon_problem(*csr("system:kube-proxy", requester=admin)) == \
        "the requester is not a node"
    assert "not a node add-on identity" in node_addon_problem(*csr("system:admin"))  # type: ignore[operator]
    assert "organizations" in node_addon_problem(*csr("system:kube-proxy", ("system:masters",)))  # type: ignore[operator]
    assert "organizations" in node_addon_problem(  # type: ignore[operator]
        *csr("system:serviceaccount:kube-system:kube-dns"))
    assert node_addon_problem(*csr("system:kube-proxy", san="evil.example")) == \
        "subject alternative names are not allowed"
    assert "usage" in node_addon_problem(*csr("system:kube-proxy", usages=("server auth",)))  # type: ignore[operator]
