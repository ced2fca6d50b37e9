"""The admission chain through the store: built-in plugins, order, dry run, quota."""
from __future__ import annotations

import re

from typing import Any

import pytest

from pyk8s.api import errors
from pyk8s.apiserver.admission import Attributes, Chain, Plugin
from pyk8s.apiserver.app import APIServer, ServerConfig
from pyk8s.apiserver.authn import UserInfo
from pyk8s.registry.store import DeleteOptions
from pyk8s.storage.memory import MemoryStorage

Obj = dict[str, Any]


def store(s: APIServer, group: str, plural: str, version: str = "v1") -> Any:
    info = s.catalogue.lookup(group, version, plural)
    assert info is not None
    return s.store(info)


async def settle(s: APIServer) -> None:
    await s.cache.consistent_rev()


def pod(name: str = "p", **spec: Any) -> Obj:
    return {"metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "nginx"}], **spec}}


async def test_chain_order_mutating_then_validating() -> None:
    seen: list[str] = []

    class P(Plugin):
        def __init__(self, name: str, m: bool, v: bool) -> None:
            self.name, self.mutating, self.validating = name, m, v

        async def admit(self, attrs: Attributes) -> None:
            seen.append("admit " + self.name)

        async def validate(self, attrs: Attributes) -> None:
            seen.append("validate " + self.name)

    chain = Chain([P("a", True, True), P("b", False, True), P("c", True, False)])
    attrs = Attributes("CREATE", "", "v1", "configmaps", "ConfigMap", "default", "x", {})
    await chain.admit(attrs)
    await chain.validate(attrs)
    assert seen == ["admit a", "admit c", "validate a", "validate b"]


async def test_pod_defaults_service_account_and_tolerations(server: APIServer) -> None:
    obj, _ = await store(server, "", "pods").create("default", pod())
    assert obj["spec"]["serviceAccountName"] == "default"
    assert obj["spec"]["serviceAccount"] == "default"
    tol = {t["key"]: t for t in obj["spec"]["tolerations"]}
    assert tol["node.kubernetes.io/not-ready"] == {
        "key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
        "tolerationSeconds": 300}
    assert tol["node.kubernetes.io/unreachable"]["tolerationSeconds"] == 300
    own = pod("q", serviceAccountName="robot", tolerations=[
        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
         "tolerationSeconds": 5}])
    with pytest.raises(errors.Forbidden) as e:
        await store(server, "", "pods").create("default", own)
    assert str(e.value) == ('pods "q" is forbidden: error looking up service account '
                            'default/robot: serviceaccount "robot" not found')
    await store(server, "", "serviceaccounts").create("default", {"metadata": {"name": "robot"}})
    obj, _ = await store(server, "", "pods").create("default", own)
    assert obj["spec"]["serviceAccountName"] == "robot"
    secs = {t["key"]: t.get("tolerationSeconds") for t in obj["spec"]["tolerations"]}
    assert secs == {"node.kubernetes.io/not-ready": 5, "node.kubernetes.io/unreachable": 300}


