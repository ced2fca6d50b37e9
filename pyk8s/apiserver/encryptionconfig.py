"""Encryption at rest: upstream's `--encryption-provider-config` file.

Parses an `apiserver.config.k8s.io/v1` `EncryptionConfiguration` (YAML or JSON; the older
`v1` `EncryptionConfig` too), validates it with upstream's rules and messages
(k8s.io/apiserver/pkg/apis/apiserver/validation/validation_encryption.go) and builds, per
configured resource, the value transformer storage applies (`pyk8s.storage.value`):

    resources:
    - resources: [secrets, configmaps, "*.apps", "*.*"]
      providers:
      - aescbc: {keys: [{name: key1, secret: <base64 of 16, 24 or 32 bytes>}]}
      - identity: {}

The first provider of an entry writes; reads try them all by prefix (`k8s:enc:aescbc:v1:
key1:` …; identity reads values with no such prefix). Resource names are `resource.group`
(`secrets`, `deployments.apps`, custom resources as `widgets.example.com`), `*.group` for
a whole group (`*.` is the core group) and `*.*` for everything; an exact name wins over
`*.group`, which wins over `*.*`. Resources are mapped to storage keys with the catalogue
(`/registry/secrets/…`), custom resources to `/registry/<group>/<plural>/…`. Keys that are
not API objects (Service allocations, API server leases) are never encrypted. KMS providers
are refused: pyk8s has no KMS plugin client.
"""
from __future__ import annotations

import base64
import binascii
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pyk8s.api.catalogue import Catalogue
from pyk8s.storage.interface import Storage
from pyk8s.storage.transforming import TransformingStorage
from pyk8s.storage.value import (AES_KEY_SIZES, AESCBC, AESGCM, SECRETBOX_KEY_SIZES, Identity,
                                 PrefixTransformers, Secretbox, Transformer)

log = logging.getLogger(__name__)

API_VERSION = "apiserver.config.k8s.io/v1"
KIND = "EncryptionConfiguration"
LEGACY = ("v1", "EncryptionConfig")  # accepted by upstream's decoder too

AESCBC_PREFIX = b"k8s:enc:aescbc:v1:"
AESGCM_PREFIX = b"k8s:enc:aesgcm:v1:"
SECRETBOX_PREFIX = b"k8s:enc:secretbox:v1:"
NO_MATCHING_PREFIX = "no matching prefix found"

ROOT = "/registry/"

GroupResource = tuple[str, str]  # (group, resource); "*" wildcards
ANY = ("*", "*")

_PROVIDERS = ("kms", "aesgcm", "aescbc", "secretbox", "identity")
_NON_REST = ("apiserveripinfo", "serviceipallocations", "servicenodeportallocations")


class EncryptionConfigError(ValueError):
    """The file cannot be used; the message says why (upstream's wording)."""


def parse_group_resource(name: str) -> GroupResource:
    """Upstream's schema.ParseGroupResource: `deployments.apps` → (apps, deployments)."""
    resource, dot, group = name.partition(".")
    return (group, resource) if dot else ("", name)


def format_group_resource(gr: GroupResource) -> str:
    """How upstream's messages print a GroupResource (`*.` for the whole core group)."""
    group, resource = gr
    if group == "" and resource == "*":
        return "*."
    return f"{resource}.{group}" if group else resource


@dataclass
class _Errors:
    """Upstream's field.ErrorList, printed as ToAggregate() does."""
    items: list[str] = field(default_factory=list)

    def required(self, path: str, detail: str) -> None:
        self.items.append(f"{path}: Required value: {detail}")

    def invalid(self, path: str, value: Any, detail: str) -> None:
        self.items.append(f"{path}: Invalid value: {_go_value(value)}: {detail}")

    def message(self) -> str:
        unique = list(dict.fromkeys(self.items))
        return unique[0] if len(unique) == 1 else "[" + ", ".join(unique) + "]"


def _go_value(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list):
        return "[]string{" + ", ".join(f'"{v}"' for v in value) + "}"
    return str(value)


