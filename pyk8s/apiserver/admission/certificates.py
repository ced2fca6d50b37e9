"""Upstream's certificate admission plugins (plugin/pkg/admission/certificates):

- CertificateApproval: approving or denying a CertificateSigningRequest needs the `approve`
  verb on `signers` (certificates.k8s.io) named after its signer, or `<domain>/*`;
- CertificateSigning: setting `status.certificate` needs `sign` on the signer the same way;
- CertificateSubjectRestriction: no `system:masters` through the
  `kubernetes.io/kube-apiserver-client` signer.
"""
from __future__ import annotations

from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID

from pyk8s.apiserver.admission.chain import CREATE, UPDATE, Attributes, Plugin, forbidden
from pyk8s.apiserver.authz.attributes import Attributes as AuthzAttributes, Decision

GROUP = "certificates.k8s.io"
API_SERVER_CLIENT_SIGNER = "kubernetes.io/kube-apiserver-client"


def _is_csr(attrs: Attributes) -> bool:
    return attrs.group == GROUP and attrs.resource == "certificatesigningrequests"


def _signer(attrs: Attributes) -> str:
    return str(((attrs.object or {}).get("spec") or {}).get("signerName") or "")


async def authorized_for_signer(server: Any, user: Any, verb: str, signer: str) -> bool:
    """Upstream's IsAuthorizedForSignerName: `verb` on the signer, else on `<domain>/*`."""
    authorizer = server.authorizer
    if authorizer is None or user is None:  # no authentication: nothing to check
        return True
    for name in (signer, signer.split("/", 1)[0] + "/*"):
        decision, _ = await authorizer.authorize(AuthzAttributes(
            user, verb, api_group=GROUP, api_version="*", resource="signers", name=name))
        if decision == Decision.ALLOW:
            return True
    return False


class _SignerVerb(Plugin):
    """A CSR update through `subresource` needs `verb` on the CSR's signer."""
    validating = True
    subresource = ""
    verb = ""

    def __init__(self, server: Any) -> None:
        self.server = server

    def handles(self, attrs: Attributes) -> bool:
        return _is_csr(attrs) and attrs.operation == UPDATE and \
            attrs.subresource == self.subresource

    def checked(self, attrs: Attributes) -> bool:
        """Whether this update needs the permission."""
        return True

    async def validate(self, attrs: Attributes) -> None:
        if not self.checked(attrs):
            return
        signer = _signer(attrs)
        if not await authorized_for_signer(self.server, attrs.user, self.verb, signer):
            raise forbidden(attrs, f'user not permitted to {self.verb} requests with '
                                   f'signerName "{signer}"')


class CertificateApproval(_SignerVerb):
    name = "CertificateApproval"
    subresource = "approval"
    verb = "approve"


class CertificateSigning(_SignerVerb):
    name = "CertificateSigning"
    subresource = "status"
    verb = "sign"

    def checked(self, attrs: Attributes) -> bool:
        """Only a change of `status.certificate` needs `sign`."""
        new = ((attrs.object or {}).get("status") or {}).get("certificate")
        old = ((attrs.old_object or {}).get("status") or {}).get("certificate")
        return new != old


class CertificateSubjectRestriction(Plugin):
    name = "CertificateSubjectRestriction"
    validating = True

    def handles(self, attrs: Attributes) -> bool:
        return _is_csr(attrs) and attrs.operation == CREATE and not attrs.subresource

    async def validate(self, attrs: Attributes) -> None:
        if _signer(attrs) != API_SERVER_CLIENT_SIGNER:
            return
        import base64
        request = ((attrs.object or {}).get("spec") or {}).get("request") or ""
        try:
            csr = x509.load_pem_x509_csr(base64.b64decode(request))
        except ValueError:
            return  # validation reports a malformed request
        orgs = [str(a.value) for a in csr.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
        if "system:masters" in orgs:
            raise forbidden(attrs, f"use of {API_SERVER_CLIENT_SIGNER} signer with "
                                   "system:masters group is not allowed")
