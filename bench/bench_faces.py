"""How long the face checks take on this machine, and how much memory the loaded models hold.

Run: ``python -m bench.bench_faces [--runs N]``. Prints:
- loading the models (HOG + 5-point + ResNet): time, and the RSS they add, measured in a fresh
  child process (RSS before ``import dlib`` and after loading);
- one selfie check (detect, landmarks, embedding, sharpness) on a 512×600 photo, on a 12 MP phone-size
  photo (analysed on a 1024 px copy), on a group photo, and on a picture with no face (the slowest
  case: the detector runs a second, upsampled pass before giving up);
- one portrait score (detect + embed + distances to 6 references) on a 1024×1024 PNG.
Numbers only, never pass/fail. Faces come from installed packages (tests/face_corpus.py).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

from PIL import Image

from providers.faces import FaceAnalyser
from tests import face_corpus as corpus


def _timed(action: Callable[[], object], runs: int) -> list[float]:
    action()  # warm-up
    durations = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        durations.append(time.perf_counter() - started)
    return durations


def _describe(durations: list[float]) -> str:
    ms = [duration * 1000 for duration in durations]
    return f"median {statistics.median(ms):7.1f} ms   min {min(ms):7.1f}   max {max(ms):7.1f}   (n={len(ms)})"


def _rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _load_in_this_process() -> None:
    """Child mode: print the RSS the models add and the load time as JSON."""
    before = _rss_kib()
    started = time.perf_counter()
    analyser = FaceAnalyser.load()
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "rss_mib": (_rss_kib() - before) / 1024}))
    analyser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--load-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load_only:
        _load_in_this_process()
        return

    child = subprocess.run(
        [sys.executable, "-m", "bench.bench_faces", "--load-only"], capture_output=True, text=True, check=True
    )
    loaded = json.loads(child.stdout.strip().splitlines()[-1])
    print(f"models load: {loaded['seconds'] * 1000:7.0f} ms, +{loaded['rss_mib']:.0f} MiB RSS (fresh process)")

    analyser = FaceAnalyser.load()
    selfie = corpus.jpeg(corpus.grace_hopper())
    phone = corpus.jpeg(corpus.grace_hopper().resize((3024, 3544), Image.Resampling.BICUBIC), quality=90)
    group = corpus.jpeg(corpus.group_photo())
    no_face = corpus.jpeg(corpus.coffee())
    references = [analyser.check_selfie(photo).embedding for photo in corpus.selfie_set("hopper", 6)]
    assert all(reference is not None for reference in references)
    portrait = corpus.png(corpus.variant("hopper", "rotate_right").resize((1024, 1024), Image.Resampling.BICUBIC))

    print(f"selfie check, 512x600:        {_describe(_timed(lambda: analyser.check_selfie(selfie), args.runs))}")
    print(f"selfie check, 3024x3544 JPEG: {_describe(_timed(lambda: analyser.check_selfie(phone), args.runs))}")
    print(f"selfie check, group 1280x886: {_describe(_timed(lambda: analyser.check_selfie(group), args.runs))}")
    print(f"selfie check, no face 600x400:{_describe(_timed(lambda: analyser.check_selfie(no_face), args.runs))}")
    score = analyser.score_portrait(portrait, references)  # type: ignore[arg-type]
    timed = _timed(lambda: analyser.score_portrait(portrait, references), args.runs)  # type: ignore[arg-type]
    print(f"portrait score, 1024x1024 PNG:{_describe(timed)}   (score {score.score if score else None})")
    analyser.close()


if __name__ == "__main__":
    main()
