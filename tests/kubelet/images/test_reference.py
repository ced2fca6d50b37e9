"""Image references as distribution's ParseNormalizedNamed + containerd's ParseDockerRef
(cases from distribution/reference's normalize_test.go and reference_test.go)."""
from __future__ import annotations

import pytest

from pyk8s.kubelet.images import InvalidImageName, parse_reference
from pyk8s.kubelet.images.manager import default_pull_policy

D64 = "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"
HEX64 = "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a"


@pytest.mark.parametrize("image,normalized,domain,path,tag,digest", [
    ("busybox", "docker.io/library/busybox:latest", "docker.io", "library/busybox",
     "latest", ""),
    ("busybox:1.36", "docker.io/library/busybox:1.36", "docker.io", "library/busybox",
     "1.36", ""),
    ("docker/docker", "docker.io/docker/docker:latest", "docker.io", "docker/docker",
     "latest", ""),
    ("library/debian", "docker.io/library/debian:latest", "docker.io", "library/debian",
     "latest", ""),
    ("docker.io/debian", "docker.io/library/debian:latest", "docker.io", "library/debian",
     "latest", ""),
    ("index.docker.io/docker/docker", "docker.io/docker/docker:latest", "docker.io",
     "docker/docker", "latest", ""),
    ("index.docker.io/debian", "docker.io/library/debian:latest", "docker.io",
     "library/debian", "latest", ""),
    ("127.0.0.1:5000/foo/bar:v1", "127.0.0.1:5000/foo/bar:v1", "127.0.0.1:5000", "foo/bar",
     "v1", ""),
    ("127.0.0.1:5000/debian", "127.0.0.1:5000/debian:latest", "127.0.0.1:5000", "debian",
     "latest", ""),
    ("localhost/debian", "localhost/debian:latest", "localhost", "debian", "latest", ""),
    ("localhost:5000/library/debian", "localhost:5000/library/debian:latest",
     "localhost:5000", "library/debian", "latest", ""),
    ("192.168.0.1", "docker.io/library/192.168.0.1:latest", "docker.io",
     "library/192.168.0.1", "latest", ""),
    ("192.168.0.1:80", "docker.io/library/192.168.0.1:80", "docker.io",
     "library/192.168.0.1", "80", ""),
    ("192.168.0.2:25000/debian", "192.168.0.2:25000/debian:latest", "192.168.0.2:25000",
     "debian", "latest", ""),
    ("foo_bar.com:8080", "docker.io/library/foo_bar.com:8080", "docker.io",
     "library/foo_bar.com", "8080", ""),
    ("foo/foo_bar.com:8080", "docker.io/foo/foo_bar.com:8080", "docker.io",
     "foo/foo_bar.com", "8080", ""),
    ("sub-dom1.foo.com/bar/baz/quux", "sub-dom1.foo.com/bar/baz/quux:latest",
     "sub-dom1.foo.com", "bar/baz/quux", "latest", ""),
    ("xn--n3h.com/myimage:xn--n3h.com", "xn--n3h.com/myimage:xn--n3h.com", "xn--n3h.com",
     "myimage", "xn--n3h.com", ""),
    ("Uppercase.com/lower", "Uppercase.com/lower:latest", "Uppercase.com", "lower",
     "latest", ""),
    ("Upper/lower", "Upper/lower:latest", "Upper", "lower", "latest", ""),
    ("lowercase:Uppercase", "docker.io/library/lowercase:Uppercase", "docker.io",
     "library/lowercase", "Uppercase", ""),
    ("[2001:db8::1]:5000/repo", "[2001:db8::1]:5000/repo:latest", "[2001:db8::1]:5000",
     "repo", "latest", ""),
    ("docker.io/" + HEX64, f"docker.io/library/{HEX64}:latest", "docker.io",
     f"library/{HEX64}", "latest", ""),
    (f"repo@sha256:{D64}", f"docker.io/library/repo@sha256:{D64}", "docker.io",
     "library/repo", "", f"sha256:{D64}"),
    (f"test:5000/repo@sha256:{D64}", f"test:5000/repo@sha256:{D64}", "test:5000", "repo",
     "", f"sha256:{D64}"),
    # tag and digest: the digest wins (containerd's ParseDockerRef drops the tag)
    (f"test:5000/repo:tag@sha256:{D64}", f"test:5000/repo@sha256:{D64}", "test:5000",
     "repo", "tag", f"sha256:{D64}"),
    ("a-b__c.d/e", "a-b__c.d/e:latest", "a-b__c.d", "e", "latest", ""),
    ("a--b/c---d", "docker.io/a--b/c---d:latest", "docker.io", "a--b/c---d", "latest", ""),
])
def test_valid(image: str, normalized: str, domain: str, path: str, tag: str,
               digest: str) -> None:
    r = parse_reference(image)
    assert r.normalized() == normalized
    assert (r.domain, r.path, r.tag, r.digest) == (domain, path, tag, digest)
    assert r.name == f"{domain}/{path}"


