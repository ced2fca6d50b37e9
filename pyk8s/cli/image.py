"""`pyk8s image`: a node's image store from the command line (as `crictl images` /
`crictl rmi` / `ctr images import`).

    pyk8s image import [--data-dir D] [--name REF] FILE   OCI archive / layout, docker save
    pyk8s image ls     [--data-dir D] [-q] [--digests]
    pyk8s image rm     [--data-dir D] REF...
    pyk8s image pull   [--data-dir D] [--insecure-registry HOST:PORT] REF

The store is `<agent data dir>/images`. Without `--data-dir` it is the local node of
`make up` / `pyk8s up` run in this directory (`.pyk8s/agent`); when that does not exist the
command fails instead of filling a store no node reads. `--data-dir D` names another node:
an agent's data dir (`pyk8s agent --data-dir D`, default `.pyk8s-agent`) or a `pyk8s up`
data dir (its local node lives in `D/agent`). A running node sees imported images at once
(the store's index is read from disk). `rm` refuses images a container of the node runs.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyk8s.cli.logging_setup import add_logging_args

TRUNCATED_ID = 13
DEFAULT_DATA_DIR = ".pyk8s"          # `pyk8s up`'s (and `make up`'s) --data-dir
AGENT_DEFAULT_DATA_DIR = ".pyk8s-agent"   # `pyk8s agent`'s --data-dir


def add_image_parser(sub: Any) -> None:
    p = sub.add_parser("image", help="manage a node's images (import, ls, rm, pull)")
    isub = p.add_subparsers(dest="image_command", required=True)

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument("--data-dir", default=None,
                       help="the node's data dir: a `pyk8s agent` data dir or a `pyk8s up` "
                            f"data dir (default: {DEFAULT_DATA_DIR}, the local node of "
                            "`make up` run here)")
        add_logging_args(q)

    q = isub.add_parser("import", help="import an OCI archive / layout or a docker save tar")
    common(q)
    q.add_argument("--name", default=None, help="name the (single) image REF instead of "
                                                "its annotation / RepoTags")
    q.add_argument("file", help="the archive (or an OCI layout directory)")
    q = isub.add_parser("ls", aliases=["images", "list"], help="list images (as crictl images)")
    common(q)
    q.add_argument("-q", "--quiet", action="store_true", help="only image ids")
    q.add_argument("--digests", action="store_true", help="show digests")
    q = isub.add_parser("rm", aliases=["rmi"], help="remove images (as crictl rmi)")
    common(q)
    q.add_argument("refs", nargs="+", metavar="REF", help="tag, digest or id (prefix)")
    q = isub.add_parser("pull", help="pull an image into the node's store")
    common(q)
    q.add_argument("--insecure-registry", action="append", default=[], metavar="HOST:PORT")
    q.add_argument("ref", metavar="REF")


class NodeStoreError(Exception):
    """No node store where the command was pointed."""


@dataclass(frozen=True)
class NodeStore:
    """Where a node keeps its images: its data dir, `images/` in it, and the node's name
    (from its client certificate; "" when unknown, e.g. before it first started)."""
    agent_dir: Path
    node_name: str

    @property
    def images(self) -> Path:
        return self.agent_dir / "images"

    @property
    def containers(self) -> Path:
        return self.agent_dir / "containers"

    def describe(self) -> str:
        who = f'node "{self.node_name}"' if self.node_name else "node"
        return f"{who}, image store {self.images}"


def _is_server_dir(d: Path) -> bool:
    """A `pyk8s up` / `pyk8s server` data dir (it has the cluster's kubeconfig or CA)."""
    return (d / "kubeconfig.yaml").is_file() or (d / "tls" / "ca.crt").is_file()


def node_name_of(agent_dir: Path) -> str:
    """The node name in the agent's client certificate (CN `system:node:<name>`)."""
    pem = agent_dir / "pki" / "kubelet-client-current.pem"
    try:
        from cryptography import x509
        from cryptography.x509.oid import NameOID
        cert = x509.load_pem_x509_certificate(pem.read_bytes())
        cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    except (OSError, ValueError, ImportError):
        return ""
    name = str(cn[0].value) if cn else ""
    return name.removeprefix("system:node:") if name.startswith("system:node:") else ""


def resolve_node_store(data_dir: str | None, cwd: Path | None = None,
                       create: bool = False) -> NodeStore:
    """The node store a `pyk8s image` command works on. `data_dir` None: the local node
    of a `pyk8s up` in `cwd` (DEFAULT_DATA_DIR/agent), which must exist. Otherwise
    `data_dir/agent` when it is a `pyk8s up` data dir, else `data_dir` itself (an
    agent's; with `create`, as for an import before the agent's first start, it need not
    exist yet)."""
    base = cwd or Path.cwd()
    if data_dir is None:
        d = (base / DEFAULT_DATA_DIR).absolute()
        if not (d / "agent").is_dir():
            hint = ""
            if (base / AGENT_DEFAULT_DATA_DIR).is_dir():
                hint = (f"; {AGENT_DEFAULT_DATA_DIR} here is a `pyk8s agent` data dir: "
                        f"--data-dir {AGENT_DEFAULT_DATA_DIR}")
            raise NodeStoreError(
                f"no local node at {d / 'agent'} (the node `make up` / `pyk8s up` runs "
                f"from this directory): start it with `make up`, or name the node's data "
                f"dir with --data-dir DIR{hint}")
        return NodeStore(d / "agent", node_name_of(d / "agent"))
    d = Path(data_dir)
    d = (d if d.is_absolute() else base / d).absolute()
    if (d / "agent").is_dir():
        return NodeStore(d / "agent", node_name_of(d / "agent"))
    if _is_server_dir(d):
        raise NodeStoreError(f"{d} is a `pyk8s up` data dir without a local node ({d}/agent "
                             f"is missing: `pyk8s up --disable-agent`?); give the data dir "
                             f"of a node with --data-dir")
    if not create and not any((d / n).exists() for n in ("images", "pki",
                                                        "kubelet.kubeconfig")):
        raise NodeStoreError(f"no image store at {d / 'images'}: --data-dir must name a "
                             f"node's data dir (a `pyk8s agent` or `pyk8s up` data dir)")
    return NodeStore(d, node_name_of(d))


def store_dir(data_dir: str | os.PathLike[str]) -> Path:
    """The image store of an agent data dir, or of a `pyk8s up` data dir's local node."""
    return resolve_node_store(str(data_dir), create=True).images


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


def _latest_hint(tags: list[str]) -> str:
    """A note for images tagged `latest`: the API server defaults their containers'
    imagePullPolicy to Always, which pulls from the registry despite the import."""
    latest = [t for t in tags if t.rpartition(":")[2] == "latest"]
    if not latest:
        return ""
    return (f"note: containers naming {latest[0]} (tag latest, or no tag) default to "
            f"imagePullPolicy: Always and pull it from the registry; set "
            f"imagePullPolicy: IfNotPresent (or Never) to run the imported image")


def _in_use_message(ref: str, rec: Any, users: list[Any]) -> str:
    u = users[0]
    more = f" and {len(users) - 1} more" if len(users) > 1 else ""
    return (f'image "{ref}" ({rec.id.removeprefix("sha256:")[:TRUNCATED_ID]}) is in use by '
            f'container {u.container_id[:TRUNCATED_ID]} ("{u.container}" of pod uid '
            f"{u.pod_uid}){more}: delete the pod first")


def run_image(args: argparse.Namespace) -> int:
    from pyk8s.kubelet.images import ImageError, ImageStore
    from pyk8s.kubelet.images.inuse import containers_using_images
    cmd = args.image_command
    try:
        node = resolve_node_store(args.data_dir, create=cmd in ("import", "pull"))
    except NodeStoreError as e:
        print(f"pyk8s image {cmd}: {e}", file=sys.stderr)
        return 1
    store = ImageStore(node.images)
    try:
        if cmd == "import":
            records = store.import_archive(args.file, args.name)
            for rec in records:
                names = ", ".join(rec.repo_tags) or "(untagged: name it with --name)"
                print(f"imported {names} {rec.id}")
            print(f"into {node.describe()}")
            hint = _latest_hint([t for rec in records for t in rec.repo_tags])
            if hint:
                print(hint, file=sys.stderr)
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
            uses = containers_using_images(node.containers)
            for ref in args.refs:
                rec = store.get(ref)
                if rec is None:
                    print(f"pyk8s image rm: no such image {ref!r} in {node.describe()}",
                          file=sys.stderr)
                    rc = 1
                    continue
                users = [u for u in uses if u.image_id == rec.id]
                if users:
                    print(f"pyk8s image rm: {_in_use_message(ref, rec, users)}",
                          file=sys.stderr)
                    rc = 1
                    continue
                gone = store.remove(rec.id)
                if gone is None:
                    continue
                for name in gone.repo_tags + gone.repo_digests or [gone.id]:
                    print(f"Deleted: {name}")
            return rc
        if cmd == "pull":
            rc = asyncio.run(_pull(store, args.ref, args.insecure_registry))
            print(f"into {node.describe()}")
            return rc
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
