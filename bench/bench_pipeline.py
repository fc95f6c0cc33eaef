"""How quickly a finished portrait reaches the user, and what each photo costs in calls.

Run: ``python -m bench.bench_pipeline [--jobs N] [--pack p23]``. Starts the real application
in-process (SQLite) against the fake Telegram and Kie.ai servers (the same fakes the tests use),
seeds N paid jobs, and reports, for callback mode (PUBLIC_URL set) and polling-only mode:
- provider success → stored (downloaded + thumbnail) and → in the user's chat: p50 / p95 / max;
- payment recorded (job queued) → first createTask: p50 / p95;
- provider calls per photo (create, recordInfo, upload, download) and Telegram calls per pack;
- provider 429s received.
The fake's latency is scaled down (0.5–3 s) so a run takes under a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import select

from storage.models import GenerationJob, GenerationTask
from studio.states import JobStatus
from tests.engine_support import provider_settings, seed_paid_job
from tests.fakes.kie import FakeKie
from tests.fakes.telegram import FakeTelegram
from tests.harness import app_settings, running_app
from tests.ledger_check import assert_money_invariants_at

# Production's policy with the first poll scaled to the fake's 0.5-3 s latency.
BENCH_POLICY = {
    "providers": [
        {
            "name": "kie",
            "max_attempts": 3,
            "backoff_seconds": [2.0, 10.0, 30.0],
            "stuck_after_seconds": 600.0,
            "first_poll_after_seconds": 1.0,
            "poll_every_seconds": 0.5,
        }
    ]
}


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": float("nan"), "p95": float("nan"), "max": float("nan"), "n": 0}
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {
        "p50": round(statistics.median(ordered), 3),
        "p95": round(p95, 3),
        "max": round(ordered[-1], 3),
        "n": len(ordered),
    }


async def run_mode(callbacks: bool, jobs: int, pack: str) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="pinglass-bench-"))
    async with (
        FakeTelegram() as telegram,
        FakeKie(create_limit=20, create_window_seconds=10.0, latency=(0.5, 3.0)) as kie,
    ):
        # Wall-clock moment of each provider success = creation + drawn latency (the fake's clock is monotonic).
        offset = time.time() - time.monotonic()
        settings = app_settings(
            telegram,
            f"sqlite+aiosqlite:///{workdir / 'bench.db'}",
            workdir / "files",
            webhook=callbacks,
            **provider_settings(
                kie,
                POLL_INTERVAL_SECONDS=60 if callbacks else 5,
                FALLBACK_POLICY=json.dumps(BENCH_POLICY),
                TASK_LEASE_SECONDS=30,
            ),
        )
        async with running_app(settings) as app:
            started = time.time()
            users = [telegram.user(language_code="en") for _ in range(jobs)]
            job_ids = [
                await seed_paid_job(app.sessionmaker, app.files, app.catalogue, telegram_id=u.id, pack=pack)
                for u in users
            ]
            queued_at = time.time()
            app.signals.job_queued()
            async with asyncio.timeout(600):
                while True:
                    async with app.sessionmaker() as session:
                        states = (
                            (await session.execute(select(GenerationJob.status).where(GenerationJob.id.in_(job_ids))))
                            .scalars()
                            .all()
                        )
                    if all(s in (JobStatus.COMPLETED, JobStatus.PARTIAL, JobStatus.FAILED) for s in states):
                        break
                    await asyncio.sleep(0.2)
            async with app.sessionmaker() as session:
                tasks = list((await session.execute(select(GenerationTask))).scalars())
            finished = time.time()
        await assert_money_invariants_at(settings.DATABASE_URL)
        fake_done = {task.task_id: task.created_monotonic + task.latency + offset for task in kie.tasks.values()}
        to_stored = [
            task.stored_at.timestamp() - fake_done[task.provider_task_id]
            for task in tasks
            if task.stored_at and task.provider_task_id in fake_done
        ]
        to_chat = [
            task.delivered_at.timestamp() - fake_done[task.provider_task_id]
            for task in tasks
            if task.delivered_at and task.provider_task_id in fake_done
        ]
        first_create: dict[int, float] = {}
        task_job = {t.provider_task_id: t.job_id for t in tasks}
        for fake_task in kie.tasks.values():
            job_id = task_job.get(fake_task.task_id)
            if job_id is not None:
                moment = fake_task.created_monotonic + offset
                first_create[job_id] = min(first_create.get(job_id, moment), moment)
        photos = len(tasks)
        request_kinds = Counter(
            "create"
            if "createTask" in r.path
            else "recordInfo"
            if "recordInfo" in r.path
            else "upload"
            if "upload" in r.path
            else "download"
            if "/files/" in r.path
            else "other"
            for r in kie.requests
        )
        telegram_calls = Counter(call.method for call in telegram.calls())
        return {
            "mode": "callbacks" if callbacks else "polling",
            "jobs": jobs,
            "photos": photos,
            "wall_seconds": round(finished - started, 1),
            "provider_success_to_stored_s": _percentiles(to_stored),
            "provider_success_to_chat_s": _percentiles(to_chat),
            "queued_to_first_create_s": _percentiles([moment - queued_at for moment in first_create.values()]),
            "provider_calls_per_photo": {k: round(v / photos, 2) for k, v in sorted(request_kinds.items())},
            "provider_429": kie.rate_limited_count,
            "telegram_calls_per_pack": {
                k: round(v / jobs, 1)
                for k, v in sorted(telegram_calls.items())
                if k in {"sendMediaGroup", "sendPhoto", "sendMessage", "editMessageText"}
            },
        }


async def main_async(jobs: int, pack: str, json_path: Path | None) -> None:
    results = [await run_mode(True, jobs, pack), await run_mode(False, jobs, pack)]
    for result in results:
        print(f"\n== {result['mode']}: {result['jobs']} jobs, {result['photos']} photos, {result['wall_seconds']} s")
        for key in ("provider_success_to_stored_s", "provider_success_to_chat_s", "queued_to_first_create_s"):
            print(f"  {key:32} {result[key]}")
        print(f"  {'provider_calls_per_photo':32} {result['provider_calls_per_photo']}")
        print(f"  {'provider_429':32} {result['provider_429']}")
        print(f"  {'telegram_calls_per_pack':32} {result['telegram_calls_per_pack']}")
    if json_path:
        await asyncio.to_thread(_write_json, json_path, results)


def _write_json(path: Path, results: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--pack", default="p23")
    parser.add_argument("--json", type=Path, default=Path("bench/results/pipeline.json"))
    args = parser.parse_args()
    asyncio.run(main_async(args.jobs, args.pack, args.json))


if __name__ == "__main__":
    main()
