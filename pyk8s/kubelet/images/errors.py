"""The image service's errors. Each carries the `reason` the kubelet shows in a container's
waiting state (upstream's ErrImagePull, ErrImageNeverPull, InvalidImageName)."""
from __future__ import annotations


class ImageError(Exception):
    reason = "ErrImagePull"

    @property
    def message(self) -> str:
        return str(self)


class InvalidImageName(ImageError, ValueError):
    """A reference that does not parse (`couldn't parse image name "X": ...`)."""
    reason = "InvalidImageName"


class ImagePullError(ImageError):
    """A failed pull; the message reads as containerd's (`failed to pull and unpack image
    "docker.io/library/x:latest": ...`). `auth` is True when the registry refused the
    credentials (the next credential may be tried)."""
    reason = "ErrImagePull"

    def __init__(self, message: str, auth: bool = False) -> None:
        super().__init__(message)
        self.auth = auth


class ImageNeverPullError(ImageError):
    """pull policy Never and the image is not present."""
    reason = "ErrImageNeverPull"

    def __init__(self, image: str) -> None:
        super().__init__(f'Container image "{image}" is not present with pull policy of Never')
        self.image = image


class LayerError(ImageError):
    """A layer that cannot be unpacked (bad archive, path traversal, unknown compression)."""
    reason = "ErrImagePull"


class DigestMismatch(ImageError):
    """Content whose sha256 is not the digest it was fetched by."""
    reason = "ErrImagePull"

    def __init__(self, expected: str, actual: str) -> None:
        super().__init__(f"unexpected commit digest {actual}, expected {expected}: "
                         f"failed precondition")
        self.expected = expected
        self.actual = actual


class ContentMissing(ImageError):
    """Blobs or layers an image needs vanished from the store while it was being recorded
    (removed by image GC / `pyk8s image rm` meanwhile); the pull is tried once more."""
