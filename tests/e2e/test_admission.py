"""Admission in a real `pyk8s up`: webhooks served over HTTPS by this test process,
ResourceQuota (admission + the quota controller), LimitRange defaults and the
ServiceAccount plugin, driven by kubectl."""
from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import ServerProcess, free_port
from tests.e2e.test_controllers import wait_for


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    up = ServerProcess(tmp_path_factory.mktemp("pyk8s-adm"), command="up",
                       ready_log="resource quota controller: synced").start()
    try:
        yield up
    finally:
        up.stop()


def _cert(subject: str, key: Any, issuer: x509.Name | None, issuer_key: Any,
          ca: bool) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    b = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer or name)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(minutes=5))
         .not_valid_after(now + datetime.timedelta(days=1))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        b = b.add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
             x509.DNSName("webhook.wh.svc")]), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


class Webhook:
    """An HTTPS AdmissionReview server: /validate denies objects labelled deny=true,
    /mutate adds the label mutated=yes; every review is recorded."""

    def __init__(self, tmp: Path) -> None:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = _cert("webhook-ca", ca_key, None, ca_key, True)
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _cert("webhook", key, ca.subject, ca_key, False)
        pem = cert.public_bytes(serialization.Encoding.PEM)
        (tmp / "wh.crt").write_bytes(pem)
        (tmp / "wh.key").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        self.ca_bundle = base64.b64encode(ca.public_bytes(serialization.Encoding.PEM)).decode()
        self.reviews: list[dict[str, Any]] = []
        self.port = free_port()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                hook.reviews.append(review)
                req = review["request"]
                resp: dict[str, Any] = {"uid": req["uid"], "allowed": True}
                labels = ((req.get("object") or {}).get("metadata") or {}).get("labels") or {}
                if self.path == "/validate" and labels.get("deny") == "true":
                    resp = {"uid": req["uid"], "allowed": False,
                            "status": {"code": 403, "message": "objects labelled deny=true "
                                                               "are not welcome"}}
                elif self.path == "/mutate":
                    ops = [{"op": "add", "path": "/metadata/labels/mutated", "value": "yes"}]
                    if not labels:
                        ops = [{"op": "add", "path": "/metadata/labels",
                                "value": {"mutated": "yes"}}]
                    resp["patchType"] = "JSONPatch"
                    resp["patch"] = base64.b64encode(json.dumps(ops).encode()).decode()
                body = json.dumps({"apiVersion": "admission.k8s.io/v1",
                                   "kind": "AdmissionReview", "response": resp}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(tmp / "wh.crt", tmp / "wh.key")
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def webhook(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Webhook]:
    wh = Webhook(tmp_path_factory.mktemp("webhook"))
    try:
        yield wh
    finally:
        wh.stop()


def webhook_config(kind: str, name: str, url: str, ca: str, **extra: Any) -> str:
    return json.dumps({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": kind,
        "metadata": {"name": name},
        "webhooks": [{
            "name": f"{name}.example.com", "sideEffects": "None",
            "admissionReviewVersions": ["v1"], "timeoutSeconds": 5,
            "clientConfig": {"url": url, "caBundle": ca},
            "namespaceSelector": {"matchLabels": {"webhooks": "on"}},
            "rules": [{"operations": ["CREATE", "UPDATE"], "apiGroups": [""],
                       "apiVersions": ["v1"], "resources": ["configmaps"]}], **extra}]})


def configmap(name: str, ns: str, labels: dict[str, str] | None = None) -> str:
    md: dict[str, Any] = {"name": name, "namespace": ns}
    if labels:
        md["labels"] = labels
    return json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": md,
                       "data": {"k": "v"}})


