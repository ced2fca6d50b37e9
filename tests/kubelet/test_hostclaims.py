"""Host-wide claims of a node's bridge and pod CIDR (flock files)."""
from __future__ import annotations

from pathlib import Path

import pytest

from pyk8s.kubelet.network import hostclaims


def test_one_holder_at_a_time_and_the_holder_is_named(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hostclaims, "CLAIMS_DIR", tmp_path)
    a = hostclaims.claim("bridge", "cni0", "/data/a")
    with pytest.raises(hostclaims.ClaimedElsewhere, match="/data/a"):
        hostclaims.claim("bridge", "cni0", "/data/b")
    other = hostclaims.claim("podcidr", "10.42.0.0/24", "/data/b")   # '/' is fine
    a.release()
    assert not (tmp_path / "bridge-cni0.lock").exists()
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
    assert (tmp_path / "podcidr-10.1.0.0_24.lock").exists()
    held.release()
    mine.release()
