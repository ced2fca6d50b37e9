"""`pyk8s up`'s own node gets its certificates from `up` itself, which holds the cluster
CA — as `kubeadm init` writes its node's kubelet.conf instead of bootstrapping it: the
kubelet's client certificate (`system:node:<name>`, O `system:nodes`) and its add-ons'
(`system:kube-proxy`, the kube-dns service account), written where the agent keeps them
(DATA_DIR/agent/pki, DATA_DIR/agent/kubelet.kubeconfig). The local node then starts without
a round trip through the controller manager's CSR approval; later renewals go through CSRs
as any node's do. Agents joining with `pyk8s agent` bootstrap through CSRs."""
from __future__ import annotations

import logging
from pathlib import Path

from pyk8s.apiserver.certs import issue_client_certificate
from pyk8s.cli.addonidentity import DNS, PROXY
from pyk8s.kubelet.bootstrap import CLIENT_PREFIX, write_node_kubeconfig
from pyk8s.kubelet.certificates import CertificateStore, Subject

log = logging.getLogger("pyk8s.cli.localnodecerts")


def issue_local_node_certificates(data_dir: Path, server: str, node_name: str) -> None:
    tls, agent = data_dir / "tls", data_dir / "agent"
    ca_cert, ca_key = tls / "ca.crt", tls / "ca.key"
    ca_data = ca_cert.read_bytes()
    node_store = CertificateStore(agent / "pki", CLIENT_PREFIX)
    for store, subject in ((node_store, Subject.node(node_name)),
                           (CertificateStore(agent / "pki", "kube-proxy-client"), PROXY),
                           (CertificateStore(agent / "pki", "kube-dns-client"), DNS)):
        pair = store.current()
        if pair is not None and not pair.expired() and \
                pair.common_name == subject.common_name and pair.issued_by(ca_data):
            continue
        cert, key = issue_client_certificate(ca_cert, ca_key, subject.common_name,
                                             subject.organizations)
        store.dir.mkdir(parents=True, exist_ok=True)
        store.update(cert, key)
        log.info("issued the local node's %s certificate", subject.common_name)
    write_node_kubeconfig(agent / "kubelet.kubeconfig", server, ca_data, False,
                          node_store.current_path)
