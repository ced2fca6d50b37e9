"""EncryptionConfiguration files: parsing, upstream's validation messages, and which storage
keys each rule encrypts."""
from __future__ import annotations

import base64
import json
import logging
from pathlib import Path

import pytest

from pyk8s.api.catalogue import Catalogue, ResourceInfo
from pyk8s.apiserver.encryptionconfig import (EncryptionConfigError, load_encryption_config,
                                              parse_encryption_config, parse_group_resource)
from pyk8s.storage.value import Identity, PrefixTransformers, TransformError

K16 = base64.b64encode(b"secret is secure").decode()  # upstream's test key
K32 = base64.b64encode(b"abcdefghijklmnopqrstuvwxyz123456").decode()
KEY = b"/registry/secrets/default/s"


def config(resources: list[dict], kind: str = "EncryptionConfiguration",
           api_version: str = "apiserver.config.k8s.io/v1") -> str:
    return json.dumps({"kind": kind, "apiVersion": api_version, "resources": resources})


def aescbc(*names: str, secret: str = K16) -> dict:
    return {"aescbc": {"keys": [{"name": n, "secret": secret} for n in names]}}


def error(text: str) -> str:
    with pytest.raises(EncryptionConfigError) as ei:
        parse_encryption_config(text)
    return str(ei.value)


def test_yaml_with_every_provider() -> None:
    text = f"""
apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [secrets, configmaps]
    providers:
      - aescbc:
          keys:
            - name: key1
              secret: {K16}
      - aesgcm:
          keys: [{{name: key1, secret: {K16}}}]
      - secretbox:
          keys: [{{name: key1, secret: {K32}}}]
      - identity: {{}}
"""
    c = parse_encryption_config(text)
    t = c.transformer_for("/registry/secrets/default/s")
    assert isinstance(t, PrefixTransformers)
    assert t.write_prefix == b"k8s:enc:aescbc:v1:key1:"
    assert [p for p, _ in t.entries] == [b"k8s:enc:aescbc:v1:", b"k8s:enc:aesgcm:v1:",
                                         b"k8s:enc:secretbox:v1:", b""]
    stored = t.to_storage(b"{}", KEY)
    assert stored.startswith(b"k8s:enc:aescbc:v1:key1:")
    assert t.from_storage(stored, KEY) == (b"{}", False)
    assert t.from_storage(b"{}", KEY) == (b"{}", True)  # plain: read by identity, stale
    cm = c.transformer_for("/registry/configmaps/default/c")
    assert isinstance(cm, PrefixTransformers) and cm.entries == t.entries


def test_each_provider_first_writes_its_prefix() -> None:
    for provider, prefix in ((aescbc("k"), b"k8s:enc:aescbc:v1:k:"),
                             ({"aesgcm": {"keys": [{"name": "k", "secret": K16}]}},
                              b"k8s:enc:aesgcm:v1:k:"),
                             ({"secretbox": {"keys": [{"name": "k", "secret": K32}]}},
                              b"k8s:enc:secretbox:v1:k:"),
                             ({"identity": {}}, b"")):
        c = parse_encryption_config(config([{"resources": ["secrets"],
                                             "providers": [provider]}]))
        t = c.transformer_for("/registry/secrets/ns/x")
        stored = t.to_storage(b'{"a":1}', KEY)
        assert stored.startswith(prefix) and (stored == b'{"a":1}') == (prefix == b"")


def test_legacy_kind_is_accepted_and_others_are_not() -> None:
    legacy = config([{"resources": ["secrets"], "providers": [aescbc("key1")]}],
                    kind="EncryptionConfig", api_version="v1")
    assert parse_encryption_config(legacy).rules
    assert 'no kind "Foo"' in error(config([], kind="Foo"))
    assert "Kind' is missing" in error(json.dumps({"apiVersion": "v1", "resources": []}))
    assert "not YAML or JSON" in error("resources: [")


def test_aesgcm_logs_the_rotation_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        parse_encryption_config(config([{"resources": ["secrets"], "providers": [
            {"aesgcm": {"keys": [{"name": "k", "secret": K16}]}}]}]))
    assert "rotated every 200,000 writes" in caplog.text


