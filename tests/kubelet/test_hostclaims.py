"""Host-wide claims of a node's bridge and pod CIDR (flock files)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pyk8s.kubelet.network import hostclaims
from tests.conftest import ROOT, needs_root


def test_one_holder_at_a_time_and_the_holder_is_named(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hostclaims, "CLAIMS_DIR", tmp_path)
    a = hostclaims.claim("bridge", "cni0", "/data/a")
    with pytest.raises(hostclaims.ClaimedElsewhere, match="/data/a"):
        hostclaims.claim("bridge", "cni0", "/data/b")
    other = hostclaims.claim("podcidr", "10.42.0.0/24", "/data/b")   # '/' is fine
    a.release()
    assert not list(tmp_path.glob("bridge-cni0*.lock"))
    b = hostclaims.claim("bridge", "cni0", "/data/b")
    b.release()
    other.release()


def test_stale_claims_of_a_killed_node_are_removed(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hostclaims, "CLAIMS_DIR", tmp_path)
    (tmp_path / "bridge-cni9.lock").write_text("/data/a (pid 1)\n")     # left by SIGKILL
    held = hostclaims.claim("podcidr", "10.1.0.0/24", "/data/a")
    mine = hostclaims.claim("bridge", "cni8", "/data/b")
    assert hostclaims.remove_stale("/data/a") == ["bridge-cni9.lock"]  # held ones stay
    assert sorted(f.name.split("@")[0] for f in tmp_path.iterdir()) == [
        "bridge-cni8", "podcidr-10.1.0.0_24"]
    held.release()
    mine.release()


@needs_root
def test_claims_are_per_network_namespace(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A node in its own network namespace (a test "host") may use the bridge name and
    pod CIDR a node of the host uses: its claim files carry the namespace's inode."""
    monkeypatch.setattr(hostclaims, "CLAIMS_DIR", tmp_path)
    env = dict(os.environ, PYK8S_CLAIMS_DIR=str(tmp_path))
    host = hostclaims.claim("bridge", "cni0", "/data/host")
    script = ("from pyk8s.kubelet.network import hostclaims as h\n"
              "c = h.claim('bridge', 'cni0', '/data/netns')\n"
              "print(h.claimed_names('bridge', '/data/netns'), "
              "h.claimed_names('bridge', '/data/host'))\n")
    try:
        p = subprocess.run(["unshare", "--net", sys.executable, "-c", script], env=env,
                           capture_output=True, text=True, timeout=30, cwd=ROOT)
        assert p.returncode == 0, p.stderr
        assert p.stdout.strip() == "['cni0'] []", p.stdout
        names = sorted(f.name for f in tmp_path.iterdir())
        assert len(names) == 2 and all(n.startswith("bridge-cni0@net") for n in names)
        assert hostclaims.claimed_names("bridge", "/data/host") == ["cni0"]
        assert hostclaims.claimed_names("bridge", "/data/netns") == []
    finally:
        host.release()
