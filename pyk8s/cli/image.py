"""`pyk8s image`: a node's image store from the command line (as `crictl images` /
`ctr images import`).

    pyk8s image import [--data-dir D] [--name REF] FILE   OCI archive / layout, docker save
    pyk8s image ls     [--data-dir D] [-q] [--digests]
    pyk8s image rm     [--data-dir D] REF...
    pyk8s image pull   [--data-dir D] [--insecure-registry HOST:PORT] REF

The store is `<agent data dir>/images`; `--data-dir` defaults to the agent's `.pyk8s-agent`.
A `pyk8s up --data-dir D` directory (its local node lives in `D/agent`) works as well.
A running agent sees imported images at once (the store's index is read from disk).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

TRUNCATED_ID = 13


def add_image_parser(sub: Any) -> None:
    p = sub.add_parser("image", help="manage a node's images (import, ls, rm, pull)")
    isub = p.add_subparsers(dest="image_command", required=True)

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument("--data-dir", default=".pyk8s-agent",
                       help="the agent's data dir (or a `pyk8s up` data dir)")
        q.add_argument("--log-level", default=os.environ.get("PYK8S_LOG_LEVEL", "WARNING"))

    q = isub.add_parser("import", help="import an OCI archive / layout or a docker save tar")
    common(q)
    q.add_argument("--name", default=None, help="name the (single) image REF instead of "
                                                "its annotation / RepoTags")
    q.add_argument("file", help="the archive (or an OCI layout directory)")
    q = isub.add_parser("ls", aliases=["images", "list"], help="list images (as crictl images)")
    common(q)
    q.add_argument("-q", "--quiet", action="store_true", help="only image ids")
    q.add_argument("--digests", action="store_true", help="show digests")
    q = isub.add_parser("rm", aliases=["rmi"], help="remove images")
    common(q)
    q.add_argument("refs", nargs="+", metavar="REF", help="tag, digest or id (prefix)")
    q = isub.add_parser("pull", help="pull an image into the node's store")
    common(q)
    q.add_argument("--insecure-registry", action="append", default=[], metavar="HOST:PORT")
    q.add_argument("ref", metavar="REF")


def store_dir(data_dir: str | os.PathLike[str]) -> Path:
    """The image store of an agent data dir, or of a `pyk8s up` data dir's local node."""
    d = Path(data_dir)
    if (d / "agent").is_dir():
        d = d / "agent"
    return d / "images"


def human_size(size: float) -> str:
    """go-units' HumanSizeWithPrecision(size, 3), as crictl prints sizes."""
    units = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"]
    i = 0
    while size >= 1000 and i < len(units) - 1:
        size /= 1000.0
        i += 1
    return f"{size:.3g}{units[i]}"


def _table(rows: list[list[str]]) -> str:
    """Go's tabwriter(minwidth 20, padding 3) as crictl uses it."""
    widths = [max(20, max(len(r[i]) for r in rows) + 3) for i in range(len(rows[0]) - 1)]
    return "\n".join("".join(c.ljust(w) for c, w in zip(r, widths)) + r[-1]
                     for r in rows) + "\n"


def _rows(records: list[Any], digests: bool) -> list[list[str]]:
    head = ["IMAGE", "TAG"] + (["DIGEST"] if digests else []) + ["IMAGE ID", "SIZE"]
    rows = [head]
    for rec in records:
        img_id = rec.id.removeprefix("sha256:")[:TRUNCATED_ID]
        digest = ""
        if rec.repo_digests:
            digest = rec.repo_digests[0].rsplit("@", 1)[-1].removeprefix("sha256:")[
                :TRUNCATED_ID]
        pairs: list[tuple[str, str]] = []
        for t in rec.repo_tags:
            repo, _, tag = t.rpartition(":")
            pairs.append((repo, tag))
        if not pairs:
            repo = rec.repo_digests[0].rsplit("@", 1)[0] if rec.repo_digests else "<none>"
            pairs.append((repo, "<none>"))
        for repo, tag in pairs:
            rows.append([repo, tag] + ([digest or "<none>"] if digests else [])
                        + [img_id, human_size(rec.size)])
    return rows


def run_image(args: argparse.Namespace) -> int:
    from pyk8s.kubelet.images import ImageError, ImageStore
    cmd = args.image_command
    root = store_dir(args.data_dir)
    if cmd not in ("import", "pull") and not root.is_dir():
        if cmd in ("rm", "rmi"):
            print(f"no image store at {root}", file=sys.stderr)
            return 1
        if not args.quiet:
            sys.stdout.write(_table(_rows([], args.digests)))
        return 0
    store = ImageStore(root)
    try:
        if cmd == "import":
            records = store.import_archive(args.file, args.name)
            for rec in records:
                names = ", ".join(rec.repo_tags) or "(untagged: name it with --name)"
                print(f"imported {names} {rec.id}")
            return 0
        if cmd in ("ls", "images", "list"):
            records = store.list()
            if args.quiet:
                for rec in records:
                    print(rec.id)
            else:
                sys.stdout.write(_table(_rows(records, args.digests)))
            return 0
        if cmd in ("rm", "rmi"):
            rc = 0
            for ref in args.refs:
                rec = store.remove(ref)
                if rec is None:
                    print(f"no such image {ref!r}", file=sys.stderr)
                    rc = 1
                    continue
                for name in rec.repo_tags + rec.repo_digests or [rec.id]:
                    print(f"Deleted: {name}")
            return rc
        if cmd == "pull":
            return asyncio.run(_pull(store, args.ref, args.insecure_registry))
    except ImageError as e:
        print(f"pyk8s image {cmd}: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"pyk8s image {cmd}: {e}", file=sys.stderr)
        return 1
    return 2


async def _pull(store: Any, ref: str, insecure: list[str]) -> int:
    from pyk8s.kubelet.images import RegistryClient
    client = RegistryClient(store, insecure_registries=set(insecure))
    try:
        rec = await client.pull(ref)
    finally:
        await client.close()
    print(f"Image is up to date for {rec.id}")
    return 0