def test_key_errors_name_the_key() -> None:
    short = base64.b64encode(b"12345678").decode()
    msg = error(config([{"resources": ["secrets"], "providers": [aescbc("key1", secret=short)]}]))
    assert msg == ('resources[0].providers[0].aescbc.keys[0].secret: Invalid value: '
                   '"REDACTED": secret is not of the expected length, got 8, expected one of '
                   '[16 24 32] (key "key1")')
    msg = error(config([{"resources": ["secrets"], "providers": [
        {"secretbox": {"keys": [{"name": "sb", "secret": K16}]}}]}]))
    assert "secretbox.keys[0].secret" in msg and "got 16, expected one of [32]" in msg
    assert '(key "sb")' in msg
    msg = error(config([{"resources": ["secrets"], "providers": [
        aescbc("good"), aescbc("bad", secret="not base64!")]}]))
    assert msg == ('resources[0].providers[1].aescbc.keys[0].secret: Invalid value: '
                   '"REDACTED": secrets must be base64 encoded (key "bad")')
    msg = error(config([{"resources": ["secrets"], "providers": [
        {"aescbc": {"keys": [{"name": "nosecret"}, {"secret": K16}]}}]}]))
    assert msg == ('[resources[0].providers[0].aescbc.keys[0].secret: Required value: secret is '
                   'a mandatory field for a key (key "nosecret"), resources[0].providers[0].'
                   'aescbc.keys[1].name: Required value: name is a mandatory field for a key]')
    msg = error(config([{"resources": ["secrets"], "providers": [{"aescbc": {"keys": []}}]}]))
    assert msg == ("resources[0].providers[0].aescbc.keys: Required value: at least one keys "
                   "is required")


def test_structure_errors_are_upstreams() -> None:
    assert error(config([])) == "resources: Required value: at least one resources is required"
    msg = error(config([{"resources": [], "providers": []}]))
    assert "resources[0].resources: Required value: at least one resources[0].resources" in msg
    assert "resources[0].providers: Required value: at least one resources[0].providers" in msg
    assert "provider does not contain any of the expected providers" in error(
        config([{"resources": ["secrets"], "providers": [{"bogus": {}}]}]))
    assert "more than one provider specified in a single element" in error(
        config([{"resources": ["secrets"], "providers": [{**aescbc("k"), "identity": {}}]}]))
    assert "KMS providers are not supported by pyk8s" in error(config([{
        "resources": ["secrets"],
        "providers": [{"kms": {"name": "p", "endpoint": "unix:///kms.sock"}}]}]))


@pytest.mark.parametrize("names,message", [
    (["Secrets"], "resource name should not contain capital letters"),
    (["*"], "use '*.' to encrypt all the resources from core API group or *.* to encrypt "
            "all resources"),
    (["serviceipallocations"], "resources which do not have REST API/s cannot be encrypted"),
    (["events.events.k8s.io"], "stored using the 'events' API group in etcd"),
    (["deployments.extensions"], "'extensions' group has been removed"),
    (["secrets.*"], "encrypting the same resource across groups is not supported"),
    (["secrets", "secrets"], 'Invalid value: []string{"secrets", "secrets"}: the same '
                             "resource cannot be specified multiple times"),
    (["secrets", "*."], "using overlapping resources such as 'secrets' and '*.' in the same "
                        "resource list is not allowed as they will be masked"),
    (["*.*", "deployments.apps"], "overlapping resources"),
])
def test_resource_name_errors(names: list[str], message: str) -> None:
    assert message in error(config([{"resources": names, "providers": [aescbc("k")]}]))


def test_earlier_wildcards_mask_later_rules() -> None:
    msg = error(config([{"resources": ["*.apps"], "providers": [aescbc("k")]},
                        {"resources": ["deployments.apps"], "providers": [aescbc("k")]}]))
    assert msg == 'resource "deployments.apps" is masked by earlier rule "*.apps"'
    msg = error(config([{"resources": ["*.*"], "providers": [aescbc("k")]},
                        {"resources": ["secrets"], "providers": [aescbc("k")]}]))
    assert msg == 'resource "secrets" is masked by earlier rule "*.*"'
    msg = error(config([{"resources": ["*."], "providers": [aescbc("k")]},
                        {"resources": ["secrets"], "providers": [aescbc("k")]}]))
    assert msg == 'resource "secrets" is masked by earlier rule "*."'


def test_group_resource_names() -> None:
    assert parse_group_resource("secrets") == ("", "secrets")
    assert parse_group_resource("deployments.apps") == ("apps", "deployments")
    assert parse_group_resource("widgets.example.com") == ("example.com", "widgets")
    assert parse_group_resource("*.") == ("", "*")
    assert parse_group_resource("*.*") == ("*", "*")


def _writer(c: object, key: str) -> bytes:
    t = c.transformer_for(key)  # type: ignore[attr-defined]
    return t.write_prefix if isinstance(t, PrefixTransformers) else b"plain"