async def test_pod_gets_the_api_access_volume(server: APIServer) -> None:
    obj, _ = await store(server, "", "pods").create("default", pod(
        initContainers=[{"name": "init", "image": "busybox"}]))
    spec = obj["spec"]
    [vol] = spec["volumes"]
    assert re.fullmatch(r"kube-api-access-[bcdfghjklmnpqrstvwxz2456789]{5}", vol["name"])
    assert vol["projected"] == {"defaultMode": 420, "sources": [
        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt",
                       "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {
            "apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]}
    mount = {"name": vol["name"], "readOnly": True,
             "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}
    assert spec["initContainers"][0]["volumeMounts"] == [mount]
    assert spec["containers"][0]["volumeMounts"] == [mount]


async def test_api_access_volume_opt_outs(server: APIServer) -> None:
    pods = store(server, "", "pods")
    obj, _ = await pods.create("default", pod("off", automountServiceAccountToken=False))
    assert not obj["spec"].get("volumes") and not obj["spec"]["containers"][0].get(
        "volumeMounts")
    # the account says no; a pod that says yes wins
    await store(server, "", "serviceaccounts").create("default", {
        "metadata": {"name": "quiet"}, "automountServiceAccountToken": False})
    obj, _ = await pods.create("default", pod("quiet", serviceAccountName="quiet"))
    assert not obj["spec"].get("volumes")
    obj, _ = await pods.create("default", pod("loud", serviceAccountName="quiet",
                                              automountServiceAccountToken=True))
    assert obj["spec"]["volumes"][0]["name"].startswith("kube-api-access-")
    # a container mounting something at the token path keeps it
    own = pod("own", volumes=[{"name": "mine", "emptyDir": {}}])
    own["spec"]["containers"][0]["volumeMounts"] = [
        {"name": "mine", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]
    obj, _ = await pods.create("default", own)
    assert [v["name"] for v in obj["spec"]["volumes"]] == ["mine"]


async def test_namespace_lifecycle_in_chain(server: APIServer) -> None:
    with pytest.raises(errors.NotFound, match='namespaces "nope" not found'):
        await store(server, "", "configmaps").create("nope", {"metadata": {"name": "a"}})
    # dry run goes through admission as well
    with pytest.raises(errors.NotFound):
        await store(server, "", "configmaps").create("nope", {"metadata": {"name": "a"}},
                                                      dry_run=True)


async def test_limit_ranger_defaults_and_max(server: APIServer) -> None:
    await store(server, "", "limitranges").create("default", {
        "metadata": {"name": "lr"}, "spec": {"limits": [{
            "type": "Container", "default": {"cpu": "500m", "memory": "128Mi"},
            "defaultRequest": {"cpu": "100m"}, "max": {"cpu": "1"}}]}})
    await settle(server)
    obj, _ = await store(server, "", "pods").create("default", pod())
    res = obj["spec"]["containers"][0]["resources"]
    assert res == {"limits": {"cpu": "500m", "memory": "128Mi"},
                   "requests": {"cpu": "100m", "memory": "128Mi"}}
    assert "LimitRanger plugin set" in obj["metadata"]["annotations"]["kubernetes.io/limit-ranger"]
    assert obj["status"]["qosClass"] == "Burstable"
    big = pod("big")
    big["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "2"}}
    with pytest.raises(errors.Forbidden) as e:
        await store(server, "", "pods").create("default", big)
    assert e.value.message == ('pods "big" is forbidden: maximum cpu usage per Container '
                               'is 1, but limit is 2')


async def quota(server: APIServer, hard: Obj, name: str = "q", **spec: Any) -> None:
    await store(server, "", "resourcequotas").create("default", {
        "metadata": {"name": name}, "spec": {"hard": hard, **spec}})
    await settle(server)


async def set_status(server: APIServer, name: str, hard: Obj, used: Obj) -> None:
    def mutate(cur: Obj) -> Obj:
        cur["status"] = {"hard": hard, "used": used}
        return cur
    await store(server, "", "resourcequotas").update("default", name, mutate,
                                                     subresource="status")
    await settle(server)


async def test_quota_status_unknown_then_counts_and_blocks(server: APIServer) -> None:
    cms = store(server, "", "configmaps")
    await quota(server, {"configmaps": "2"})
    with pytest.raises(errors.Forbidden, match="status unknown for quota: q, resources: configmaps"):
        await cms.create("default", {"metadata": {"name": "a"}})
    await set_status(server, "q", {"configmaps": "2"}, {"configmaps": "0"})
    await cms.create("default", {"metadata": {"name": "a"}})
    await cms.create("default", {"metadata": {"name": "dry"}}, dry_run=True)
    await cms.create("default", {"metadata": {"name": "b"}})
    q = await store(server, "", "resourcequotas").get("default", "q")
    assert q["status"]["used"] == {"configmaps": "2"}
    with pytest.raises(errors.Forbidden) as e:
        await cms.create("default", {"metadata": {"name": "c"}})
    assert e.value.code == 403
    assert e.value.message == ('configmaps "c" is forbidden: exceeded quota: q, requested: '
                               'configmaps=1, used: configmaps=2, limited: configmaps=2')
    # other namespaces and other kinds are not limited
    await store(server, "", "secrets").create("default", {"metadata": {"name": "s"}})
    await cms.create("kube-system", {"metadata": {"name": "c"}})


async def test_quota_compute_resources_and_scopes(server: APIServer) -> None:
    pods = store(server, "", "pods")
    await quota(server, {"pods": "1"}, name="be", scopes=["BestEffort"])
    await quota(server, {"requests.cpu": "1", "limits.memory": "1Gi"}, name="compute",
                scopes=["NotBestEffort"])
    await set_status(server, "be", {"pods": "1"}, {"pods": "0"})
    await set_status(server, "compute", {"requests.cpu": "1", "limits.memory": "1Gi"},
                     {"requests.cpu": "0", "limits.memory": "0"})
    await pods.create("default", pod("be1"))
    with pytest.raises(errors.Forbidden, match="exceeded quota: be, requested: pods=1"):
        await pods.create("default", pod("be2"))
    def burst(name: str) -> Obj:
        p = pod(name)
        p["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "600m"},
                                                   "limits": {"memory": "512Mi"}}
        return p
    await pods.create("default", burst("b1"))
    q = await store(server, "", "resourcequotas").get("default", "compute")
    assert q["status"]["used"] == {"limits.memory": "536870912", "requests.cpu": "600m"}
    with pytest.raises(errors.Forbidden) as e:
        await pods.create("default", burst("b2"))
    assert "requested: requests.cpu=600m, used: requests.cpu=600m, limited: requests.cpu=1" \
        in e.value.message


async def test_admission_sees_user_and_delete(server: APIServer) -> None:
    seen: list[tuple[str, Any]] = []

    class Spy(Plugin):
        name, validating = "Spy", True

        async def validate(self, attrs: Attributes) -> None:
            seen.append((attrs.operation, attrs.user))
            if attrs.operation == "DELETE" and attrs.name == "keep":
                raise errors.Forbidden("no")

    server.admission.add(Spy())
    cms = store(server, "", "configmaps")
    alice = UserInfo("alice", groups=("g",))
    await cms.create("default", {"metadata": {"name": "keep"}}, user=alice)
    await cms.update("default", "keep", lambda o: {**o, "data": {"a": "b"}}, user=alice)
    with pytest.raises(errors.Forbidden):
        await cms.delete("default", "keep", DeleteOptions(), user=alice)
    assert [op for op, _ in seen] == ["CREATE", "UPDATE", "DELETE"]
    assert all(u is alice for _, u in seen)


async def test_csr_approval_and_user(server: APIServer) -> None:
    csrs = store(server, "certificates.k8s.io", "certificatesigningrequests")
    from tests.apiserver.test_csr import request  # a signed PKCS#10 request
    body = {"metadata": {"name": "c"}, "spec": {
        "request": request(),
        "signerName": "example.com/x", "usages": ["client auth"], "username": "mallory"}}
    obj, _ = await csrs.create(None, body, user=UserInfo("alice", groups=("devs",)))
    assert obj["spec"]["username"] == "alice" and obj["spec"]["groups"] == ["devs"]

    def approve(cur: Obj) -> Obj:
        cur["status"] = {"conditions": [{"type": "Approved", "reason": "OK"}]}
        cur["spec"]["signerName"] = "ignored/x"
        return cur
    obj, _, _ = await csrs.update(None, "c", approve, subresource="approval")
    assert obj["status"]["conditions"][0]["type"] == "Approved"
    assert obj["status"]["conditions"][0]["status"] == "True"
    assert obj["spec"]["signerName"] == "example.com/x"

    def both(cur: Obj) -> Obj:
        cur["status"]["conditions"].append({"type": "Denied", "status": "True"})
        return cur
    with pytest.raises(errors.Invalid, match="mutually exclusive"):
        await csrs.update(None, "c", both, subresource="approval")


async def test_new_kinds_validated(server: APIServer) -> None:
    with pytest.raises(errors.Invalid, match="sideEffects"):
        await store(server, "admissionregistration.k8s.io",
                    "validatingwebhookconfigurations").create(None, {
                        "metadata": {"name": "v"}, "webhooks": [{
                            "name": "v.example.com", "admissionReviewVersions": ["v1"],
                            "clientConfig": {"url": "https://127.0.0.1/x"}}]})
    obj, _ = await store(server, "admissionregistration.k8s.io",
                         "mutatingwebhookconfigurations").create(None, {
                             "metadata": {"name": "m"}, "webhooks": [{
                                 "name": "m.example.com", "admissionReviewVersions": ["v1"],
                                 "sideEffects": "None",
                                 "clientConfig": {"url": "https://127.0.0.1/x"},
                                 "rules": [{"operations": ["CREATE"], "apiGroups": [""],
                                            "apiVersions": ["v1"], "resources": ["pods"]}]}]})
    wh = obj["webhooks"][0]
    assert (wh["failurePolicy"], wh["matchPolicy"], wh["timeoutSeconds"],
            wh["reinvocationPolicy"], wh["rules"][0]["scope"]) == \
        ("Fail", "Equivalent", 10, "Never", "*")
    with pytest.raises(errors.Invalid, match="handler"):
        await store(server, "node.k8s.io", "runtimeclasses").create(
            None, {"metadata": {"name": "rc"}, "handler": "Bad_Handler"})
    await store(server, "node.k8s.io", "runtimeclasses").create(
        None, {"metadata": {"name": "rc"}, "handler": "runsc"})
    await store(server, "apiregistration.k8s.io", "apiservices").create(None, {
        "metadata": {"name": "v1.example.com"}, "spec": {
            "group": "example.com", "version": "v1", "groupPriorityMinimum": 100,
            "versionPriority": 10}})


def test_webhook_rule_matching() -> None:
    from pyk8s.apiserver.admission.webhook import _rule_matches

    def attrs(op: str = "CREATE", sub: str = "") -> Attributes:
        return Attributes(op, "apps", "v1", "deployments", "Deployment", "ns", "d", {},
                          subresource=sub)
    rule = {"operations": ["CREATE"], "apiGroups": ["apps"], "apiVersions": ["v1"],
            "resources": ["deployments"], "scope": "*"}
    assert _rule_matches(rule, attrs(), True)
    assert not _rule_matches(rule, attrs("UPDATE"), True)
    assert not _rule_matches(rule, attrs(sub="status"), True)
    assert _rule_matches(dict(rule, resources=["deployments/*"]), attrs(sub="scale"), True)
    assert _rule_matches(dict(rule, resources=["*/status"]), attrs(sub="status"), True)
    assert _rule_matches(dict(rule, resources=["*/*"], operations=["*"]), attrs("DELETE"), True)
    assert not _rule_matches(dict(rule, scope="Cluster"), attrs(), True)
    assert not _rule_matches(dict(rule, apiGroups=[""]), attrs(), True)


async def test_disable_admission_plugins() -> None:
    s = APIServer(MemoryStorage(), ServerConfig(
        compaction_interval=0,
        disabled_admission_plugins=("ServiceAccount", "DefaultTolerationSeconds")))
    await s.start()
    try:
        assert [p.name for p in s.admission.plugins] == [
            "NamespaceLifecycle", "LimitRanger", "NodeRestriction", "Priority",
            "DefaultStorageClass", "CertificateApproval", "CertificateSigning",
            "CertificateSubjectRestriction", "MutatingAdmissionWebhook",
            "ValidatingAdmissionWebhook", "ResourceQuota"]
        obj, _ = await store(s, "", "pods").create("default", pod())
        assert "serviceAccountName" not in obj["spec"] and "tolerations" not in obj["spec"]
    finally:
        await s.stop()
    with pytest.raises(ValueError, match="unknown admission plugins: Nope"):
        APIServer(MemoryStorage(), ServerConfig(disabled_admission_plugins=("Nope",)))


async def test_system_namespaces_may_not_be_deleted(server: APIServer) -> None:
    with pytest.raises(errors.Forbidden) as e:
        await store(server, "", "namespaces").delete(None, "kube-system", DeleteOptions())
    assert e.value.message == 'namespaces "kube-system" is forbidden: this namespace may not be deleted'


async def test_quota_charges_what_an_update_increases(server: APIServer) -> None:
    await quota(server, {"services.nodeports": "1", "services": "5"})
    await set_status(server, "q", {"services.nodeports": "1", "services": "5"},
                     {"services.nodeports": "0", "services": "0"})
    svcs = store(server, "", "services")
    await svcs.create("default", {"metadata": {"name": "a"},
                                  "spec": {"ports": [{"port": 80}]}})

    def nodeport(cur: Obj) -> Obj:
        cur["spec"]["type"] = "NodePort"
        return cur
    await svcs.update("default", "a", nodeport)
    q = await store(server, "", "resourcequotas").get("default", "q")
    assert q["status"]["used"] == {"services": "1", "services.nodeports": "1"}
    await svcs.create("default", {"metadata": {"name": "b"},
                                  "spec": {"ports": [{"port": 80}]}})
    with pytest.raises(errors.Forbidden, match="exceeded quota: q, requested: "
                                               "services.nodeports=1"):
        await svcs.update("default", "b", nodeport)
