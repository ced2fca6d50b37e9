"""Authorization end to end: RBAC with upstream's messages, escalation prevention, the access
reviews behind `kubectl auth can-i`, impersonation, anonymous requests, and the other
`--authorization-mode`s — a real `pyk8s server`, real kubectl, tokens of real service
accounts."""
from __future__ import annotations

import http.server
import json
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from tests.conftest import KUBECTL, ServerProcess, free_port


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    # `up`: the controllers make the default ServiceAccounts and aggregate admin / edit / view
    s = ServerProcess(tmp_path_factory.mktemp("rbac"), command="up").start()
    try:
        # edit / view get their rules from the clusterrole-aggregation controller
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not all(
                s.kubectl_json("get", "clusterrole", r).get("rules") for r in ("edit", "view")):
            time.sleep(0.1)
        yield s
    finally:
        s.stop()


def token_for(server: ServerProcess, sa: str, namespace: str = "default") -> str:
    if sa != "default":
        server.kubectl("create", "serviceaccount", sa, "-n", namespace, check=False)
    deadline = time.monotonic() + 20  # `default` comes from the serviceaccount controller
    while True:
        p = server.kubectl("create", "token", sa, "-n", namespace, check=False)
        if p.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


def kubectl_as_token(server: ServerProcess, token: str, *args: str,
                     check: bool = False) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, HOME=str(server.data_dir))
    env.pop("KUBECONFIG", None)
    return subprocess.run([KUBECTL, "--server", server.url, "--insecure-skip-tls-verify",
                           "--token", token, *args], capture_output=True, text=True, env=env,
                          timeout=60, check=check)


def test_service_account_needs_a_binding(server: ServerProcess) -> None:
    token = token_for(server, "default")
    r = server.get("/api/v1/namespaces/default/pods", token=token)
    assert r.status == 403
    body = r.json()
    assert body["reason"] == "Forbidden" and body["details"] == {"kind": "pods"}
    assert body["message"] == (
        'pods is forbidden: User "system:serviceaccount:default:default" cannot list '
        'resource "pods" in API group "" in the namespace "default"')
    server.kubectl("create", "rolebinding", "default-view", "--clusterrole=view",
                   "--serviceaccount=default:default")
    assert server.get("/api/v1/namespaces/default/pods", token=token).status == 200
    # view is namespaced here: other namespaces and writes stay closed
    assert server.get("/api/v1/namespaces/kube-system/pods", token=token).status == 403
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
           "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
    r = server.post("/api/v1/namespaces/default/pods", pod, token=token)
    assert r.status == 403
    assert 'cannot create resource "pods"' in r.json()["message"]
    # view never shows secrets
    assert server.get("/api/v1/namespaces/default/secrets", token=token).status == 403

    sa = "--as=system:serviceaccount:default:default"
    out = server.kubectl("auth", "can-i", "--list", sa).stdout
    pods_line = next(line for line in out.splitlines() if line.startswith("pods "))
    assert "[get list watch]" in pods_line
    assert "selfsubjectaccessreviews.authorization.k8s.io" in out  # system:basic-user
    assert server.kubectl("auth", "can-i", "list", "pods", sa).stdout.strip() == "yes"
    p = server.kubectl("auth", "can-i", "create", "pods", sa, check=False)
    assert p.returncode == 1 and p.stdout.strip() == "no"
    # the token itself asks too (SelfSubjectAccessReview)
    assert kubectl_as_token(server, token, "auth", "can-i", "watch", "pods").stdout.strip() == "yes"
    assert kubectl_as_token(server, token, "auth", "can-i", "delete", "pods").stdout.strip() == "no"