def test_rules_map_to_storage_keys_most_specific_first() -> None:
    c = parse_encryption_config(config([
        {"resources": ["secrets", "widgets.example.com"], "providers": [aescbc("exact")]},
        {"resources": ["*.apps"], "providers": [aescbc("apps")]},
        {"resources": ["*."], "providers": [aescbc("core")]},
        {"resources": ["*.*"], "providers": [aescbc("all")]},
    ]))
    assert _writer(c, "/registry/secrets/ns/s") == b"k8s:enc:aescbc:v1:exact:"
    assert _writer(c, "/registry/example.com/widgets/ns/w") == b"k8s:enc:aescbc:v1:exact:"
    assert _writer(c, "/registry/deployments/ns/d") == b"k8s:enc:aescbc:v1:apps:"
    assert _writer(c, "/registry/controllerrevisions/ns/r") == b"k8s:enc:aescbc:v1:apps:"
    assert _writer(c, "/registry/configmaps/ns/c") == b"k8s:enc:aescbc:v1:core:"
    assert _writer(c, "/registry/events/ns/e") == b"k8s:enc:aescbc:v1:core:"
    assert _writer(c, "/registry/leases/ns/l") == b"k8s:enc:aescbc:v1:all:"
    assert _writer(c, "/registry/example.com/gadgets/g") == b"k8s:enc:aescbc:v1:all:"
    assert _writer(c, "/registry/apiextensions.k8s.io/customresourcedefinitions/x") == \
        b"k8s:enc:aescbc:v1:all:"
    # Keys that are no API object stay plain (and refuse encrypted data).
    for key in ("/registry/ranges/serviceips/10.96.0.1", "/registry/masterleases/10.0.0.1/443",
                "/elsewhere/x"):
        assert isinstance(c.transformer_for(key), Identity)


def test_only_listed_resources_are_encrypted() -> None:
    c = parse_encryption_config(config([{"resources": ["secrets"], "providers": [aescbc("k")]}]))
    assert _writer(c, "/registry/secrets/ns/s") == b"k8s:enc:aescbc:v1:k:"
    t = c.transformer_for("/registry/configmaps/ns/c")
    assert isinstance(t, Identity)
    with pytest.raises(TransformError, match="identity transformer tried to read encrypted"):
        t.from_storage(b"k8s:enc:aescbc:v1:k:xxxx", KEY)


def test_the_same_resource_in_two_entries_concatenates_providers() -> None:
    c = parse_encryption_config(config([
        {"resources": ["secrets"], "providers": [aescbc("new")]},
        {"resources": ["secrets"], "providers": [{"identity": {}}]}]))
    t = c.transformer_for("/registry/secrets/ns/s")
    assert isinstance(t, PrefixTransformers) and len(t.entries) == 2
    assert t.from_storage(b"{}", KEY) == (b"{}", True)


def test_catalogue_resources_added_later_use_the_group_rules() -> None:
    cat = Catalogue()
    c = parse_encryption_config(config([{"resources": ["*.example.com"],
                                         "providers": [aescbc("k")]}]), cat)
    cat.add(ResourceInfo("example.com", "v1", "Widget", "widgets", "widget",
                         storage_group="example.com"))
    assert _writer(c, "/registry/example.com/widgets/ns/w") == b"k8s:enc:aescbc:v1:k:"


def test_unknown_builtin_resource_is_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        parse_encryption_config(config([{"resources": ["secret"], "providers": [aescbc("k")]}]))
    assert 'names resource "secret", which pyk8s does not serve' in caplog.text


def test_load_from_file_errors_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    with pytest.raises(EncryptionConfigError, match="error opening encryption provider "
                                                    "configuration file"):
        load_encryption_config(missing)
    empty = tmp_path / "empty.yaml"
    empty.write_text("\n")
    with pytest.raises(EncryptionConfigError, match="is empty"):
        load_encryption_config(empty)
    bad = tmp_path / "bad.yaml"
    bad.write_text(config([{"resources": ["secrets"],
                            "providers": [aescbc("key1", secret="AAAA")]}]))
    with pytest.raises(EncryptionConfigError) as ei:
        load_encryption_config(bad)
    assert str(ei.value).startswith(f'error while parsing file "{bad}": resources[0]')
    assert 'got 3, expected one of [16 24 32] (key "key1")' in str(ei.value)
    good = tmp_path / "good.json"
    good.write_text(config([{"resources": ["secrets"], "providers": [aescbc("key1")]}]))
    assert load_encryption_config(good).rules
