"""`up`'s component kubeconfigs: a client certificate per component (CN = user, no O),
0600, kept while good, issued again when missing, expiring, another user's or another
CA's."""
from __future__ import annotations

import base64
import datetime
import stat
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.x509.oid import NameOID

from pyk8s.apiserver.certs import ensure_credentials
from pyk8s.cli.identities import (SCHEDULER_USER, ensure_component_kubeconfig,
                                  ensure_control_plane_kubeconfigs)

SERVER = "https://127.0.0.1:6443"


def certificate(path: Path) -> x509.Certificate:
    user = yaml.safe_load(path.read_text())["users"][0]["user"]
    return x509.load_pem_x509_certificate(base64.b64decode(user["client-certificate-data"]))


def test_issued_kept_and_reissued(tmp_path: Path) -> None:
    creds = ensure_credentials(tmp_path)
    cm, sched = ensure_control_plane_kubeconfigs(tmp_path, SERVER)
    assert (cm.name, sched.name) == ("controller-manager.kubeconfig", "scheduler.kubeconfig")
    for path, user in ((cm, "system:kube-controller-manager"), (sched, SCHEDULER_USER)):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        cfg = yaml.safe_load(path.read_text())
        assert cfg["clusters"][0]["cluster"]["server"] == SERVER
        assert cfg["users"][0]["name"] == user
        cert = certificate(path)
        assert [a.value for a in cert.subject] == [user]                    # CN only
        assert not cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
        cert.verify_directly_issued_by(
            x509.load_pem_x509_certificate(creds.ca_cert.read_bytes()))
        left = cert.not_valid_after_utc - datetime.datetime.now(datetime.timezone.utc)
        assert datetime.timedelta(days=364) < left <= datetime.timedelta(days=365)
    serial = certificate(sched).serial_number
    # A second start keeps a good certificate, with the current server URL.
    ensure_control_plane_kubeconfigs(tmp_path, "https://127.0.0.1:7443")
    assert certificate(sched).serial_number == serial
    assert yaml.safe_load(sched.read_text())["clusters"][0]["cluster"]["server"] == \
        "https://127.0.0.1:7443"
    # Missing: issued again.
    sched.unlink()
    ensure_control_plane_kubeconfigs(tmp_path, SERVER)
    assert certificate(sched).serial_number != serial


def test_expiring_foreign_or_wrong_user_is_replaced(tmp_path: Path) -> None:
    ensure_credentials(tmp_path)
    tls = tmp_path / "tls"
    path = tmp_path / "scheduler.kubeconfig"
    ensure_component_kubeconfig(path, SERVER, tls / "ca.crt", tls / "ca.key", SCHEDULER_USER,
                                days=30)                                   # < 90 days left
    short = certificate(path).serial_number
    ensure_component_kubeconfig(path, SERVER, tls / "ca.crt", tls / "ca.key", SCHEDULER_USER)
    renewed = certificate(path)
    assert renewed.serial_number != short
    # Another user's certificate in the file: replaced.
    ensure_component_kubeconfig(path, SERVER, tls / "ca.crt", tls / "ca.key", "someone-else")
    assert [a.value for a in certificate(path).subject] == ["someone-else"]
    ensure_component_kubeconfig(path, SERVER, tls / "ca.crt", tls / "ca.key", SCHEDULER_USER)
    mine = certificate(path).serial_number
    # A new CA (the data dir's tls/ was replaced): replaced.
    other = tmp_path / "other"
    ensure_credentials(other)
    ensure_component_kubeconfig(path, SERVER, other / "tls" / "ca.crt",
                                other / "tls" / "ca.key", SCHEDULER_USER)
    assert certificate(path).serial_number != mine
    certificate(path).verify_directly_issued_by(
        x509.load_pem_x509_certificate((other / "tls" / "ca.crt").read_bytes()))