def test_escalation_prevention(server: ServerProcess) -> None:
    server.kubectl("create", "namespace", "esc")
    token = token_for(server, "editor", "esc")
    server.kubectl("create", "rolebinding", "editor-edit", "--clusterrole=edit",
                   "--serviceaccount=esc:editor", "-n", "esc")
    server.kubectl("create", "role", "binder", "--verb=create,get,list",
                   "--resource=rolebindings.rbac.authorization.k8s.io,roles.rbac.authorization.k8s.io",
                   "-n", "esc")
    server.kubectl("create", "rolebinding", "editor-binder", "--role=binder",
                   "--serviceaccount=esc:editor", "-n", "esc")
    # binding cluster-admin to itself: refused with upstream's escalation message
    p = kubectl_as_token(server, token, "create", "rolebinding", "self-admin",
                         "--clusterrole=cluster-admin", "--serviceaccount=esc:editor", "-n", "esc")
    assert p.returncode != 0
    assert ('rolebindings.rbac.authorization.k8s.io "self-admin" is forbidden: user '
            '"system:serviceaccount:esc:editor" (groups=["system:serviceaccounts" '
            '"system:serviceaccounts:esc" "system:authenticated"]) is attempting to grant RBAC '
            'permissions not currently held:') in p.stderr
    assert '{APIGroups:["*"], Resources:["*"], Verbs:["*"]}' in p.stderr
    # a role with rules it does not hold: refused too; one within its rights: fine
    p = kubectl_as_token(server, token, "create", "role", "secrets-deleter", "--verb=delete",
                         "--resource=nodes", "-n", "esc")
    assert p.returncode != 0 and "attempting to grant RBAC permissions not currently held" in p.stderr
    assert '{APIGroups:[""], Resources:["nodes"], Verbs:["delete"]}' in p.stderr
    kubectl_as_token(server, token, "create", "role", "pod-reader", "--verb=get,list",
                     "--resource=pods", "-n", "esc", check=True)
    kubectl_as_token(server, token, "create", "rolebinding", "self-view", "--clusterrole=view",
                     "--serviceaccount=esc:editor", "-n", "esc", check=True)
    # the admin may bind anything
    server.kubectl("create", "rolebinding", "self-admin", "--clusterrole=cluster-admin",
                   "--serviceaccount=esc:editor", "-n", "esc")
    assert kubectl_as_token(server, token, "auth", "can-i", "delete", "secrets", "-n",
                            "esc").stdout.strip() == "yes"
    # with the bind verb on cluster-admin, a user may bind it without holding it
    server.kubectl("create", "clusterrole", "bind-admin", "--verb=bind",
                   "--resource=clusterroles.rbac.authorization.k8s.io",
                   "--resource-name=cluster-admin")
    server.kubectl("create", "namespace", "esc2")
    token2 = token_for(server, "binder", "esc2")
    server.kubectl("create", "rolebinding", "b", "--clusterrole=bind-admin",
                   "--serviceaccount=esc2:binder", "-n", "esc2")
    server.kubectl("create", "rolebinding", "b2", "--role=binder", "--serviceaccount=esc2:binder",
                   "-n", "esc2")
    server.kubectl("create", "role", "binder", "--verb=create",
                   "--resource=rolebindings.rbac.authorization.k8s.io", "-n", "esc2")
    kubectl_as_token(server, token2, "create", "rolebinding", "x", "--clusterrole=cluster-admin",
                     "--user=someone", "-n", "esc2", check=True)


def test_anonymous_requests(server: ServerProcess) -> None:
    r = server.get("/version", token=None)
    assert r.status == 200 and r.json()["major"] == "1"
    assert server.get("/healthz", token=None).status == 200
    assert server.get("/readyz", token=None).status == 200
    r = server.get("/api/v1/pods", token=None)
    assert r.status == 403
    assert r.json()["message"] == ('pods is forbidden: User "system:anonymous" cannot list '
                                   'resource "pods" in API group "" at the cluster scope')
    r = server.get("/api", token=None)
    assert r.status == 403
    assert r.json()["message"] == 'forbidden: User "system:anonymous" cannot get path "/api"'
    # a wrong token is never anonymous
    assert server.get("/version", token="not-a-token").status == 401
    p = subprocess.run(["curl", "-sk", f"{server.url}/version"], capture_output=True,
                       text=True, timeout=30)
    assert json.loads(p.stdout)["gitVersion"].startswith("v1.")


def test_impersonation(server: ServerProcess) -> None:
    server.kubectl("create", "namespace", "imp")
    token = token_for(server, "plain", "imp")
    # the admin may impersonate: --as and --as-group
    out = server.kubectl("auth", "whoami", "--as=jane", "--as-group=devs", "-o", "json").stdout
    info = json.loads(out)["status"]["userInfo"]
    assert info["username"] == "jane" and info["groups"] == ["devs", "system:authenticated"]
    assert server.kubectl("get", "pods", "-n", "imp", "--as=jane", check=False).returncode != 0
    # a service account without the impersonate verb may not
    p = kubectl_as_token(server, token, "get", "pods", "--as=jane")
    assert p.returncode != 0
    assert ('users "jane" is forbidden: User "system:serviceaccount:imp:plain" cannot '
            'impersonate resource "users" in API group "" at the cluster scope') in p.stderr
    server.kubectl("create", "clusterrole", "impersonate-jane", "--verb=impersonate",
                   "--resource=users", "--resource-name=jane")
    server.kubectl("create", "clusterrolebinding", "plain-imp", "--clusterrole=impersonate-jane",
                   "--serviceaccount=imp:plain")
    p = kubectl_as_token(server, token, "auth", "whoami", "--as=jane", "-o", "json", check=True)
    assert json.loads(p.stdout)["status"]["userInfo"]["username"] == "jane"
    p = kubectl_as_token(server, token, "get", "pods", "--as=jane", "--as-group=system:masters")
    assert p.returncode != 0 and 'cannot impersonate resource "groups"' in p.stderr


