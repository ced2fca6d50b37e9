"""imagePullSecrets → credentials, matched as upstream's credentialprovider keyring."""
from __future__ import annotations

import base64
import json
from typing import Any

from pyk8s.kubelet.images import credentials_from_secrets
from pyk8s.kubelet.images.credentials import (RegistryCredential, as_credentials,
                                              keyring_key, lookup, urls_match)


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def dockerconfigjson(auths: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
            "metadata": {"name": "regcred"},
            "data": {".dockerconfigjson": b64(json.dumps({"auths": auths}))}}


def test_dockerconfigjson_and_dockercfg() -> None:
    secrets = [
        dockerconfigjson({
            "https://index.docker.io/v1/": {"auth": b64("hub:hubpw")},
            "127.0.0.1:5000": {"username": "u", "password": "p"},
            "both.example.com": {"username": "ignored", "password": "x",
                                 "auth": b64("fromauth:pw:with:colons")},
        }),
        {"type": "kubernetes.io/dockercfg",
         "data": {".dockercfg": b64(json.dumps({"legacy.example.com": {
             "auth": b64("old:timer"), "email": "a@b"}}))}},
        {"type": "Opaque", "data": {"x": b64("y")}},
        {"type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": "!!"}},
    ]
    creds = credentials_from_secrets(secrets)
    got = {(c.server, c.username, c.password) for c in creds}
    assert got == {("https://index.docker.io/v1/", "hub", "hubpw"),
                   ("127.0.0.1:5000", "u", "p"),
                   ("both.example.com", "fromauth", "pw:with:colons"),
                   ("legacy.example.com", "old", "timer")}
    assert "hubpw" not in repr(creds)


def test_keyring_keys() -> None:
    assert keyring_key("https://index.docker.io/v1/") == "index.docker.io"
    assert keyring_key("http://127.0.0.1:5000") == "127.0.0.1:5000"
    assert keyring_key("registry.example.com/v2/team") == "registry.example.com/team"
    assert keyring_key("quay.io/org/") == "quay.io/org/"


def test_urls_match() -> None:
    assert urls_match("127.0.0.1:5000", "127.0.0.1:5000/busybox")
    assert not urls_match("127.0.0.1:5000", "127.0.0.1:5001/busybox")
    assert not urls_match("127.0.0.1", "127.0.0.1:5000/busybox")
    assert urls_match("*.example.com", "registry.example.com/a/b")
    assert not urls_match("*.example.com", "a.registry.example.com/a/b")
    assert urls_match("quay.io/org", "quay.io/org/image")
    assert not urls_match("quay.io/org", "quay.io/other/image")


def test_lookup_order_and_docker_hub() -> None:
    creds = [RegistryCredential("https://index.docker.io/v1/", "hub", "1"),
             RegistryCredential("quay.io", "q", "2"),
             RegistryCredential("quay.io/org", "qo", "3"),
             RegistryCredential("127.0.0.1:5000", "l", "4")]
    # Docker Hub images (normalized names) fall back to index.docker.io's entry
    assert [c.username for c in lookup(creds, "docker.io/library/busybox")] == ["hub"]
    assert [c.username for c in lookup(creds, "docker.io/someone/app")] == ["hub"]
    # the most specific key first
    assert [c.username for c in lookup(creds, "quay.io/org/img")] == ["qo", "q"]
    assert [c.username for c in lookup(creds, "quay.io/other/img")] == ["q"]
    assert [c.username for c in lookup(creds, "127.0.0.1:5000/busybox")] == ["l"]
    assert lookup(creds, "ghcr.io/x/y") == []
    # an explicit docker.io key matches too
    assert [c.username for c in lookup([RegistryCredential("docker.io", "d", "x")],
                                       "docker.io/library/busybox")] == ["d"]


def test_as_credentials_mixed() -> None:
    out = as_credentials([RegistryCredential("a.io", "a", "1"),
                          {"server": "b.io", "username": "b", "password": "2"},
                          dockerconfigjson({"c.io": {"auth": b64("c:3")}})])
    assert [(c.server, c.username, c.password) for c in out] == [
        ("a.io", "a", "1"), ("b.io", "b", "2"), ("c.io", "c", "3")]
