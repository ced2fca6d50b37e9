"""The scheduler talks to the API server over HTTP only: it never imports the server layers."""
import ast
from pathlib import Path

import pyk8s.scheduler

SERVER_LAYERS = ("pyk8s.apiserver", "pyk8s.registry", "pyk8s.storage", "pyk8s.watch",
                 "pyk8s.controllers")


def test_scheduler_imports_no_server_layer():
    root = Path(pyk8s.scheduler.__file__).parent
    files = list(root.rglob("*.py"))
    assert len(files) > 10
    for f in files:
        for node in ast.walk(ast.parse(f.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for n in names:
                assert not n.startswith(SERVER_LAYERS), f"{f}: imports {n}"
