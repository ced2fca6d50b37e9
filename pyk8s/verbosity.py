"""klog's verbosity levels as Python logging levels, for components to log V(n) messages
(`log.log(V(2), …)`) without depending on the command layer (pyk8s/cli/logging_setup.py
sets the threshold from `--v`).

V(n) is INFO - n: V(0) is INFO, V(1)..V(9) sit between DEBUG and INFO (named `V1`..`V9`),
V(10) is DEBUG. Upstream's conventions: 0 start-up, warnings, errors, state changes;
2 per-object changes; 3 every API request (httplog); 4+ debugging.
"""
from __future__ import annotations

import logging

MAX_V = 10  # V(10) is DEBUG; higher verbosities go below it

for _n in range(1, MAX_V):
    logging.addLevelName(logging.INFO - _n, f"V{_n}")


def V(n: int) -> int:
    """The Python level of klog's V(n) messages (V(0) = INFO, V(10) = DEBUG)."""
    return max(1, logging.INFO - max(0, n))


def verbosity_of(levelno: int) -> int:
    """klog's verbosity of a record below WARNING (INFO → 0, V(3) → 3)."""
    return max(0, logging.INFO - levelno)


__all__ = ["MAX_V", "V", "verbosity_of"]
