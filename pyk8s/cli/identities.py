"""The control-plane components' own identities in `pyk8s up` (kubeadm's
controller-manager.conf and scheduler.conf).

`up` runs the controller manager and the scheduler in its process, each with a kubeconfig
of its own: a client certificate from the cluster CA with CN `system:kube-controller-manager`
or `system:kube-scheduler` and no O (so no group: the bootstrap policy binds the
`system:kube-controller-manager` / `system:kube-scheduler` roles to these users). The
files are DATA_DIR/controller-manager.kubeconfig and DATA_DIR/scheduler.kubeconfig, 0600;
a certificate is kept across starts while it is the CA's, names the right user and has
more than 90 days left (k3s renews its certificates at start the same way), else a new
one (365 days) replaces it. The server URL is rewritten on every start.
"""
from __future__ import annotations

import base64
import datetime
import logging
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from pyk8s.apiserver.certs import issue_client_certificate, write_client_kubeconfig

log = logging.getLogger("pyk8s.cli.identities")

CONTROLLER_MANAGER_USER = "system:kube-controller-manager"
SCHEDULER_USER = "system:kube-scheduler"
CONTROLLER_MANAGER_KUBECONFIG = "controller-manager.kubeconfig"
SCHEDULER_KUBECONFIG = "scheduler.kubeconfig"
CERT_DAYS = 365
RENEW_BEFORE = datetime.timedelta(days=90)


def _current_credentials(path: Path, ca_cert: Path, user: str,
                         renew_before: datetime.timedelta) -> tuple[bytes, bytes] | None:
    """The kubeconfig's certificate and key when they can stay, else None."""
    try:
        cfg = yaml.safe_load(path.read_text()) or {}
        users = cfg.get("users") or []
        creds = (users[0].get("user") or {}) if len(users) == 1 else {}
        cert_pem = base64.b64decode(creds["client-certificate-data"])
        key_pem = base64.b64decode(creds["client-key-data"])
        cert = x509.load_pem_x509_certificate(cert_pem)
        key = serialization.load_pem_private_key(key_pem, password=None)
        ca = x509.load_pem_x509_certificate(ca_cert.read_bytes())
        cert.verify_directly_issued_by(ca)
    except FileNotFoundError:
        return None
    except Exception as e:  # unreadable, or another CA's
        log.info("%s: issuing a new client certificate (%s)", path, e or type(e).__name__)
        return None
    subject = cert.subject
    cns = [a.value for a in subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if cns != [user] or subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME):
        return None
    same_key = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) == \
        cert.public_key().public_bytes(serialization.Encoding.DER,
                                       serialization.PublicFormat.SubjectPublicKeyInfo)
    now = datetime.datetime.now(datetime.timezone.utc)
    if not same_key or cert.not_valid_after_utc - now < renew_before:
        return None
    return cert_pem, key_pem


def ensure_component_kubeconfig(path: Path, server: str, ca_cert: Path, ca_key: Path,
                                user: str, *, days: int = CERT_DAYS,
                                renew_before: datetime.timedelta = RENEW_BEFORE) -> Path:
    """Write `path`: a kubeconfig for `server` authenticating as `user` (no groups) with a
    client certificate of the CA, reused while still good (module docstring)."""
    creds = _current_credentials(path, ca_cert, user, renew_before)
    if creds is None:
        creds = issue_client_certificate(ca_cert, ca_key, user, (), days)
        log.info("issued a client certificate for %s (%s)", user, path)
    write_client_kubeconfig(path, server, ca_cert, creds[0], creds[1], user)
    return path


def ensure_control_plane_kubeconfigs(data_dir: Path, server: str) -> tuple[Path, Path]:
    """`up`'s two kubeconfigs (controller manager, scheduler), from DATA_DIR/tls's CA."""
    tls = data_dir / "tls"
    return (ensure_component_kubeconfig(data_dir / CONTROLLER_MANAGER_KUBECONFIG, server,
                                        tls / "ca.crt", tls / "ca.key",
                                        CONTROLLER_MANAGER_USER),
            ensure_component_kubeconfig(data_dir / SCHEDULER_KUBECONFIG, server,
                                        tls / "ca.crt", tls / "ca.key", SCHEDULER_USER))


__all__ = ["ensure_component_kubeconfig", "ensure_control_plane_kubeconfigs",
           "CONTROLLER_MANAGER_USER", "SCHEDULER_USER"]
