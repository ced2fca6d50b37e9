"""How the API server connects to kubelets (upstream's KubeletClientConfig): the kubelet's
serving certificate is verified against `--kubelet-certificate-authority` (host name or
IP checked as upstream), and the API server presents its own client certificate
(`--kubelet-client-certificate` / `--kubelet-client-key`), which the kubelet
authenticates and authorizes with a SubjectAccessReview."""
from __future__ import annotations

import ssl
from dataclasses import dataclass

import aiohttp

from pyk8s.api import errors


@dataclass(frozen=True)
class KubeletClientConfig:
    ca_file: str = ""          # --kubelet-certificate-authority ("": not verified)
    cert_file: str = ""        # --kubelet-client-certificate
    key_file: str = ""         # --kubelet-client-key

    def ssl_context(self) -> ssl.SSLContext | bool:
        """aiohttp's `ssl`: a verifying context when a CA is configured, else no
        verification (False), as upstream without --kubelet-certificate-authority."""
        if self.ca_file:
            ctx = ssl.create_default_context(cafile=self.ca_file)
        elif self.cert_file:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        else:
            return False
        if self.cert_file and self.key_file:
            ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx


def dial_error(method: str, url: str, e: aiohttp.ClientError) -> errors.ApiError:
    """The error for a failed connection to a kubelet; a serving certificate the kubelet
    CA does not vouch for says so plainly (upstream: `tls: failed to verify certificate:
    x509: …`)."""
    cert_error = getattr(e, "certificate_error", None)
    if isinstance(e, aiohttp.ClientConnectorCertificateError) or \
            isinstance(cert_error, ssl.SSLCertVerificationError):
        detail = getattr(cert_error, "verify_message", "") or str(cert_error or e)
        return errors.ApiError(
            f'{method} "{url}": tls: failed to verify certificate: x509: {detail} (the '
            f"kubelet's serving certificate is not valid for --kubelet-certificate-authority)",
            code=500, reason="InternalError")
    return errors.ServiceUnavailable(f"error dialing the kubelet: {e}")