@pytest.mark.parametrize("image,why", [
    ("", "repository name must have at least one component"),
    ("https://github.com/docker/docker", "invalid reference format"),
    ("docker/Docker", "repository name (docker/Docker) must be lowercase"),
    ("docker.io/docker/Docker", "repository name (docker/Docker) must be lowercase"),
    ("Uppercase:tag", "repository name (library/Uppercase) must be lowercase"),
    ("test:5000/Uppercase/lowercase:tag", "must be lowercase"),
    ("-docker", "invalid reference format"),
    ("-docker/docker", "invalid reference format"),
    ("docker///docker", "invalid reference format"),
    ("docker.io/docker///docker", "invalid reference format"),
    (HEX64, "cannot specify 64-byte hexadecimal strings"),
    (":justtag", "invalid reference format"),
    (f"@sha256:{D64}", "invalid reference format"),
    ("busybox:", "invalid reference format"),
    ("busybox:tag:tag", "invalid reference format"),
    ("a/" * 127 + "a" + "b" * 10, "must not be more than 255 characters"),
    (f"validname@invaliddigest:{D64}", "unsupported digest algorithm"),
    ("repo@sha256:" + "f" * 31, "invalid reference format"),   # < 32 hex is no digest
    ("repo@sha256:" + "f" * 63, "invalid checksum digest length"),
    ("repo@sha256:" + "F" * 64, "invalid checksum digest format"),
    ("busybox:" + "t" * 129, "invalid reference format"),
    ("::1/repo", "invalid reference format"),
])
def test_invalid(image: str, why: str) -> None:
    with pytest.raises(InvalidImageName) as ei:
        parse_reference(image)
    msg = str(ei.value)
    assert msg.startswith(f'couldn\'t parse image name "{image}": '), msg
    assert why in msg
    assert ei.value.reason == "InvalidImageName"
    assert isinstance(ei.value, ValueError)


def test_api_host_and_forms() -> None:
    r = parse_reference("busybox")
    assert r.api_host == "registry-1.docker.io"
    assert r.reference == "latest"
    assert r.familiar() == "busybox:latest"
    assert parse_reference("127.0.0.1:5000/a/b:v1").api_host == "127.0.0.1:5000"
    d = parse_reference(f"busybox@sha256:{D64}")
    assert d.reference == f"sha256:{D64}"
    assert d.tagged() == ""
    assert d.with_digest("sha256:" + "0" * 64) == "docker.io/library/busybox@sha256:" + "0" * 64
    assert str(parse_reference("ghcr.io/x/y:z")) == "ghcr.io/x/y:z"


@pytest.mark.parametrize("image,policy", [
    ("busybox", "Always"), ("busybox:latest", "Always"), ("busybox:1.36", "IfNotPresent"),
    (f"busybox@sha256:{D64}", "IfNotPresent"), (f"busybox:latest@sha256:{D64}",
                                                "IfNotPresent"),
])
def test_default_pull_policy(image: str, policy: str) -> None:
    assert default_pull_policy(parse_reference(image)) == policy
