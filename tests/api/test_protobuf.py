"""Protobuf request bodies: kubectl's real bytes decode to the JSON kubectl would have sent.

The fixtures (tests/api/protobuf_fixtures/<kubectl version>/) were captured from kubectl 1.32
and 1.33 by tools/capture_protobuf_fixtures.py: each <name>.bin is a body as kubectl POSTed
it, <name>.json the command, the request line and headers, and `dryRun`: what
`kubectl … --dry-run=client -o json` printed for the same command, i.e. Go's json.Marshal of
the object kubectl built. Decoding equals it exactly: kubectl neither adds nor omits fields
between the two (namespace is empty in both, creationTimestamp null in both).
"""
from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import make_mocked_request

from pyk8s.api import errors, protobuf_types
from pyk8s.api.protobuf import (MAGIC, ProtobufError, UnknownKind, decode_request,
                                encode_object, go_duration, parse_go_duration, parse_type)
from pyk8s.apiserver import negotiation as neg

FIXTURES = Path(__file__).parent / "protobuf_fixtures"
PROTOBUF = "application/vnd.kubernetes.protobuf"


def fixture_requests() -> list[tuple[str, str, dict[str, Any], dict[str, Any]]]:
    """(version, fixture name, request, command meta) for every captured protobuf body."""
    out = []
    for meta_path in sorted(FIXTURES.glob("*/*.json")):
        meta = json.loads(meta_path.read_text())
        for r in meta["requests"]:
            if r["fixture"]:
                out.append((meta_path.parent.name, meta_path.stem, r, meta))
    return out


REQUESTS = fixture_requests()
IDS = [f"{v}-{r['fixture']}" for v, _, r, _ in REQUESTS]


def body(version: str, fixture: str) -> bytes:
    return (FIXTURES / version / fixture).read_bytes()


# -- a hand-written encoder, independent of the table, for bodies kubectl does not send ----
def varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    return bytes(out + bytes([n]))


def f_len(number: int, data: bytes | str) -> bytes:
    data = data.encode() if isinstance(data, str) else data
    return varint(number << 3 | 2) + varint(len(data)) + data


def f_int(number: int, n: int) -> bytes:
    return varint(number << 3) + varint(n)


def envelope(api_version: str, kind: str, raw: bytes) -> bytes:
    return MAGIC + f_len(1, f_len(1, api_version) + f_len(2, kind)) + f_len(2, raw) + \
        f_len(3, b"") + f_len(4, b"")


def object_meta(name: str = "", namespace: str = "", **extra: bytes) -> bytes:
    """ObjectMeta as Go writes it: every non-pointer field, zero or not (fields 1–8)."""
    return (f_len(1, name) + f_len(2, "") + f_len(3, namespace) + f_len(4, "") + f_len(5, "")
            + f_len(6, "") + f_int(7, 0) + f_len(8, b"") + b"".join(extra.values()))


# -- golden fixtures -----------------------------------------------------------------------
def test_fixtures_were_captured() -> None:
    names = {name for _, name, _, _ in REQUESTS}
    for want in ("configmap", "secret-generic", "namespace", "serviceaccount",
                 "service-clusterip", "deployment", "job", "cronjob", "role", "rolebinding",
                 "clusterrole", "clusterrolebinding", "quota", "priorityclass",
                 "poddisruptionbudget", "ingress", "token", "auth-can-i", "autoscale",
                 "drain-delete"):
        assert want in names
    assert {v for v, _, _, _ in REQUESTS} == {"1.32", "1.33"}


@pytest.mark.parametrize("version,name,request_,meta", REQUESTS, ids=IDS)
def test_kubectl_sends_protobuf_and_accepts_json(version: str, name: str,
                                                 request_: dict[str, Any],
                                                 meta: dict[str, Any]) -> None:
    assert request_["contentType"] == PROTOBUF
    assert request_["accept"] == "application/vnd.kubernetes.protobuf,application/json"
    req = make_mocked_request("POST", "/", headers={"Accept": request_["accept"]})
    assert neg.choose_output(req).kind == "json"


@pytest.mark.parametrize("version,name,request_,meta",
                         [x for x in REQUESTS if x[3]["dryRun"] is not None],
                         ids=[i for i, x in zip(IDS, REQUESTS) if x[3]["dryRun"] is not None])
def test_decode_equals_kubectl_dry_run_json(version: str, name: str, request_: dict[str, Any],
                                            meta: dict[str, Any]) -> None:
    assert decode_request(body(version, request_["fixture"])) == meta["dryRun"]


@pytest.mark.parametrize("version,name,request_,meta", REQUESTS, ids=IDS)
def test_encode_reproduces_kubectl_bytes(version: str, name: str, request_: dict[str, Any],
                                         meta: dict[str, Any]) -> None:
    raw = body(version, request_["fixture"])
    assert encode_object(decode_request(raw)) == raw


