"""How long the intake's photo check takes, and how much memory it needs.

Run: ``python -m bench.bench_images [--runs N]``. Prints:
- the median (and min/max) time of ``validate_and_normalize`` on a 12-megapixel JPEG and on a
  1024×1280 selfie, of a thumbnail of the 12 MP photo, and of refusing the 30000×30000 bomb;
- throughput of a whole album (8 photos of 12 MP) on 1 and 2 threads (Pillow releases the GIL);
- peak memory of validating the bomb and the 12 MP photo: tracemalloc (Python allocations
  only) and the peak-RSS delta (everything, Pillow's C buffers included). Each memory figure
  comes from a fresh child process, so memory freed by earlier work cannot hide an allocation.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from storage.images import ImageRejected, make_thumbnail, register_heif, validate_and_normalize
from tests import image_corpus

_CLEAR_REFS = Path("/proc/self/clear_refs")


def _timed_runs(action: Callable[[], object], runs: int) -> list[float]:
    action()  # warm-up: plugin loading, first allocations
    durations = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        durations.append(time.perf_counter() - started)
    return durations


def _validate_expecting_rejection(data: bytes) -> None:
    try:
        validate_and_normalize(data)
    except ImageRejected:
        return
    raise AssertionError("expected a rejection")


def _describe(durations: list[float]) -> str:
    milliseconds = [duration * 1000 for duration in durations]
    return (
        f"median {statistics.median(milliseconds):8.2f} ms   "
        f"min {min(milliseconds):8.2f}   max {max(milliseconds):8.2f}   (n={len(milliseconds)})"
    )


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    raise LookupError(field)


def _measure_in_this_process(path: Path) -> dict[str, float | str]:
    """Child side: validate one file, report tracemalloc peak and peak-RSS delta in MiB."""
    register_heif()
    data = path.read_bytes()
    try:
        validate_and_normalize(data)  # warm-up, so lazy imports and plugin setup are not counted
    except ImageRejected:
        pass
    can_reset_peak = os.access(_CLEAR_REFS, os.W_OK)
    if can_reset_peak:
        # Resets VmHWM (peak RSS) to the current RSS, so the peak below is this call's alone.
        _CLEAR_REFS.write_text("5")
        rss_before_kib = _status_kib("VmRSS")
    else:
        rss_before_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    outcome = "accepted"
    try:
        validate_and_normalize(data)
    except ImageRejected as rejected:
        outcome = rejected.reason.value
    _current, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_peak_kib = _status_kib("VmHWM") if can_reset_peak else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "outcome": outcome,
        "tracemalloc_peak_mib": traced_peak / 2**20,
        "rss_peak_delta_mib": (rss_peak_kib - rss_before_kib) / 1024,
        "rss_method": "VmHWM after clear_refs" if can_reset_peak else "ru_maxrss delta (may under-report)",
    }


def _measure_in_child(path: Path) -> dict[str, float | str]:
    completed = subprocess.run(
        [sys.executable, "-m", "bench.bench_images", "--measure-file", str(path)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    return json.loads(completed.stdout)


def _album_throughput(photos: list[bytes], threads: int) -> float:
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(validate_and_normalize, photos))
    return len(photos) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15, help="timed runs per case")
    parser.add_argument("--measure-file", type=Path, help=argparse.SUPPRESS)  # child mode
    arguments = parser.parse_args()
    if arguments.measure_file is not None:
        print(json.dumps(_measure_in_this_process(arguments.measure_file)))
        return

    register_heif()
    photo_12mp = image_corpus.photo_12mp_jpeg()
    selfie = image_corpus.selfie_like_jpeg(0)
    bomb = image_corpus.bomb_png()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    print(f"12 MP photo: 4000x3000 JPEG, {len(photo_12mp) / 2**20:.1f} MiB; bomb: 30000x30000 PNG, {len(bomb)} B")
    print()
    print("time")
    cases: list[tuple[str, Callable[[], object]]] = [
        ("validate 12 MP JPEG", lambda: validate_and_normalize(photo_12mp)),
        ("validate 1024x1280 selfie", lambda: validate_and_normalize(selfie)),
        ("thumbnail of 12 MP JPEG", lambda: make_thumbnail(photo_12mp)),
        ("refuse 30000x30000 bomb", lambda: _validate_expecting_rejection(bomb)),
    ]
    for name, action in cases:
        print(f"  {name:28s} {_describe(_timed_runs(action, arguments.runs))}")

    album = [photo_12mp] * 8
    print()
    print("album of 8 x 12 MP photos")
    for threads in (1, 2):
        print(f"  {threads} thread(s): {_album_throughput(album, threads):5.2f} photos/s")

    print()
    print("peak memory of one validation (fresh process each)")
    with tempfile.TemporaryDirectory() as directory:
        for name, data in (("30000x30000 bomb", bomb), ("12 MP JPEG", photo_12mp)):
            path = Path(directory) / "sample"
            path.write_bytes(data)
            result = _measure_in_child(path)
            print(
                f"  {name:18s} outcome={result['outcome']:20s} "
                f"tracemalloc peak {result['tracemalloc_peak_mib']:7.2f} MiB   "
                f"RSS peak delta {result['rss_peak_delta_mib']:7.2f} MiB   [{result['rss_method']}]"
            )
    print()
    print("tracemalloc sees Python allocations only (here: copies of the input and output bytes);")
    print("Pillow's pixel buffers are C allocations and show up in the RSS figure alone.")


if __name__ == "__main__":
    main()
