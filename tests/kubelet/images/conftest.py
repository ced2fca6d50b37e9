"""Shared pieces of the image service's tests."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.images import build_busybox_image, write_oci_archive


@pytest.fixture(scope="session")
def busybox_layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The busybox test image as an OCI layout (tag `latest`)."""
    return build_busybox_image(tmp_path_factory.mktemp("bb") / "layout")


@pytest.fixture(scope="session")
def busybox_archive(busybox_layout: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An oci-archive of it, named `example.com/test/busybox:v1`."""
    return write_oci_archive(busybox_layout, tmp_path_factory.mktemp("bba") / "bb.tar",
                             ref_name="example.com/test/busybox:v1")
