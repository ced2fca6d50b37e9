"""The kubelet's service account tokens (TokenCache): one TokenRequest per pod and
projection, bound to the pod, reused until 80 % of its lifetime has passed, then asked for
again; the volume manager's periodic refresh writes the new token into the pod's
kube-api-access volume (what in-cluster clients re-read)."""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from pyk8s.apiserver.admission.serviceaccount import api_access_volume
from pyk8s.kubelet.volumes import VolumeManager
from pyk8s.kubelet.volumes.manager import TokenCache

Obj = dict[str, Any]


class TokenClient:
    """Answers TokenRequests (`serviceaccounts/<sa>/token`) with numbered tokens."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, Obj]] = []

    async def create(self, path: str, body: Obj) -> Obj:
        self.requests.append((path, body))
        return {**body, "status": {"token": f"token-{len(self.requests)}"}}


async def getter(kind: str, ns: str, name: str) -> Any:
    return {("configmap", "apps", "kube-root-ca.crt"): {"data": {"ca.crt": "PEM"}}}.get(
        (kind, ns, name))


def _pod() -> Obj:
    return {"metadata": {"name": "web-1", "namespace": "apps", "uid": "u-1"},
            "spec": {"serviceAccountName": "robot",
                     "volumes": [api_access_volume("kube-api-access-abcde")],
                     "containers": [{"name": "c"}]}}


def test_tokens_bound_reused_and_renewed(tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr("pyk8s.kubelet.volumes.manager.time.monotonic", lambda: clock[0])
    client = TokenClient()
    tokens = TokenCache(client)
    volumes = VolumeManager(tmp_path / "vols", getter, tokens)
    pod = _pod()

    async def run() -> None:
        paths = await volumes.setup(pod)
        d = Path(paths["kube-api-access-abcde"])
        assert (d / "token").read_text() == "token-1"
        assert (d / "ca.crt").read_text() == "PEM" and (d / "namespace").read_text() == "apps"
        path, body = client.requests[0]
        assert path == "/api/v1/namespaces/apps/serviceaccounts/robot/token"
        assert body["spec"]["expirationSeconds"] == 3607
        assert body["spec"]["boundObjectRef"] == {"kind": "Pod", "apiVersion": "v1",
                                                  "name": "web-1", "uid": "u-1"}
        clock[0] += 0.79 * 3607           # still fresh: no new request
        await volumes.refresh(pod)
        assert len(client.requests) == 1 and (d / "token").read_text() == "token-1"
        clock[0] += 0.02 * 3607           # past 80 % of its life: renewed, written
        await volumes.refresh(pod)
        assert len(client.requests) == 2 and (d / "token").read_text() == "token-2"
        tokens.forget("u-1")               # the pod is gone: its tokens too
        await volumes.refresh(pod)
        assert len(client.requests) == 3

    asyncio.run(run())
