"""How big the usage dedupe table is at N event ids: bytes per id on disk and the process's memory.

Writes N entries shaped exactly as the usage agent writes them (16-byte key, 12-byte value;
stream_processors/usage.py) into RocksDB through rocksdict, the library Faust's rocksdb://
store uses, with RocksDB's default options (raw keys), then flushes, compacts and measures.

    .venv/bin/python -m deploy.bench.dedupe_store --ids 10000000
"""

from __future__ import annotations

import argparse
import hashlib
import resource
import shutil
import tempfile
import time
from pathlib import Path

from rocksdict import Options, Rdict

from deploy.bench.results import merge_results


def directory_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ids", type=int, default=10_000_000)
    parser.add_argument("--batch", type=int, default=100_000, help="entries per progress line")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="om-dedupe-"))
    try:
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        db = Rdict(str(root / "usage-seen-0.db"), options)
        started = time.perf_counter()
        value = bytes(12)
        for start in range(0, args.ids, args.batch):
            for i in range(start, min(start + args.batch, args.ids)):
                db[hashlib.blake2b(f"cus_bench\x1fevt_{i}".encode(), digest_size=16).digest()] = value
            rate = (start + args.batch) / (time.perf_counter() - started)
            print(f"\r{min(start + args.batch, args.ids):,} ids, {rate:,.0f} writes/s", end="", flush=True)
        print()
        db.flush()
        db.compact_range(None, None)
        db.close()
        elapsed = time.perf_counter() - started
        size = directory_bytes(root)
        peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        figures = {
            "dedupe_ids": args.ids,
            "dedupe_bytes_per_id": round(size / args.ids, 1),
            "dedupe_disk_mb": round(size / 2**20, 1),
            "dedupe_peak_rss_mb": round(peak_rss_mb, 1),
            "dedupe_writes_per_s": round(args.ids / elapsed),
        }
        for key, value_ in figures.items():
            print(f"| {key} | {value_:,} |")
        merge_results(figures)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
