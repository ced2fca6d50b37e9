"""docs/flags.md is generated from the commands' parsers (tools/gen_flags_doc.py): it must
say what the flags are today."""
from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def test_flags_doc_is_current() -> None:
    p = subprocess.run([sys.executable, "tools/gen_flags_doc.py", "--check"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