def test_subject_access_reviews(server: ServerProcess) -> None:
    server.kubectl("create", "namespace", "sar")
    server.kubectl("create", "rolebinding", "jane-edit", "--clusterrole=edit", "--user=jane",
                   "-n", "sar")
    sar = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
           "spec": {"user": "jane", "groups": ["system:authenticated"],
                    "resourceAttributes": {"namespace": "sar", "verb": "create",
                                           "resource": "deployments", "group": "apps"}}}
    r = server.post("/apis/authorization.k8s.io/v1/subjectaccessreviews", sar)
    assert r.status == 201
    status = r.json()["status"]
    assert status["allowed"] is True
    assert status["reason"] == ('RBAC: allowed by RoleBinding "jane-edit/sar" of ClusterRole '
                                '"edit" to User "jane"')
    sar["spec"]["resourceAttributes"]["namespace"] = "default"
    assert server.post("/apis/authorization.k8s.io/v1/subjectaccessreviews",
                       sar).json()["status"]["allowed"] is False
    nr = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
          "spec": {"user": "jane", "groups": ["system:authenticated"],
                   "nonResourceAttributes": {"path": "/healthz", "verb": "get"}}}
    assert server.post("/apis/authorization.k8s.io/v1/subjectaccessreviews",
                       nr).json()["status"]["allowed"] is True
    lsar = {"apiVersion": "authorization.k8s.io/v1", "kind": "LocalSubjectAccessReview",
            "metadata": {"namespace": "sar"},
            "spec": {"user": "jane", "resourceAttributes": {"namespace": "sar", "verb": "delete",
                                                            "resource": "pods"}}}
    r = server.post("/apis/authorization.k8s.io/v1/namespaces/sar/localsubjectaccessreviews",
                    lsar)
    assert r.status == 201 and r.json()["status"]["allowed"] is True
    lsar["spec"]["resourceAttributes"]["namespace"] = "other"
    r = server.post("/apis/authorization.k8s.io/v1/namespaces/sar/localsubjectaccessreviews",
                    lsar)
    assert r.status == 422 and "must match metadata.namespace" in r.json()["message"]
    # a service account may not ask about others
    token = token_for(server, "default", "sar")
    r = server.post("/apis/authorization.k8s.io/v1/subjectaccessreviews", sar, token=token)
    assert r.status == 403
    # kubectl auth reconcile applies RBAC manifests
    manifest = """
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: reconciled, namespace: sar}
rules:
- {apiGroups: [""], resources: [configmaps], verbs: [get]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: reconciled, namespace: sar}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: reconciled}
subjects:
- {kind: User, name: joe}
"""
    out = server.kubectl("auth", "reconcile", "-f", "-", input=manifest).stdout
    assert "reconciled" in out
    assert server.kubectl("auth", "can-i", "get", "configmaps", "-n", "sar",
                          "--as=joe").stdout.strip() == "yes"


def test_always_deny_and_always_allow(tmp_path: Path) -> None:
    s = ServerProcess(tmp_path / "deny", extra=["--authorization-mode", "AlwaysDeny"]).start()
    try:
        token = token_for(s, "nobody")
        r = s.get("/api/v1/namespaces/default/pods", token=token)
        assert r.status == 403 and r.json()["message"].endswith(": Everything is forbidden.")
        assert s.get("/version", token=None).status == 403
        assert s.get("/api/v1/namespaces/default/pods").status == 200  # system:masters
    finally:
        s.stop()
    s = ServerProcess(tmp_path / "allow", extra=["--authorization-mode", "AlwaysAllow"]).start()
    try:
        token = token_for(s, "nobody")
        assert s.get("/api/v1/namespaces/default/secrets", token=token).status == 200
    finally:
        s.stop()


def test_anonymous_auth_off(tmp_path: Path) -> None:
    s = ServerProcess(tmp_path / "noanon", extra=["--anonymous-auth=false"]).start()
    try:
        r = s.get("/version", token=None)
        assert r.status == 401 and r.json()["reason"] == "Unauthorized"
        assert s.get("/version").status == 200
    finally:
        s.stop()


