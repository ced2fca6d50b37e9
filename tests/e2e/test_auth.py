"""Authentication: the admin token, service-account tokens, and the review resources."""
from __future__ import annotations

from tests.conftest import ServerProcess


def test_service_account_token_lifecycle(server: ServerProcess) -> None:
    server.kubectl("create", "serviceaccount", "robot")
    token = server.kubectl("create", "token", "robot").stdout.strip()
    assert token.count(".") == 2
    # authenticated (system:basic-user lets it ask who it is), not authorized for more
    r = server.post("/apis/authentication.k8s.io/v1/selfsubjectreviews",
                    {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
                    token=token)
    assert r.status == 201, r
    assert r.json()["status"]["userInfo"]["username"] == "system:serviceaccount:default:robot"
    assert server.get("/api/v1/namespaces/default/configmaps", token=token).status == 403
    review = server.post("/apis/authentication.k8s.io/v1/tokenreviews",
                         {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                          "spec": {"token": token}}).json()
    assert review["status"]["authenticated"] is True
    assert review["status"]["user"]["username"] == "system:serviceaccount:default:robot"
    assert "system:serviceaccounts:default" in review["status"]["user"]["groups"]
    # A bound token dies with its ServiceAccount.
    server.kubectl("delete", "serviceaccount", "robot")
    assert server.get("/api/v1/namespaces/default/configmaps", token=token).status == 401
    bogus = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    assert server.get("/api", token=bogus).status == 401


def test_token_for_missing_service_account_is_404(server: ServerProcess) -> None:
    p = server.kubectl("create", "token", "nobody", check=False)
    assert p.returncode != 0 and "not found" in p.stderr, p.stderr


def test_auth_can_i_and_whoami(server: ServerProcess) -> None:
    assert server.kubectl("auth", "can-i", "create", "deployments").stdout.strip() == "yes"
    out = server.kubectl("auth", "whoami").stdout
    assert "system:admin" in out and "system:masters" in out