@pytest.mark.parametrize("version", ["1.32", "1.33"])
def test_token_request(version: str) -> None:
    assert decode_request(body(version, "token.bin")) == {
        "kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"creationTimestamp": None},
        "spec": {"audiences": ["api", "vault"], "boundObjectRef": None,
                 "expirationSeconds": 3600},
        "status": {"token": "", "expirationTimestamp": None}}
    bound = decode_request(body(version, "token-bound.bin"))
    assert bound["spec"] == {"audiences": None, "expirationSeconds": None,
                             "boundObjectRef": {"kind": "Pod", "apiVersion": "v1",
                                                "name": "evictme"}}


@pytest.mark.parametrize("version", ["1.32", "1.33"])
def test_self_subject_access_reviews(version: str) -> None:
    def spec(name: str) -> dict[str, Any]:
        obj = decode_request(body(version, name))
        assert obj["kind"] == "SelfSubjectAccessReview"
        assert obj["apiVersion"] == "authorization.k8s.io/v1"
        assert obj["status"] == {"allowed": False}
        return obj["spec"]

    assert spec("auth-can-i.bin") == {"resourceAttributes": {
        "namespace": "default", "verb": "list", "group": "apps", "resource": "deployments"}}
    assert spec("auth-can-i-subresource.bin") == {"resourceAttributes": {
        "namespace": "default", "verb": "get", "resource": "pods", "subresource": "log"}}
    assert spec("auth-can-i-nonresource.bin") == {
        "nonResourceAttributes": {"path": "/logs", "verb": "get"}}


@pytest.mark.parametrize("version", ["1.32", "1.33"])
def test_drain_delete_options(version: str) -> None:
    meta = json.loads((FIXTURES / version / "drain-delete.json").read_text())
    delete = [r for r in meta["requests"] if r["fixture"]]
    assert [r["method"] for r in delete] == ["DELETE"]
    assert decode_request(body(version, "drain-delete.bin")) == {
        "kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 3}


@pytest.mark.parametrize("version", ["1.32", "1.33"])
def test_drain_evicts_with_json(version: str) -> None:
    """Observed: drain's eviction POST is JSON (`Accept: application/json, */*`), not
    protobuf, in both versions."""
    meta = json.loads((FIXTURES / version / "drain-eviction.json").read_text())
    eviction = [r for r in meta["requests"] if r["path"].endswith("/eviction")]
    assert [(r["contentType"], r["accept"]) for r in eviction] == \
        [("application/json", "application/json, */*")]


def test_pointer_zero_is_kept_and_plain_zero_is_omitted() -> None:
    """`--replicas=0` is a *int32 set to 0; ObjectMeta.generation (int64, omitempty) is 0 on
    the wire too but json.Marshal leaves it out."""
    d = decode_request(body("1.32", "deployment-command.bin"))
    assert d["spec"]["replicas"] == 0
    assert "generation" not in d["metadata"]


def test_secret_bytes_are_base64_and_configmap_binary_data() -> None:
    s = decode_request(body("1.32", "secret-generic.bin"))
    assert base64.b64decode(s["data"]["pw"]) == b"s3cr3t" and s["data"]["empty"] == ""
    cm = decode_request(body("1.32", "configmap.bin"))
    assert base64.b64decode(cm["binaryData"]["blob"]) == b"\xff\x00\xfe\x01"


def test_aggregation_rule_keeps_nil_rules_as_null() -> None:
    """ClusterRole.rules has no omitempty: a nil slice is `null`, as json.Marshal writes."""
    cr = decode_request(body("1.32", "clusterrole-aggregation.bin"))
    assert cr["rules"] is None
    assert cr["aggregationRule"] == {"clusterRoleSelectors": [
        {"matchLabels": {"rbac.example.com/aggregate": "true"}}]}


def test_int_or_string_and_quantities() -> None:
    pdb = decode_request(body("1.32", "poddisruptionbudget-percent.bin"))
    assert pdb["spec"]["maxUnavailable"] == "50%"
    assert decode_request(body("1.32", "poddisruptionbudget.bin"))["spec"]["minAvailable"] == 1
    svc = decode_request(body("1.32", "service-clusterip.bin"))
    assert [p["targetPort"] for p in svc["spec"]["ports"]] == [8080, "https"]
    q = decode_request(body("1.32", "quota.bin"))
    assert q["spec"]["hard"] == {"cpu": "500m", "memory": "1Gi", "pods": "2"}


# -- kinds kubectl does not send as protobuf, built by hand --------------------------------
def test_eviction() -> None:
    """policy/v1 Eviction {1: metadata, 2: deleteOptions}; DeleteOptions {1:
    gracePeriodSeconds, 2: preconditions {1: uid, 2: resourceVersion}, 4: propagationPolicy,
    5: dryRun}. Expected: the JSON kubectl drain sends, plus the extra options."""
    options = f_int(1, 7) + f_len(2, f_len(1, "u-1")) + f_len(4, "Background") + f_len(5, "All")
    raw = envelope("policy/v1", "Eviction",
                   f_len(1, object_meta("evictme", "default")) + f_len(2, options))
    assert decode_request(raw) == {
        "kind": "Eviction", "apiVersion": "policy/v1",
        "metadata": {"name": "evictme", "namespace": "default", "creationTimestamp": None},
        "deleteOptions": {"gracePeriodSeconds": 7, "preconditions": {"uid": "u-1"},
                          "propagationPolicy": "Background", "dryRun": ["All"]}}
    assert encode_object(decode_request(raw)) == raw


def test_hpa_v2_and_times() -> None:
    """autoscaling/v2 HorizontalPodAutoscaler with metrics (Quantity, pointers), behavior,
    and a set creationTimestamp (Time keeps whole seconds, as upstream's decoder)."""
    metric = {"type": "Resource", "resource": {"name": "memory", "target": {
        "type": "AverageValue", "averageValue": "512Mi"}}}
    hpa = {"kind": "HorizontalPodAutoscaler", "apiVersion": "autoscaling/v2",
           "metadata": {"name": "web", "namespace": "default",
                        "creationTimestamp": "2024-05-06T07:08:09Z"},
           "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web",
                                       "apiVersion": "apps/v1"},
                    "minReplicas": 1, "maxReplicas": 4, "metrics": [metric],
                    "behavior": {"scaleDown": {"stabilizationWindowSeconds": 0,
                                               "policies": [{"type": "Pods", "value": 1,
                                                             "periodSeconds": 60}]}}},
           # status as json.Marshal writes a zero one: currentReplicas is omitempty,
           # desiredReplicas is not, currentMetrics is a nil slice without omitempty.
           "status": {"desiredReplicas": 0, "currentMetrics": None}}
    assert decode_request(encode_object(hpa)) == hpa
    raw = envelope("v1", "ConfigMap", f_len(1, object_meta(
        "t", x=f_len(8, f_int(1, 1714979289) + f_int(2, 999)))))
    assert decode_request(raw)["metadata"]["creationTimestamp"] == "2024-05-06T07:08:09Z"