def test_webhooks_reject_and_mutate(cluster: ServerProcess, webhook: Webhook) -> None:
    cluster.kubectl("create", "namespace", "wh")
    cluster.kubectl("label", "namespace", "wh", "webhooks=on")
    cluster.kubectl("apply", "-f", "-", input=webhook_config(
        "ValidatingWebhookConfiguration", "deny", webhook.url("/validate"), webhook.ca_bundle))
    cluster.kubectl("apply", "-f", "-", input=webhook_config(
        "MutatingWebhookConfiguration", "label", webhook.url("/mutate"), webhook.ca_bundle))
    got = cluster.kubectl_json("get", "validatingwebhookconfiguration", "deny")
    assert got["webhooks"][0]["failurePolicy"] == "Fail"

    p = cluster.kubectl("apply", "-f", "-", input=configmap("bad", "wh", {"deny": "true"}),
                        check=False)
    assert p.returncode != 0
    assert 'admission webhook "deny.example.com" denied the request: objects labelled ' \
           "deny=true are not welcome" in p.stderr, p.stderr
    assert cluster.get("/api/v1/namespaces/wh/configmaps/bad").status == 404

    out = cluster.kubectl("apply", "-f", "-", "-o", "json", input=configmap("good", "wh"))
    assert json.loads(out.stdout)["metadata"]["labels"] == {"mutated": "yes"}
    stored = cluster.kubectl_json("get", "configmap", "good", "-n", "wh")
    assert stored["metadata"]["labels"] == {"mutated": "yes"}
    # The mutating webhook ran first (it saw no label), the validating one saw the result.
    ops = [(r["request"]["operation"], r["request"]["name"]) for r in webhook.reviews]
    assert ("CREATE", "good") in ops
    last = [r for r in webhook.reviews if r["request"]["name"] == "good"][-1]
    assert last["request"]["object"]["metadata"]["labels"] == {"mutated": "yes"}
    assert last["request"]["userInfo"]["username"]
    assert last["request"]["kind"] == {"group": "", "version": "v1", "kind": "ConfigMap"}

    # dry run goes through admission too
    p = cluster.kubectl("apply", "--dry-run=server", "-f", "-",
                        input=configmap("bad2", "wh", {"deny": "true"}), check=False)
    assert "denied the request" in p.stderr, p.stderr
    # namespaceSelector: other namespaces are not sent to the webhooks
    n = len(webhook.reviews)
    out = cluster.kubectl("apply", "-f", "-", "-o", "json",
                          input=configmap("free", "default", {"deny": "true"}))
    assert json.loads(out.stdout)["metadata"]["labels"] == {"deny": "true"}
    assert len(webhook.reviews) == n


def test_webhook_failure_policy(cluster: ServerProcess, webhook: Webhook) -> None:
    cluster.kubectl("create", "namespace", "whfail")
    cluster.kubectl("label", "namespace", "whfail", "webhooks=fail")
    dead = f"https://127.0.0.1:{free_port()}/validate"
    cfg = json.loads(webhook_config("ValidatingWebhookConfiguration", "dead", dead,
                                    webhook.ca_bundle))
    cfg["webhooks"][0]["namespaceSelector"] = {"matchLabels": {"webhooks": "fail"}}
    ignore = json.loads(json.dumps(cfg))
    ignore["metadata"]["name"] = "dead-ignored"
    ignore["webhooks"][0]["name"] = "ignored.example.com"
    ignore["webhooks"][0]["failurePolicy"] = "Ignore"
    cluster.kubectl("apply", "-f", "-", input=json.dumps(ignore))
    cluster.kubectl("apply", "-f", "-", input=configmap("ok", "whfail"))
    cluster.kubectl("apply", "-f", "-", input=json.dumps(cfg))
    p = cluster.kubectl("apply", "-f", "-", input=configmap("ko", "whfail"), check=False)
    assert 'failed calling webhook "dead.example.com"' in p.stderr, p.stderr
    cluster.kubectl("delete", "validatingwebhookconfiguration", "dead", "dead-ignored")


