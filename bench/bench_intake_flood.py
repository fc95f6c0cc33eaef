"""Portrait scoring latency while 20 users flood the intake with selfies, with and without separate lanes.

Run: ``python -m bench.bench_intake_flood [--scores N] [--users 20]``. Prints the latency of one
portrait score (submit to answer, as the engine sees it) in three situations:
- quiet: nothing else runs;
- flood, one shared worker (the layout before the lanes): every selfie check queues in front of it;
- flood, separate lanes (FaceAnalyser.load): selfies queue only behind each other.
The flood is ``--users`` concurrent uploaders, each sending faceless photos back to back (the slowest
check: the detector runs a second, upsampled pass before giving up). Numbers only, never pass/fail.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import time

from PIL import Image

from providers.faces import FaceAnalyser, FaceModels
from tests import face_corpus as corpus


def describe(seconds: list[float]) -> str:
    ms = sorted(value * 1000 for value in seconds)
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    return f"median {statistics.median(ms):7.1f} ms   p95 {p95:7.1f}   max {ms[-1]:7.1f}   (n={len(ms)})"


async def score_latencies(analyser: FaceAnalyser, portrait: bytes, references: list, scores: int) -> list[float]:  # type: ignore[type-arg]
    latencies = []
    for _ in range(scores):
        started = time.perf_counter()
        await analyser.score_portrait_async(portrait, references)
        latencies.append(time.perf_counter() - started)
        await asyncio.sleep(0.05)  # portraits arrive one by one, not back to back
    return latencies


async def flood(analyser: FaceAnalyser, photo: bytes, users: int) -> None:
    async def uploader() -> None:
        while True:
            await analyser.check_selfie_async(photo)

    await asyncio.gather(*(uploader() for _ in range(users)))


async def measure(analyser: FaceAnalyser, portrait: bytes, references: list, args: argparse.Namespace) -> str:  # type: ignore[type-arg]
    flooding = asyncio.create_task(flood(analyser, corpus.jpeg(corpus.coffee()), args.users))
    await asyncio.sleep(0.5)  # the queue fills up
    try:
        return describe(await score_latencies(analyser, portrait, references, args.scores))
    finally:
        flooding.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await flooding


async def main_async(args: argparse.Namespace) -> None:
    separate = FaceAnalyser.load()
    shared = FaceAnalyser(FaceModels.load(), separate.limits)
    references = [separate.check_selfie(photo).embedding for photo in corpus.selfie_set("hopper", 6)]
    portrait = corpus.png(corpus.variant("hopper", "rotate_right").resize((1024, 1024), Image.Resampling.BICUBIC))
    await separate.score_portrait_async(portrait, references)  # warm-up
    quiet = describe(await score_latencies(separate, portrait, references, args.scores))
    print(f"quiet:                          {quiet}")
    print(f"flood of {args.users}, one shared worker: {await measure(shared, portrait, references, args)}")
    print(f"flood of {args.users}, separate lanes:    {await measure(separate, portrait, references, args)}")
    shared.close()
    separate.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scores", type=int, default=10)
    parser.add_argument("--users", type=int, default=20)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