def test_micro_time_and_lease() -> None:
    lease = {"kind": "Lease", "apiVersion": "coordination.k8s.io/v1",
             "metadata": {"name": "l", "creationTimestamp": None},
             "spec": {"holderIdentity": "me", "leaseDurationSeconds": 15,
                      "renewTime": "2024-05-06T07:08:09.123456Z"}}
    assert decode_request(encode_object(lease)) == lease


def test_pod_template_fields() -> None:
    """A pod template with probes (inline ProbeHandler), volumes (inline VolumeSource),
    resources, env from secrets and security contexts round-trips."""
    container = {
        "name": "app", "image": "nginx", "command": ["sh"], "args": ["-c", "run"],
        "ports": [{"name": "http", "containerPort": 80, "protocol": "TCP"}],
        "env": [{"name": "A", "value": "1"},
                {"name": "B", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k",
                                                             "optional": True}}}],
        "resources": {"limits": {"cpu": "1"}, "requests": {"cpu": "100m", "memory": "64Mi"}},
        "volumeMounts": [{"name": "data", "mountPath": "/data", "readOnly": True}],
        "livenessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 5},
        "readinessProbe": {"exec": {"command": ["true"]}, "failureThreshold": 3},
        "imagePullPolicy": "IfNotPresent",
        "securityContext": {"runAsNonRoot": True, "runAsUser": 1000,
                            "capabilities": {"drop": ["ALL"]}},
    }
    pod = {"kind": "Pod", "apiVersion": "v1",
           "metadata": {"name": "p", "creationTimestamp": None, "labels": {"a": "b"}},
           "spec": {"volumes": [{"name": "data", "emptyDir": {"sizeLimit": "1Gi"}},
                                {"name": "cfg", "configMap": {"name": "c",
                                                              "defaultMode": 420}}],
                    "containers": [container], "restartPolicy": "Always",
                    "terminationGracePeriodSeconds": 30,
                    "nodeSelector": {"disk": "ssd"},
                    "tolerations": [{"key": "k", "operator": "Exists",
                                     "effect": "NoSchedule"}],
                    "affinity": {"nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [{"matchExpressions": [
                                {"key": "zone", "operator": "In", "values": ["a"]}]}]}}}},
           "status": {}}
    assert decode_request(encode_object(pod)) == pod


