"""Storage write throughput: creates/s (and guaranteed_updates/s) against SQLiteStorage.

    python bench/storage.py [--n 20000] [--concurrency 8 64]

Prints one JSON object. Each run uses a fresh database in a temporary directory.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pyk8s.storage.sqlite import SQLiteStorage  # noqa: E402

VALUE = b'{"kind":"Pod","metadata":{"name":"x","namespace":"default"},"spec":{}}' * 10


async def run(n: int, concurrency: int) -> dict[str, float]:
    """`n` creates then `n` updates from `concurrency` tasks; ops per second for each."""
    with tempfile.TemporaryDirectory() as tmp:
        store = await SQLiteStorage.open(os.path.join(tmp, "state.db"))
        try:
            per_task = n // concurrency

            async def creates(t: int) -> None:
                for i in range(per_task):
                    await store.create(f"/registry/pods/ns{t}/p{i}", VALUE)

            async def updates(t: int) -> None:
                for i in range(per_task):
                    await store.guaranteed_update(f"/registry/pods/ns{t}/p{i}",
                                                  lambda kv: kv.value + b" ")

            t0 = time.perf_counter()
            await asyncio.gather(*(creates(t) for t in range(concurrency)))
            t1 = time.perf_counter()
            await asyncio.gather(*(updates(t) for t in range(concurrency)))
            t2 = time.perf_counter()
            done = per_task * concurrency
            return {"creates_per_s": round(done / (t1 - t0)),
                    "updates_per_s": round(done / (t2 - t1))}
        finally:
            await store.close()


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[8, 64])
    args = ap.parse_args()
    out = {"backend": "sqlite", "n": args.n, "value_bytes": len(VALUE),
           "results": {str(c): await run(args.n, c) for c in args.concurrency}}
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main())