class _Webhook(http.server.BaseHTTPRequestHandler):
    """Allows user `webby` to get pods, denies `blocked` outright, no opinion otherwise."""
    seen: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802
        review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Webhook.seen.append(review)
        spec = review["spec"]
        ra = spec.get("resourceAttributes") or {}
        status: dict[str, Any] = {"allowed": False}
        if spec["user"] == "webby" and ra.get("resource") == "pods" and ra.get("verb") == "get":
            status = {"allowed": True, "reason": "webby may look"}
        elif spec["user"] == "blocked":
            status = {"allowed": False, "denied": True, "reason": "blocked by the webhook"}
        body = json.dumps({"apiVersion": "authorization.k8s.io/v1",
                           "kind": "SubjectAccessReview", "status": status}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_webhook_mode(tmp_path: Path) -> None:
    port = free_port()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), _Webhook)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    cfg = tmp_path / "webhook.kubeconfig"
    cfg.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "w", "cluster": {"server": f"http://127.0.0.1:{port}/authorize"}}],
        "users": [{"name": "api", "user": {}}],
        "contexts": [{"name": "w", "context": {"cluster": "w", "user": "api"}}],
        "current-context": "w"}))
    s = ServerProcess(tmp_path / "wh", extra=["--authorization-mode", "RBAC,Webhook",
                                              "--authorization-webhook-config-file", str(cfg)]).start()
    try:
        def can(user: str, verb: str, resource: str = "pods") -> dict[str, Any]:
            sar = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                   "spec": {"user": user, "resourceAttributes": {
                       "namespace": "default", "verb": verb, "resource": resource}}}
            return s.post("/apis/authorization.k8s.io/v1/subjectaccessreviews", sar).json()["status"]
        assert can("webby", "get") == {"allowed": True, "reason": "webby may look"}
        assert can("webby", "delete")["allowed"] is False
        blocked = can("blocked", "get")
        assert blocked["allowed"] is False and blocked["denied"] is True
        assert any(r["spec"]["user"] == "webby" for r in _Webhook.seen)
        # the webhook's answer is cached: asking again sends nothing
        before = len(_Webhook.seen)
        assert can("webby", "get")["allowed"] is True
        assert len(_Webhook.seen) == before
        # impersonating webby through the admin: the webhook decides the request itself
        assert s.get("/api/v1/namespaces/default/pods/x", headers={
            "Impersonate-User": "webby"}).status == 404
        assert s.get("/api/v1/namespaces/default/pods", headers={
            "Impersonate-User": "webby"}).status == 403
    finally:
        s.stop()
        httpd.shutdown()


def _csr_pem(cn: str, orgs: list[str]) -> str:
    import base64
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),
                      *(x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs)])
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    return base64.b64encode(csr.public_bytes(serialization.Encoding.PEM)).decode()


def test_certificate_admission(server: ServerProcess) -> None:
    """CertificateApproval needs `approve` on the signer; CertificateSubjectRestriction
    keeps system:masters out of kube-apiserver-client certificates."""
    csrs = "/apis/certificates.k8s.io/v1/certificatesigningrequests"
    masters = {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
               "metadata": {"name": "wants-masters"},
               "spec": {"request": _csr_pem("mallory", ["system:masters"]),
                        "signerName": "kubernetes.io/kube-apiserver-client",
                        "usages": ["client auth", "digital signature"]}}
    r = server.post(csrs, masters)
    assert r.status == 403
    assert r.json()["message"] == (
        'certificatesigningrequests.certificates.k8s.io "wants-masters" is forbidden: use of '
        "kubernetes.io/kube-apiserver-client signer with system:masters group is not allowed")
    plain = dict(masters, metadata={"name": "carol"})
    plain["spec"] = dict(masters["spec"], request=_csr_pem("carol", ["devs"]))
    assert server.post(csrs, plain).status == 201
    server.kubectl("create", "namespace", "certs")
    token = token_for(server, "approver", "certs")
    server.kubectl("create", "clusterrole", "csr-approval", "--verb=get,list,update",
                   "--resource=certificatesigningrequests.certificates.k8s.io,"
                   "certificatesigningrequests.certificates.k8s.io/approval")
    server.kubectl("create", "clusterrolebinding", "csr-approval", "--clusterrole=csr-approval",
                   "--serviceaccount=certs:approver")
    p = kubectl_as_token(server, token, "certificate", "approve", "carol")
    assert p.returncode != 0
    assert ('user not permitted to approve requests with signerName '
            '"kubernetes.io/kube-apiserver-client"') in p.stderr
    server.kubectl("create", "-f", "-", input=json.dumps({  # signers are no API resource
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "client-approver"},
        "rules": [{"apiGroups": ["certificates.k8s.io"], "resources": ["signers"],
                   "resourceNames": ["kubernetes.io/*"], "verbs": ["approve"]}]}))
    server.kubectl("create", "clusterrolebinding", "client-approver",
                   "--clusterrole=client-approver", "--serviceaccount=certs:approver")
    kubectl_as_token(server, token, "certificate", "approve", "carol", check=True)
    conditions = server.kubectl_json("get", "csr", "carol")["status"]["conditions"]
    assert conditions[0]["type"] == "Approved"