def test_unknown_fields_are_skipped_and_packed_repeated_accepted() -> None:
    """A field newer than the table is skipped (as upstream's decoder does); repeated
    varints may come packed."""
    raw = envelope("v1", "ConfigMap", f_len(1, object_meta("c")) + f_len(99, "future"))
    assert decode_request(raw) == {"kind": "ConfigMap", "apiVersion": "v1",
                                   "metadata": {"name": "c", "creationTimestamp": None}}
    # JobSpec {11: podFailurePolicy {1: rules {1: action, 2: onExitCodes {1: containerName,
    # 2: operator, 3: values (repeated int32, here packed)}}}}
    req = f_len(1, "c") + f_len(2, "In") + f_len(3, varint(80) + varint(443))
    rule = f_len(1, "FailJob") + f_len(2, req)
    job = envelope("batch/v1", "Job", f_len(1, object_meta("j")) +
                   f_len(2, f_len(11, f_len(1, rule))))
    values = decode_request(job)["spec"]["podFailurePolicy"]["rules"][0]["onExitCodes"]
    assert values == {"containerName": "c", "operator": "In", "values": [80, 443]}


def test_negative_int32() -> None:
    raw = envelope("scheduling.k8s.io/v1", "PriorityClass",
                   f_len(1, object_meta("neg")) + f_int(2, -5))
    assert decode_request(raw)["value"] == -5


# -- errors --------------------------------------------------------------------------------
def test_unknown_kind_names_the_kind() -> None:
    raw = envelope("example.com/v1", "Widget", b"")
    with pytest.raises(UnknownKind, match='"Widget"'):
        decode_request(raw)
    with pytest.raises(errors.UnsupportedMediaType) as e:
        neg.decode_object(raw, PROTOBUF)
    assert e.value.code == 415 and "Widget" in e.value.message


@pytest.mark.parametrize("raw", [b"", b"{}", b"k8s\x00\x0a", b"k8s\x00\x0a\x05\x0a\x02v1",
                                 b"k8s\x00\x0f"])
def test_malformed_bodies_are_bad_requests(raw: bytes) -> None:
    with pytest.raises(ProtobufError):
        decode_request(raw)
    with pytest.raises(errors.BadRequest):
        neg.decode_object(raw, PROTOBUF)


def test_negotiation_decodes_protobuf() -> None:
    raw = body("1.32", "configmap.bin")
    assert neg.decode_object(raw, PROTOBUF)["data"] == {"a": "b", "c": "d"}
    assert neg.decode_options(body("1.32", "drain-delete.bin"), PROTOBUF) == {
        "kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 3}
    assert neg.decode_options(b'{"propagationPolicy":"Orphan"}', "text/plain") == {
        "propagationPolicy": "Orphan"}


# -- the table -----------------------------------------------------------------------------
def test_table_types_all_parse() -> None:
    for name, fields in protobuf_types.MESSAGES.items():
        for number, (json_name, type_text, flags) in fields.items():
            parse_type(type_text)
            assert set(filter(None, flags.split(","))) <= {"omitempty", "inline"}, name
    for target in protobuf_types.KINDS.values():
        assert target in protobuf_types.MESSAGES


def test_table_covers_the_kinds_kubectl_sends() -> None:
    for api_version, kind in [
            ("v1", "ConfigMap"), ("v1", "Secret"), ("v1", "Namespace"),
            ("v1", "ServiceAccount"), ("v1", "Service"), ("v1", "ResourceQuota"),
            ("v1", "Pod"), ("apps/v1", "Deployment"), ("batch/v1", "Job"),
            ("batch/v1", "CronJob"), ("rbac.authorization.k8s.io/v1", "Role"),
            ("rbac.authorization.k8s.io/v1", "RoleBinding"),
            ("rbac.authorization.k8s.io/v1", "ClusterRole"),
            ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
            ("scheduling.k8s.io/v1", "PriorityClass"), ("policy/v1", "PodDisruptionBudget"),
            ("policy/v1", "Eviction"), ("networking.k8s.io/v1", "Ingress"),
            ("authentication.k8s.io/v1", "TokenRequest"),
            ("authorization.k8s.io/v1", "SelfSubjectAccessReview"),
            ("autoscaling/v1", "HorizontalPodAutoscaler"),
            ("autoscaling/v2", "HorizontalPodAutoscaler")]:
        assert (api_version, kind) in protobuf_types.KINDS
    for kind in ("DeleteOptions", "CreateOptions"):
        assert kind in protobuf_types.OPTION_KINDS


@pytest.mark.parametrize("ns,text", [(0, "0s"), (1, "1ns"), (1500, "1.5µs"),
                                     (2_000_000, "2ms"), (1_500_000_000, "1.5s"),
                                     (3_600_000_000_000, "1h0m0s"),
                                     (5_430_000_000_000, "1h30m30s"), (-60_000_000_000, "-1m0s")])
def test_go_durations(ns: int, text: str) -> None:
    assert go_duration(ns) == text
    assert parse_go_duration(text) == ns
