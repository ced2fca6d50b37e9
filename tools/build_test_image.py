"""Build the busybox test image (tests/images.py: /usr/bin/busybox from busybox-static, one
layer, deterministic) as an oci-archive, for `pyk8s image import`, or push it to a registry.

    .venv/bin/python tools/build_test_image.py busybox.tar [--name busybox:local]
    .venv/bin/pyk8s image import busybox.tar   # into `make up`'s node (.pyk8s/agent/images)
    .venv/bin/python tools/build_test_image.py --push 127.0.0.1:5000/busybox:1.0  # skopeo

The default name is docker.io/library/busybox:latest; pods naming a `latest` image default
to imagePullPolicy Always (a registry pull), so name it with another tag (`busybox:local`)
or give the pods imagePullPolicy IfNotPresent / Never.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.images import build_busybox_image, write_oci_archive  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", nargs="?", help="the oci-archive to write")
    p.add_argument("--name", default="docker.io/library/busybox:latest",
                   help="the image's name (its org.opencontainers.image.ref.name)")
    p.add_argument("--push", metavar="HOST:PORT/NAME:TAG",
                   help="push to this (plain HTTP) registry with skopeo instead")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        layout = build_busybox_image(Path(tmp) / "layout")
        if args.push:
            subprocess.run(["skopeo", "--insecure-policy", "copy", "--quiet",
                            "--dest-tls-verify=false", f"oci:{layout}:latest",
                            f"docker://{args.push}"], check=True)
            print(f"pushed {args.push}")
            return 0
        if not args.out:
            p.error("give an output file or --push")
        write_oci_archive(layout, Path(args.out), ref_name=args.name)
        print(f"wrote {args.out} ({args.name})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