@dataclass
class EncryptionConfig:
    """The transformers per (group, resource) rule and the storage keys they apply to."""

    rules: dict[GroupResource, PrefixTransformers]
    catalogue: Catalogue = field(default_factory=Catalogue, repr=False)
    _by_prefix: dict[str, Transformer] = field(default_factory=dict, repr=False)
    _builtin: dict[str, GroupResource] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        # Built-in storage prefixes → their group/resource (events.k8s.io Events share the
        # core group's prefix: listed first, the core group names it, as upstream stores it).
        for info in sorted(self.catalogue.resources, key=lambda r: r.group != ""):
            self._builtin.setdefault(info.storage_prefix, (info.group, info.plural))

    def rule_for(self, gr: GroupResource) -> PrefixTransformers | None:
        """Upstream's lookup: the exact resource, then `*.group`, then `*.*`."""
        return self.rules.get(gr) or self.rules.get((gr[0], "*")) or self.rules.get(ANY)

    def group_resource_of(self, prefix: str) -> GroupResource | None:
        """`/registry/secrets/` → ("", "secrets"); `/registry/example.com/widgets/` →
        ("example.com", "widgets"); keys that are no API object → None."""
        gr = self._builtin.get(prefix)
        if gr is not None:
            return gr
        parts = prefix.split("/")
        if len(parts) == 5 and "." in parts[2]:  # ['', 'registry', group, plural, '']
            return parts[2], parts[3]
        return None

    def transformer_for(self, key: str) -> Transformer:
        """The transformer of a storage key (memoized per resource prefix)."""
        if not key.startswith(ROOT):
            return _IDENTITY
        prefix = _resource_prefix(key)
        t = self._by_prefix.get(prefix)
        if t is None:
            gr = self.group_resource_of(prefix)
            t = (self.rule_for(gr) if gr is not None else None) or _IDENTITY
            self._by_prefix[prefix] = t
        return t

    def wrap(self, storage: Storage) -> TransformingStorage:
        """`storage` with every value going through its key's transformer."""
        return TransformingStorage(storage, self.transformer_for)

    def describe(self) -> list[str]:
        """One line per rule, for the start-up log."""
        out = []
        for gr, t in self.rules.items():
            writer = t.write_prefix.decode() or "identity"
            out.append(f"{format_group_resource(gr)}: writes {writer}, "
                       f"reads {len(t.entries)} provider(s)")
        return out


_IDENTITY = Identity()


def _resource_prefix(key: str) -> str:
    """`/registry/pods/ns/x` → `/registry/pods/`; `/registry/g.io/things/ns/x` → two levels
    (the watch cache's rule)."""
    parts = key.split("/", 4)
    if len(parts) > 3 and "." in parts[2]:
        return f"/{parts[1]}/{parts[2]}/{parts[3]}/"
    return f"/{parts[1]}/{parts[2]}/"


# -- loading ---------------------------------------------------------------------------------

