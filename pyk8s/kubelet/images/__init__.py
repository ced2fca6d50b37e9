"""The kubelet's image service: references (reference.py), the content-addressed store of
blobs, unpacked layers and image records (store.py, layers.py), pulls over the OCI
distribution API (registry.py, credentials.py), pull policies (manager.py), imports of
image archives (archive.py) and the images containers use (inuse.py)."""
from pyk8s.kubelet.images.archive import ImageImportError, import_archive, import_layout
from pyk8s.kubelet.images.credentials import RegistryCredential, credentials_from_secrets
from pyk8s.kubelet.images.errors import (DigestMismatch, ImageError, ImageNeverPullError,
                                         ImagePullError, InvalidImageName, LayerError)
from pyk8s.kubelet.images.manager import ImageManager, default_pull_policy
from pyk8s.kubelet.images.reference import Reference, normalize, parse_reference
from pyk8s.kubelet.images.registry import RegistryClient
from pyk8s.kubelet.images.store import ImageRecord, ImageStore

ErrImageNeverPull = ImageNeverPullError

__all__ = [
    "DigestMismatch", "ErrImageNeverPull", "ImageError", "ImageImportError", "ImageManager",
    "ImageNeverPullError", "ImagePullError", "ImageRecord", "ImageStore", "InvalidImageName",
    "LayerError", "Reference", "RegistryClient", "RegistryCredential",
    "credentials_from_secrets", "default_pull_policy", "import_archive", "import_layout",
    "normalize", "parse_reference",
]
