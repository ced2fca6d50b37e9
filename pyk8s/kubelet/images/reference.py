"""Image references, parsed and normalized as Docker / containerd do (distribution's
`reference.ParseNormalizedNamed` + containerd's `ParseDockerRef`):

    busybox                      → docker.io/library/busybox:latest
    127.0.0.1:5000/foo/bar:v1    → 127.0.0.1:5000/foo/bar:v1
    name@sha256:<64 hex>         → docker.io/library/name@sha256:…
    name:tag@sha256:<64 hex>     → docker.io/library/name@sha256:… (the digest wins)

The first path component is a registry host if it contains `.` or `:`, is `localhost`, or
has upper-case letters. Invalid references raise `InvalidImageName` (a ValueError) with
kubelet's message: `couldn't parse image name "X": invalid reference format`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from pyk8s.kubelet.images.errors import InvalidImageName

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
DOCKER_API_HOST = "registry-1.docker.io"
OFFICIAL_REPO_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_TOTAL_LENGTH_MAX = 255

# distribution/reference/regexp.go
_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|{_IPV6})(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][0-9a-fA-F]{32,}"
_NAME = rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
REFERENCE_RE = re.compile(rf"^({_NAME})(?::({_TAG}))?(?:@({_DIGEST}))?$")
_ANCHORED_ID_RE = re.compile(r"^[a-f0-9]{64}$")
_SHA256_RE = re.compile(r"^sha256:[a-f0-9]{64}$")
_DOMAIN_RE = re.compile(rf"^{_DOMAIN}$")


def _invalid(image: str, why: str) -> InvalidImageName:
    return InvalidImageName(f'couldn\'t parse image name "{image}": {why}')


def _check_digest(image: str, digest: str) -> None:
    algo, _, hexpart = digest.partition(":")
    if algo == "sha256":
        if len(hexpart) != 64:
            raise _invalid(image, "invalid checksum digest length")
        if not re.fullmatch(r"[a-f0-9]{64}", hexpart):
            raise _invalid(image, "invalid checksum digest format")
    elif algo == "sha512":
        if len(hexpart) != 128 or not re.fullmatch(r"[a-f0-9]+", hexpart):
            raise _invalid(image, "invalid checksum digest length")
    else:
        raise _invalid(image, "unsupported digest algorithm")


def split_docker_domain(name: str) -> tuple[str, str]:
    """distribution's splitDockerDomain: (domain, remainder), docker.io's defaults applied."""
    i = name.find("/")
    first = name[:i] if i >= 0 else ""
    if i == -1 or (not any(c in first for c in ".:") and first != "localhost"
                   and first.lower() == first):
        domain, remainder = DEFAULT_DOMAIN, name
    else:
        domain, remainder = first, name[i + 1:]
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in remainder:
        remainder = OFFICIAL_REPO_PREFIX + remainder
    return domain, remainder


@dataclass(frozen=True)
class Reference:
    domain: str            # registry host[:port] as written ("docker.io" for Docker Hub)
    path: str              # repository path ("library/busybox")
    tag: str = ""          # "" when only a digest was given
    digest: str = ""       # "sha256:<hex>" or ""

    @property
    def name(self) -> str:
        """domain/path: `docker.io/library/busybox`."""
        return f"{self.domain}/{self.path}"

    @property
    def repository(self) -> str:
        return self.path

    @property
    def api_host(self) -> str:
        """The host[:port] the distribution API is served on (`registry-1.docker.io` for
        docker.io)."""
        return DOCKER_API_HOST if self.domain == DEFAULT_DOMAIN else self.domain

    @property
    def reference(self) -> str:
        """What to ask the registry's manifests endpoint for: the digest, else the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    def normalized(self) -> str:
        """containerd's ParseDockerRef: `name@digest` when there is a digest (a tag given
        with it is dropped), else `name:tag` (`latest` by default)."""
        if self.digest:
            return f"{self.name}@{self.digest}"
        return f"{self.name}:{self.tag or DEFAULT_TAG}"

    def tagged(self) -> str:
        """`name:tag` ("" when the reference has only a digest)."""
        if self.tag or not self.digest:
            return f"{self.name}:{self.tag or DEFAULT_TAG}"
        return ""

    def with_digest(self, digest: str) -> str:
        return f"{self.name}@{digest}"

    def familiar(self) -> str:
        """The short form Docker prints (`busybox:latest`, `foo/bar:v1`)."""
        path = self.path
        if self.domain == DEFAULT_DOMAIN:
            name = path[len(OFFICIAL_REPO_PREFIX):] if path.startswith(OFFICIAL_REPO_PREFIX) \
                and path.count("/") == 1 else path
        else:
            name = self.name
        out = name
        if self.tag:
            out += ":" + self.tag
        if self.digest:
            out += "@" + self.digest
        return out

    def __str__(self) -> str:
        out = self.name
        if self.tag:
            out += ":" + self.tag
        if self.digest:
            out += "@" + self.digest
        return out


def parse_reference(image: str, default_tag: bool = True) -> Reference:
    """Parse and normalize `image`; the tag defaults to `latest` when there is neither tag
    nor digest (unless `default_tag` is False). Raises InvalidImageName."""
    if not isinstance(image, str) or image == "":
        raise _invalid(image if isinstance(image, str) else repr(image),
                       "repository name must have at least one component")
    if _ANCHORED_ID_RE.match(image):
        raise _invalid(image, f"invalid repository name ({image}), cannot specify 64-byte "
                              f"hexadecimal strings")
    domain, remainder = split_docker_domain(image)
    remote_name = remainder.split(":", 1)[0]
    if remote_name.lower() != remote_name:
        raise _invalid(image, f"invalid reference format: repository name ({remote_name}) "
                              f"must be lowercase")
    full = f"{domain}/{remainder}"
    m = REFERENCE_RE.match(full)
    if m is None:
        raise _invalid(image, "invalid reference format")
    name, tag, digest = m.group(1), m.group(2) or "", m.group(3) or ""
    if len(name) > NAME_TOTAL_LENGTH_MAX:
        raise _invalid(image, f"repository name must not be more than "
                              f"{NAME_TOTAL_LENGTH_MAX} characters")
    if digest:
        _check_digest(image, digest)
    path = name[len(domain) + 1:]
    if not tag and not digest and default_tag:
        tag = DEFAULT_TAG
    return Reference(domain=domain, path=path, tag=tag, digest=digest)


def normalize(image: str) -> str:
    """`parse_reference(image).normalized()`."""
    return parse_reference(image).normalized()


def is_digest(s: str) -> bool:
    return bool(_SHA256_RE.match(s))


def is_registry_host(s: str) -> bool:
    return bool(_DOMAIN_RE.match(s))