def load_encryption_config(path: str | Path, catalogue: Catalogue | None = None
                           ) -> EncryptionConfig:
    """Read, validate and build the file's transformers; EncryptionConfigError on any
    problem (the message names the file and, for keys, the key)."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise EncryptionConfigError(f"error opening encryption provider configuration file "
                                    f'"{path}": {e.strerror or e}') from None
    if not data.strip():
        raise EncryptionConfigError(f'encryption provider configuration file "{path}" is empty')
    try:
        config = parse_encryption_config(data, catalogue)
    except EncryptionConfigError as e:
        raise EncryptionConfigError(f'error while parsing file "{path}": {e}') from None
    for line in config.describe():
        log.info("encryption at rest: %s", line)
    return config


def parse_encryption_config(data: bytes | str, catalogue: Catalogue | None = None
                            ) -> EncryptionConfig:
    try:
        doc = yaml.safe_load(data)
    except yaml.YAMLError as e:
        raise EncryptionConfigError(f"not YAML or JSON: {e}") from None
    if not isinstance(doc, dict):
        raise EncryptionConfigError("expected an EncryptionConfiguration object")
    api_version, kind = doc.get("apiVersion"), doc.get("kind")
    if not kind:
        raise EncryptionConfigError("Object 'Kind' is missing")
    if (api_version, kind) not in ((API_VERSION, KIND), LEGACY):
        raise EncryptionConfigError(
            f'no kind "{kind}" is registered for version "{api_version}": expected '
            f"apiVersion {API_VERSION}, kind {KIND}")
    resources = doc.get("resources") or []
    if not isinstance(resources, list):
        raise EncryptionConfigError("resources: must be a list")
    errs = _Errors()
    _validate(resources, errs)
    if errs.items:
        raise EncryptionConfigError(errs.message())
    cat = catalogue or Catalogue()
    rules = _build_rules(resources)
    _warn_unknown(rules, cat)
    return EncryptionConfig(rules, cat)


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _validate(resources: list[Any], errs: _Errors) -> None:
    """Upstream's ValidateEncryptionConfiguration, plus: no KMS (pyk8s has no plugin client)."""
    if not resources:
        errs.required("resources", "at least one resources is required")
        return
    for i, conf in enumerate(resources):
        conf = conf if isinstance(conf, dict) else {}
        r_path, p_path = f"resources[{i}].resources", f"resources[{i}].providers"
        names = [str(n) for n in _as_list(conf.get("resources"))]
        if not names:
            errs.required(r_path, f"at least one {r_path} is required")
        _validate_overlap(names, r_path, errs)
        _validate_names(names, r_path, errs)
        providers = _as_list(conf.get("providers"))
        if not providers:
            errs.required(p_path, f"at least one {p_path} is required")
        for j, provider in enumerate(providers):
            path = f"{p_path}[{j}]"
            provider = provider if isinstance(provider, dict) else {}
            found = [k for k in _PROVIDERS if provider.get(k) is not None]
            if not found:
                errs.invalid(path, str(provider), "provider does not contain any of the "
                             "expected providers: KMS, AESGCM, AESCBC, Secretbox, Identity")
                continue
            if len(found) > 1:
                errs.invalid(path, str(provider), "more than one provider specified in a "
                             "single element, should split into different list elements")
                continue
            name = found[0]
            if name == "kms":
                kms = provider["kms"] if isinstance(provider["kms"], dict) else {}
                errs.invalid(f"{path}.kms", str(kms.get("name", "")),
                             "KMS providers are not supported by pyk8s")
            elif name in ("aesgcm", "aescbc"):
                _validate_keys(provider[name], f"{path}.{name}.keys", AES_KEY_SIZES, errs)
            elif name == "secretbox":
                _validate_keys(provider[name], f"{path}.secretbox.keys", SECRETBOX_KEY_SIZES,
                               errs)


def _validate_overlap(names: list[str], path: str, errs: _Errors) -> None:
    grs = [parse_group_resource(n) for n in names]
    duplicate = overlap = False
    for i, a in enumerate(grs):
        for j, b in enumerate(grs):
            if i == j:
                continue
            if a == b:
                duplicate = True
                continue
            if a == ANY or (a[0] == b[0] and "*" in (a[1], b[1])):
                overlap = True
    if duplicate:
        errs.invalid(path, names, "the same resource cannot be specified multiple times")
    if overlap:
        errs.invalid(path, names, "using overlapping resources such as 'secrets' and '*.' in "
                                  "the same resource list is not allowed as they will be masked")


def _validate_names(names: list[str], path: str, errs: _Errors) -> None:
    for j, name in enumerate(names):
        p = f"{path}[{j}]"
        group, resource = parse_group_resource(name)
        if name.lower() != name:
            errs.invalid(p, name, "resource name should not contain capital letters")
        elif name == "*":
            errs.invalid(p, name, "use '*.' to encrypt all the resources from core API group "
                                  "or *.* to encrypt all resources")
        elif name in _NON_REST:
            errs.invalid(p, name, "resources which do not have REST API/s cannot be encrypted")
        elif group == "events.k8s.io":
            errs.invalid(p, name, "'*.events.k8s.io' objects are stored using the 'events' API "
                                  "group in etcd. Use 'events' instead in the config file")
        elif group == "extensions":
            errs.invalid(p, name, "'extensions' group has been removed and cannot be used for "
                                  "encryption")
        elif group == "*" and resource != "*":
            errs.invalid(p, name, "encrypting the same resource across groups is not supported")


