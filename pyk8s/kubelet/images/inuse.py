"""Which images a node's containers hold, readable by another process (`pyk8s image rm`).

The oci runtime writes `<bundle>/image.json` into each container's bundle
(`<agent data dir>/containers/<id>/`) as it creates the container; the bundle goes when the
container exits or is removed. So the bundles present are the containers using images.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import orjson

IMAGE_USE_FILE = "image.json"


@dataclass(frozen=True)
class ContainerUse:
    container_id: str
    image_id: str        # the image's config digest, sha256:…
    image: str           # as the pod spec names it
    pod_uid: str
    container: str       # the container's name in the pod


def write_image_use(bundle: Path, *, image_id: str, image: str, pod_uid: str,
                    container: str) -> None:
    (bundle / IMAGE_USE_FILE).write_bytes(orjson.dumps(
        {"imageID": image_id, "image": image, "podUID": pod_uid, "container": container}))


def containers_using_images(containers_dir: str | os.PathLike[str]) -> list[ContainerUse]:
    """The containers under `containers_dir` (the runtime's bundles) and their images."""
    out = []
    try:
        entries = sorted(os.scandir(containers_dir), key=lambda e: e.name)
    except OSError:
        return []
    for e in entries:
        try:
            d = orjson.loads(Path(e.path, IMAGE_USE_FILE).read_bytes())
        except (OSError, ValueError):
            continue
        if isinstance(d, dict) and d.get("imageID"):
            out.append(ContainerUse(container_id=e.name, image_id=str(d["imageID"]),
                                    image=str(d.get("image") or ""),
                                    pod_uid=str(d.get("podUID") or ""),
                                    container=str(d.get("container") or "")))
    return out