def test_webhook_by_service_reference(cluster: ServerProcess, webhook: Webhook) -> None:
    """clientConfig.service: resolved through the Service's Endpoints; TLS verifies the
    name webhook.wh.svc."""
    cluster.kubectl("apply", "-f", "-", input=json.dumps(  # the Service's namespace
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "wh"}}))
    cluster.kubectl("create", "namespace", "whsvc")
    cluster.kubectl("label", "namespace", "whsvc", "webhooks=svc")
    cluster.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
        "items": [
            {"apiVersion": "v1", "kind": "Service",
             "metadata": {"name": "webhook", "namespace": "wh"},
             "spec": {"ports": [{"name": "https", "port": 443}]}},
            {"apiVersion": "v1", "kind": "Endpoints",
             "metadata": {"name": "webhook", "namespace": "wh"},
             "subsets": [{"addresses": [{"ip": "127.0.0.1"}],
                          "ports": [{"name": "https", "port": webhook.port}]}]}]}))
    cfg = json.loads(webhook_config("ValidatingWebhookConfiguration", "svc", "",
                                    webhook.ca_bundle))
    cfg["webhooks"][0]["clientConfig"] = {
        "service": {"namespace": "wh", "name": "webhook", "path": "/validate"},
        "caBundle": webhook.ca_bundle}
    cfg["webhooks"][0]["namespaceSelector"] = {"matchLabels": {"webhooks": "svc"}}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(cfg))
    p = cluster.kubectl("apply", "-f", "-", input=configmap("bad", "whsvc", {"deny": "true"}),
                        check=False)
    assert 'admission webhook "svc.example.com" denied the request' in p.stderr, p.stderr
    cluster.kubectl("apply", "-f", "-", input=configmap("fine", "whsvc"))
    cluster.kubectl("delete", "validatingwebhookconfiguration", "svc")


def quota_used(c: ServerProcess, ns: str, name: str) -> dict[str, str]:
    r = c.get(f"/api/v1/namespaces/{ns}/resourcequotas/{name}")
    return dict((r.json().get("status") or {}).get("used") or {})


def test_resource_quota_blocks_and_follows_deletes(cluster: ServerProcess) -> None:
    cluster.kubectl("create", "namespace", "quota")
    # The root CA publisher's kube-root-ca.crt is in every namespace, and counts.
    wait_for("kube-root-ca.crt", lambda: cluster.get(
        "/api/v1/namespaces/quota/configmaps/kube-root-ca.crt").status == 200)
    cluster.kubectl("create", "quota", "q", "-n", "quota", "--hard=configmaps=3")
    wait_for("quota status", lambda: quota_used(cluster, "quota", "q") == {"configmaps": "1"})
    for name in ("c1", "c2"):
        cluster.kubectl("apply", "-f", "-", input=configmap(name, "quota"))
    assert quota_used(cluster, "quota", "q") == {"configmaps": "3"}
    p = cluster.kubectl("apply", "-f", "-", input=configmap("c3", "quota"), check=False)
    assert p.returncode != 0
    assert 'configmaps "c3" is forbidden: exceeded quota: q, requested: configmaps=1, ' \
           "used: configmaps=3, limited: configmaps=3" in p.stderr, p.stderr
    r = cluster.post("/api/v1/namespaces/quota/configmaps",
                     json.loads(configmap("c3", "quota")))
    assert r.status == 403 and r.json()["reason"] == "Forbidden", r
    cluster.kubectl("delete", "configmap", "c1", "-n", "quota")
    wait_for("used follows the delete",
             lambda: quota_used(cluster, "quota", "q") == {"configmaps": "2"}, timeout=10)
    cluster.kubectl("apply", "-f", "-", input=configmap("c3", "quota"))
    assert quota_used(cluster, "quota", "q") == {"configmaps": "3"}
    out = cluster.kubectl("describe", "quota", "q", "-n", "quota").stdout
    assert "configmaps" in out and "3" in out


def test_limit_range_and_service_account_defaults(cluster: ServerProcess) -> None:
    cluster.kubectl("create", "namespace", "lr")
    cluster.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "lr", "namespace": "lr"},
        "spec": {"limits": [{"type": "Container", "default": {"cpu": "300m", "memory": "64Mi"},
                             "defaultRequest": {"cpu": "100m"}, "max": {"cpu": "1"}}]}}))
    out = cluster.kubectl("run", "web", "-n", "lr", "--image=nginx", "-o", "json")
    pod = json.loads(out.stdout)
    assert pod["spec"]["containers"][0]["resources"] == {
        "limits": {"cpu": "300m", "memory": "64Mi"},
        "requests": {"cpu": "100m", "memory": "64Mi"}}
    assert pod["spec"]["serviceAccountName"] == "default"
    assert {t["key"] for t in pod["spec"]["tolerations"]} == {
        "node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"}
    p = cluster.kubectl("apply", "-f", "-", check=False, input=json.dumps({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "big", "namespace": "lr"},
        "spec": {"containers": [{"name": "c", "image": "nginx",
                                 "resources": {"limits": {"cpu": "2"}}}]}}))
    assert 'pods "big" is forbidden: maximum cpu usage per Container is 1, but limit is 2' \
        in p.stderr, p.stderr