def _validate_keys(conf: Any, path: str, sizes: tuple[int, ...], errs: _Errors) -> None:
    keys = _as_list((conf or {}).get("keys") if isinstance(conf, dict) else None)
    if not keys:
        errs.required(path, "at least one keys is required")
        return
    for i, key in enumerate(keys):
        key = key if isinstance(key, dict) else {}
        name, secret = str(key.get("name") or ""), str(key.get("secret") or "")
        named = f' (key "{name}")' if name else ""
        if not name:
            errs.required(f"{path}[{i}].name", "name is a mandatory field for a key")
        if not secret:
            errs.required(f"{path}[{i}].secret", "secret is a mandatory field for a key" + named)
            continue
        raw = _decode_secret(secret)
        if raw is None:
            errs.invalid(f"{path}[{i}].secret", "REDACTED",
                         "secrets must be base64 encoded" + named)
        elif len(raw) not in sizes:
            errs.invalid(f"{path}[{i}].secret", "REDACTED",
                         f"secret is not of the expected length, got {len(raw)}, expected one "
                         f"of [{' '.join(map(str, sizes))}]" + named)


def _decode_secret(secret: str) -> bytes | None:
    """Go's base64.StdEncoding.DecodeString (padding required; line breaks ignored)."""
    try:
        return base64.b64decode(secret.replace("\n", "").replace("\r", ""), validate=True)
    except (binascii.Error, ValueError):
        return None


# -- building --------------------------------------------------------------------------------

def _build_rules(resources: list[dict[str, Any]]) -> dict[GroupResource, PrefixTransformers]:
    """Per (group, resource): the providers of every entry naming it, in file order."""
    entries: dict[GroupResource, list[tuple[bytes, Transformer]]] = {}
    for i, conf in enumerate(resources):
        providers = [_provider(p, f"resources[{i}].providers[{j}]")
                     for j, p in enumerate(conf["providers"])]
        for name in conf["resources"]:
            gr = parse_group_resource(str(name))
            for masking in ((gr[0], "*"), ANY):
                if masking in entries:
                    raise EncryptionConfigError(
                        f'resource "{format_group_resource(gr)}" is masked by earlier rule '
                        f'"{format_group_resource(masking)}"')
            entries.setdefault(gr, []).extend(providers)
    return {gr: PrefixTransformers(e, NO_MATCHING_PREFIX) for gr, e in entries.items()}


def _provider(provider: dict[str, Any], path: str) -> tuple[bytes, Transformer]:
    if provider.get("identity") is not None:
        return b"", _IDENTITY
    if provider.get("aescbc") is not None:
        return AESCBC_PREFIX, _keyed(provider["aescbc"], AESCBC,
                                     "no matching key was found for the provided AES transformer")
    if provider.get("aesgcm") is not None:
        log.warning("%s: the aesgcm provider uses random nonces: its keys must be rotated "
                    "every 200,000 writes (an automated key rotation scheme is required)", path)
        return AESGCM_PREFIX, _keyed(provider["aesgcm"], AESGCM,
                                     "no matching key was found for the provided AES transformer")
    return SECRETBOX_PREFIX, _keyed(
        provider["secretbox"], Secretbox,
        "no matching key was found for the provided Secretbox transformer")


def _keyed(conf: dict[str, Any], make: Any, no_match: str) -> PrefixTransformers:
    """One transformer per key, chosen by the `<name>:` prefix; the first key writes."""
    keys = []
    for key in conf["keys"]:
        raw = _decode_secret(str(key["secret"]))
        assert raw is not None  # validated
        keys.append((f"{key['name']}:".encode(), make(raw)))
    return PrefixTransformers(keys, no_match)


def _warn_unknown(rules: dict[GroupResource, PrefixTransformers], catalogue: Catalogue) -> None:
    """A resource of a built-in group the catalogue does not serve is most likely a typo."""
    served = {(r.group, r.plural) for r in catalogue.resources}
    groups = {g for g, _ in served}
    for gr in rules:
        if gr[1] != "*" and gr[0] in groups and gr not in served:
            log.warning('encryption config names resource "%s", which pyk8s does not serve',
                        format_group_resource(gr))


__all__ = ["EncryptionConfig", "EncryptionConfigError", "load_encryption_config",
           "parse_encryption_config", "parse_group_resource"]
