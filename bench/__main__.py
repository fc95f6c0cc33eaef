"""`make bench`: every benchmark, one after the other; each prints its own numbers."""

from __future__ import annotations

import subprocess
import sys

BENCHMARKS = [
    "bench.bench_images",
    "bench.bench_pipeline",
    "bench.bench_faces",
    "bench.bench_intake_flood",
    "bench.bench_stats",
]

for module in BENCHMARKS:
    print(f"\n##### {module}", flush=True)
    subprocess.run([sys.executable, "-m", module], check=False)