def test_csr_approval_runtimeclass_apiservice(cluster: ServerProcess) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "alice")])).sign(key, hashes.SHA256()))
    request = base64.b64encode(csr.public_bytes(serialization.Encoding.PEM)).decode()
    cluster.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
        "metadata": {"name": "alice"},
        "spec": {"request": request, "signerName": "kubernetes.io/kube-apiserver-client",
                 "usages": ["client auth"]}}))
    cluster.kubectl("certificate", "approve", "alice")
    got = cluster.kubectl_json("get", "csr", "alice")
    assert [c["type"] for c in got["status"]["conditions"]] == ["Approved"]
    assert got["spec"]["username"]  # the requesting user, set by the server
    p = cluster.kubectl("certificate", "deny", "alice", check=False)
    assert p.returncode != 0 or "mutually exclusive" in p.stderr or "denied" in p.stdout
    cluster.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": "gvisor"},
        "handler": "runsc"}))
    assert cluster.kubectl_json("get", "runtimeclass", "gvisor")["handler"] == "runsc"
    cluster.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
        "metadata": {"name": "v1.example.com"},
        "spec": {"group": "example.com", "version": "v1", "groupPriorityMinimum": 1000,
                 "versionPriority": 15}}))
    assert cluster.kubectl_json("get", "apiservice", "v1.example.com")["spec"]["group"] == \
        "example.com"


def test_kubectl_get_tables(cluster: ServerProcess) -> None:
    out = cluster.kubectl("get", "csr").stdout
    assert out.split("\n")[0].split() == ["NAME", "AGE", "SIGNERNAME", "REQUESTOR",
                                          "REQUESTEDDURATION", "CONDITION"], out
    assert "Approved" in out
    out = cluster.kubectl("get", "runtimeclass").stdout
    assert out.split("\n")[0].split() == ["NAME", "HANDLER", "AGE"] and "runsc" in out
    out = cluster.kubectl("get", "validatingwebhookconfigurations").stdout
    assert out.split("\n")[0].split() == ["NAME", "WEBHOOKS", "AGE"]
    out = cluster.kubectl("get", "apiservices").stdout
    assert out.split("\n")[0].split() == ["NAME", "SERVICE", "AVAILABLE", "AGE"] and \
        "Local" in out


WIDGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.quota.example.com"},
    "spec": {"group": "quota.example.com", "scope": "Namespaced",
             "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
             "versions": [{"name": "v1", "served": True, "storage": True, "schema": {
                 "openAPIV3Schema": {"type": "object",
                                     "x-kubernetes-preserve-unknown-fields": True}}}]}}


def test_quota_counts_custom_resources(cluster: ServerProcess) -> None:
    cluster.kubectl("apply", "-f", "-", input=json.dumps(WIDGET_CRD))
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=20s",
                    "crd/widgets.quota.example.com")
    cluster.kubectl("create", "namespace", "cr-quota")
    cluster.kubectl("create", "quota", "w", "-n", "cr-quota",
                    "--hard=count/widgets.quota.example.com=1")
    key = "count/widgets.quota.example.com"
    wait_for("quota status", lambda: quota_used(cluster, "cr-quota", "w") == {key: "0"})

    def widget(name: str) -> str:
        return json.dumps({"apiVersion": "quota.example.com/v1", "kind": "Widget",
                           "metadata": {"name": name, "namespace": "cr-quota"}})
    cluster.kubectl("apply", "-f", "-", input=widget("w1"))
    p = cluster.kubectl("apply", "-f", "-", input=widget("w2"), check=False)
    assert f"exceeded quota: w, requested: {key}=1, used: {key}=1, limited: {key}=1" \
        in p.stderr, p.stderr
    cluster.kubectl("delete", "widget", "w1", "-n", "cr-quota")
    wait_for("used follows the delete", lambda: quota_used(cluster, "cr-quota", "w") == {key: "0"},
             timeout=20)
