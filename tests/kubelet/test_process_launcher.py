"""The process runtime's launcher (containers with volume mounts) hands the container the
default signal dispositions: what Python ignores (SIGPIPE, SIGXFSZ) must not stay ignored
across its exec (`yes | head -1` must end `yes` by SIGPIPE, as in any other container)."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from tests.conftest import needs_root


@needs_root
def test_launcher_restores_default_signals(tmp_path: Path) -> None:
    stage = tmp_path / "stage"
    stage.mkdir()
    spec = {"argv": ["grep", "SigIgn", "/proc/self/status"],
            "env": {"PATH": "/usr/bin:/bin"}, "stage": str(stage), "mounts": []}
    out = subprocess.run([sys.executable, "-m", "pyk8s.kubelet.runtimes.launcher",
                          json.dumps(spec)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    ignored = int(out.stdout.split()[1], 16)
    for sig in (signal.SIGPIPE, signal.SIGXFSZ):
        assert not ignored & (1 << (sig - 1)), out.stdout
