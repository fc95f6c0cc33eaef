"""Load simulation: the real application as a subprocess, N simulated users, time-compressed providers.

Run: ``python -m bench.load [--packs N | --steps 10,100,300,1000] [--mode callbacks|polling|both]
[--time-factor F] [--database-url postgresql+asyncpg://...]``. ``make bench`` runs the default set.

The runner hosts the fake Telegram, Kie.ai, Replicate and YooKassa servers (the ones the tests use) and
starts ``python -m bot`` against them as a separate OS process, so the application's CPU, memory and
database statements are its own. Every simulated user uploads selfies, picks a pack and pays (card or
Stars, alternating); the run ends when every paid job is finished.

Time compression: the time factor F scales everything that is a duration in the outside world — the
providers' latency (Kie: lognormal, median 20 s × F), their rate-limit windows (Kie 20 creates per 10 s
× F, enforced by the fake with 429s; the app's KIE_CREATE_LIMIT is scaled the same way), Telegram's flood
windows, and the app's poll intervals. The application's own work (HTTP, database, Pillow) is *not*
compressed, so at F = 0.05 one process must do 20× the real per-second work: a pass here is a pass with
margin. Latencies are reported as measured (wall-clock seconds of this run).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import psutil
from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bench.users import SimUser, UserOutcome
from providers.ratelimit import DEFAULT_SAFETY_MARGIN_SHARE
from storage.db import create_engine, create_sessionmaker
from storage.models import Delivery, GenerationJob, GenerationTask, User
from studio.states import JobStatus
from tests.databases import create_database, drop_database
from tests.fakes.kie import FakeKie
from tests.fakes.replicate import FakeReplicate, render_image
from tests.fakes.telegram import TELEGRAM_FLOOD_LIMITS, FakeTelegram
from tests.fakes.yookassa import FakeYooKassa
from tests.harness import free_port
from tests.process_harness import process_env

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
TERMINAL_JOBS = frozenset({JobStatus.COMPLETED, JobStatus.PARTIAL, JobStatus.FAILED, JobStatus.CANCELLED})
KIE_LIMIT, KIE_WINDOW = 20, 10.0  # the real account's create budget (kie.md §7)
KIE_STATUS_LIMIT, KIE_STATUS_WINDOW = 10, 1.0  # recordInfo per key (kie.md §3.3)
REPLICATE_STATUS_LIMIT, REPLICATE_STATUS_WINDOW = 50, 1.0  # the app's default (replicate.md §7: 3000/min)
REPLICATE_LIMIT, REPLICATE_WINDOW = 600, 60.0
TELEGRAM_FLOOD = TELEGRAM_FLOOD_LIMITS  # fake flood control: 30 msgs/s overall, 40 per chat per 30 s
ALBUM_WINDOW_SECONDS = 3.0  # the app's default
TELEGRAM_APP_RATES = (25.0, 1.0)  # the app's own TELEGRAM_GLOBAL_RATE / TELEGRAM_CHAT_RATE defaults


class ChildProcess(Protocol):
    """What the runner uses of ``subprocess.Popen``."""

    pid: int

    def poll(self) -> int | None: ...

    def send_signal(self, number: int, /) -> None: ...

    def wait(self, timeout: float | None = None) -> int: ...

    def kill(self) -> None: ...


# (module, environment, working directory, log file) → a running child.
Launcher = Callable[[str, dict[str, str], Path, Path], ChildProcess]


@dataclass
class LoadOptions:
    packs: int = 10
    callbacks: bool = True
    time_factor: float = 0.05
    database_url: str | None = None
    pack_photos: int = 23
    stars_every: int = 2  # every k-th user pays with Stars, the others by card
    arrival_seconds: float | None = None  # users arrive uniformly over this; default: packs × 0.05 s
    intake_concurrency: int = 25
    kie_median_seconds: float = 20.0
    kie_sigma: float = 0.4
    deadline_seconds: float = 1800.0
    seed: int = 7
    keep_workdir: bool = False
    profile_to: Path | None = None  # run the (first) app under pyinstrument, text report here
    # How app processes start: a fresh interpreter by default; the smoke tests fork them from a
    # pre-imported one (tests/support/zygote.py), which spares each start seconds of import CPU.
    launch: Launcher | None = None


def lognormal(rng: random.Random, median: float, sigma: float) -> float:
    return median * math.exp(rng.gauss(0.0, sigma))


def scaled_policy(factor: float) -> dict[str, Any]:
    """Production-like retry/fallback policy with every duration scaled by the time factor."""

    def provider(name: str, first_poll: float, poll_every: float) -> dict[str, Any]:
        return {
            "name": name,
            "max_attempts": 3,
            "backoff_seconds": [2.0 * factor, 10.0 * factor, 30.0 * factor],
            "stuck_after_seconds": 300.0 * factor,
            "first_poll_after_seconds": first_poll * factor,
            "poll_every_seconds": poll_every * factor,
        }

    return {"providers": [provider("kie", 20.0, 3.0), provider("replicate", 10.0, 5.0)]}


def to_monotonic(moment: datetime | None, offset: float) -> float | None:
    """A database timestamp (UTC, aware or naive) on the runner's monotonic clock."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp() - offset


def percentiles(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"p50": None, "p95": None, "max": None, "n": 0}
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]
    return {
        "p50": round(statistics.median(ordered), 3),
        "p95": round(p95, 3),
        "max": round(ordered[-1], 3),
        "n": len(ordered),
    }


# ---------------------------------------------------------------------- the application as a process


@dataclass
class AppProcess:
    """One ``python -m bot`` (or ``-m scheduler``) child on a fixed port, so restarts keep its URLs."""

    module: str
    port: int
    env: dict[str, str]
    workdir: Path
    launch: Launcher | None = None
    process: ChildProcess | None = None
    ps: psutil.Process | None = None
    peak_rss: int = 0
    cpu_seconds_before: float = 0.0  # CPU of earlier incarnations (restarts)
    starts: int = 0
    kills: int = 0
    profile_to: Path | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir / f"app-{self.module}-{self.port}.log"

    async def start(self, timeout: float = 60.0) -> None:  # noqa: ASYNC109
        self.process = self._launch()
        self.ps = psutil.Process(self.process.pid)
        self.starts += 1
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    # The work directory goes when the run ends: what the process said goes with the error.
                    log = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
                    said = log.strip().splitlines()[-15:]
                    raise RuntimeError(f"{self.module} exited early; its last words:\n" + "\n".join(said))
                try:
                    async with client.get(f"http://127.0.0.1:{self.port}/healthz") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError(f"{self.module} did not become healthy, see {self.log_path}")

    def _launch(self) -> ChildProcess:
        if self.launch is not None and self.profile_to is None:
            return self.launch(self.module, self.env, self.workdir, self.log_path)
        command = [sys.executable, "-m", self.module]
        if self.profile_to is not None:
            # Statistical profile of the whole run, written when the process exits on SIGTERM.
            self.profile_to.parent.mkdir(parents=True, exist_ok=True)
            command = [sys.executable, "-m", "pyinstrument", "-r", "text", "-o", str(self.profile_to), *command[1:]]
        with self.log_path.open("ab") as log:
            return subprocess.Popen(command, cwd=self.workdir, env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def sample(self) -> tuple[float, int]:
        """(CPU seconds of all incarnations so far, current RSS); keeps the peak RSS."""
        if self.ps is None:
            return self.cpu_seconds_before, 0
        try:
            times = self.ps.cpu_times()
            rss = self.ps.memory_info().rss
        except psutil.Error:
            return self.cpu_seconds_before, 0
        self.peak_rss = max(self.peak_rss, rss, _vm_hwm(self.ps.pid))
        return self.cpu_seconds_before + times.user + times.system, rss

    def _retire(self) -> None:
        cpu, _ = self.sample()
        self.cpu_seconds_before = cpu
        self.ps = None

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self._retire()
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
            self.kills += 1

    def terminate(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self._retire()
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    async def metrics(self) -> dict[str, float]:
        """The process's /metrics as {sample name with labels: value}."""
        async with (
            aiohttp.ClientSession() as client,
            client.get(f"http://127.0.0.1:{self.port}/metrics") as response,
        ):
            text = await response.text()
        values: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                try:
                    values[name] = float(value)
                except ValueError:
                    continue
        return values


def _vm_hwm(pid: int) -> int:
    """Peak resident set size the kernel saw for the process (Linux), 0 elsewhere."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    return int(match.group(1)) * 1024 if match else 0


# ---------------------------------------------------------------------- fakes + app


class Stack:
    """The four fakes, one or more application processes, and a database handle for the checks."""

    def __init__(
        self,
        options: LoadOptions,
        *,
        processes: int = 1,
        kie: dict[str, Any] | None = None,
        telegram_flood: bool = True,
        extra_env: dict[str, Any] | None = None,
    ) -> None:
        self.extra_env = extra_env or {}
        self.options = options
        factor = options.time_factor
        self.workdir = Path(tempfile.mkdtemp(prefix="pinglass-load-"))
        self.rng = random.Random(options.seed)
        self.telegram = FakeTelegram(
            flood_limits=(
                TELEGRAM_FLOOD[0],
                TELEGRAM_FLOOD[1] * factor,
                TELEGRAM_FLOOD[2],
                TELEGRAM_FLOOD[3] * factor,
            )
            if telegram_flood
            else None
        )
        kie_rng = random.Random(options.seed + 1)
        self.kie = FakeKie(
            create_limit=KIE_LIMIT,
            create_window_seconds=KIE_WINDOW * factor,
            record_info_limit=KIE_STATUS_LIMIT,
            record_info_window_seconds=KIE_STATUS_WINDOW * factor,
            latency=lambda: lognormal(kie_rng, options.kie_median_seconds * factor, options.kie_sigma),
            # Kie retries a callback that did not get through (the app may be restarting).
            callback_retry_delays=(1.0, 3.0, 10.0),
            # Distinct, cheap results (~4 ms): the fakes share the 2 cores with the app and must not dominate.
            result_renderer=lambda task_id, size: render_image(task_id, 0, size, "png"),
            **(kie or {}),
        )
        replicate_rng = random.Random(options.seed + 2)
        self.replicate = FakeReplicate(
            latency=lambda: lognormal(replicate_rng, 12.0 * factor, 0.4),
            create_rate=(REPLICATE_LIMIT, REPLICATE_WINDOW * factor),
        )
        self.kassa = FakeYooKassa(notification_attempts=3, notification_backoff=0.2)
        self.processes_wanted = processes
        self.apps: list[AppProcess] = []
        self.database_url = options.database_url or f"sqlite+aiosqlite:///{self.workdir / 'bench.db'}"
        self._owns_database = False
        self.engine: AsyncEngine | None = None
        self.sessionmaker: async_sessionmaker[AsyncSession] | None = None
        self.offset = time.time() - time.monotonic()  # wall clock = monotonic + offset
        self.samples: list[tuple[float, float, int]] = []  # (t, cpu seconds, rss) summed over the processes
        self._sampler: asyncio.Task[None] | None = None
        self.db_statements = 0
        self.telegram_429_seen = 0

    @property
    def files_dir(self) -> Path:
        return self.workdir / "files"

    def app_env(self, port: int, public_port: int) -> dict[str, str]:
        options, factor = self.options, self.options.time_factor
        values: dict[str, Any] = {
            "BOT_TOKEN": self.telegram.token,
            "TELEGRAM_API_URL": self.telegram.base_url,
            "DATABASE_URL": self.database_url,
            "WEB_HOST": "127.0.0.1",
            "WEB_PORT": port,
            "LOCAL_STORAGE_DIR": str(self.files_dir),
            # One public URL for all processes, as behind a load balancer: Telegram and providers call it.
            "PUBLIC_URL": f"http://127.0.0.1:{public_port}" if options.callbacks else "",
            "WEBHOOK_SECRET": "bench-webhook-secret",
            "THROTTLE_UPDATES_PER_SECOND": 50,
            "LOG_LEVEL": "WARNING",
            "KIE_API_KEY": self.kie.api_key,
            "KIE_API_URL": self.kie.url,
            "KIE_UPLOAD_URL": self.kie.url,
            "KIE_CREATE_LIMIT": f"{KIE_LIMIT}/{KIE_WINDOW * factor:g}",
            "REPLICATE_API_TOKEN": self.replicate.api_token,
            "REPLICATE_API_URL": self.replicate.base_url,
            "REPLICATE_WEBHOOK_SECRET": self.replicate.webhook_secret,
            "REPLICATE_CREATE_LIMIT": f"{REPLICATE_LIMIT}/{REPLICATE_WINDOW * factor:g}",
            "KIE_STATUS_LIMIT": f"{KIE_STATUS_LIMIT}/{KIE_STATUS_WINDOW * factor:g}",
            "REPLICATE_STATUS_LIMIT": f"{REPLICATE_STATUS_LIMIT}/{REPLICATE_STATUS_WINDOW * factor:g}",
            "DOWNLOAD_ALLOW_LOOPBACK": True,  # the fakes serve results over http on 127.0.0.1
            "YOOKASSA_SHOP_ID": self.kassa.shop_id,
            "YOOKASSA_SECRET_KEY": self.kassa.secret_key,
            "YOOKASSA_API_URL": self.kassa.api_url,
            "YOOKASSA_RETURN_URL": "https://t.me/pinglass_test_bot",
            "YOOKASSA_TRUSTED_IPS": "127.0.0.1/32",
            "FALLBACK_POLICY": json.dumps(scaled_policy(factor)),
            "POLL_INTERVAL_SECONDS": max(0.5, 60 * factor),
            "DISPATCH_TICK_SECONDS": max(0.2, 2 * factor),
            "TASK_LEASE_SECONDS": max(3.0, 90 * factor),
            "RECOVER_INTERVAL_SECONDS": max(0.5, 15 * factor),
            "TELEGRAM_GLOBAL_RATE": TELEGRAM_APP_RATES[0] / factor,
            "TELEGRAM_CHAT_RATE": TELEGRAM_APP_RATES[1] / factor,
            "ALBUM_WINDOW_SECONDS": ALBUM_WINDOW_SECONDS * factor,
        }
        return process_env(values | self.extra_env)

    async def __aenter__(self) -> Stack:
        try:
            await self._start()
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def _start(self) -> None:
        await self.telegram.start()
        await self.kie.start()
        await self.replicate.start()
        await self.kassa.start()
        if self.options.database_url and self.options.database_url.startswith("postgresql"):
            self.database_url = await create_database(self.options.database_url, prefix="pinglass_bench")
            self._owns_database = True
        ports = [free_port() for _ in range(self.processes_wanted)]
        for index, port in enumerate(ports):
            # The first process runs the bot (and the web app Telegram calls); others are schedulers.
            module = "bot" if index == 0 else "scheduler"
            app = AppProcess(module, port, self.app_env(port, ports[0]), self.workdir, launch=self.options.launch)
            app.profile_to = self.options.profile_to if index == 0 else None
            self.apps.append(app)
        self.kassa.webhook_url = f"http://127.0.0.1:{ports[0]}/payments/yookassa"
        for app in self.apps:
            await app.start()
        self.engine = create_engine(self.database_url)
        self.sessionmaker = create_sessionmaker(self.engine)
        self._sampler = asyncio.create_task(self._sample())

    async def _sample(self) -> None:
        while True:
            totals = [app.sample() for app in self.apps]
            self.samples.append((time.monotonic(), sum(c for c, _ in totals), sum(r for _, r in totals)))
            await asyncio.sleep(0.25)

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop_apps()
        if self.engine is not None:
            await self.engine.dispose()
        for fake in (self.kassa, self.kie, self.telegram):
            with contextlib.suppress(Exception):  # closing a fake that never started
                await fake.close()
        with contextlib.suppress(Exception):
            await self.replicate.stop()
        if self._owns_database:
            await drop_database(self.options.database_url, self.database_url)
        if not self.options.keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    async def stop_apps(self) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
            await asyncio.gather(self._sampler, return_exceptions=True)
            self._sampler = None
        for app in self.apps:
            await asyncio.to_thread(app.terminate)

    async def collect_app_figures(self) -> None:
        """Counters only the application knows, read from /metrics before it stops."""
        statements = telegram_429 = 0.0
        for app in self.apps:
            try:
                values = await app.metrics()
            except aiohttp.ClientError:
                continue
            statements += values.get("pinglass_db_statements_total", 0.0)
            telegram_429 += values.get("pinglass_telegram_429_total", 0.0)
        self.db_statements = int(statements)
        self.telegram_429_seen = int(telegram_429)

    def cpu_seconds(self) -> float:
        return sum(app.sample()[0] for app in self.apps)

    def peak_rss(self) -> int:
        for app in self.apps:
            app.sample()
        return max((app.peak_rss for app in self.apps), default=0)

    # -------------------------------------------------------------- users and waiting

    def users(self, count: int, first_index: int = 0) -> list[SimUser]:
        every = self.options.stars_every
        return [
            SimUser(
                self.telegram,
                self.kassa,
                index=first_index + index,
                method="stars" if every and (first_index + index) % every == every - 1 else "card",
                pack_photos=self.options.pack_photos,
            )
            for index in range(count)
        ]

    async def run_users(self, users: list[SimUser], **buy: Any) -> list[UserOutcome]:
        """Users arrive uniformly over the arrival window; at most ``intake_concurrency`` talk at once."""
        options = self.options
        spread = options.arrival_seconds if options.arrival_seconds is not None else 0.05 * len(users)
        gate = asyncio.Semaphore(options.intake_concurrency)
        started = time.monotonic()

        async def one(position: int, user: SimUser) -> UserOutcome:
            await asyncio.sleep(max(0.0, started + spread * position / max(1, len(users)) - time.monotonic()))
            async with gate:
                return await user.buy(**buy)

        return list(await asyncio.gather(*(one(position, user) for position, user in enumerate(users))))

    async def wait_jobs_done(self, expected_jobs: int, *, timeout: float) -> bool:  # noqa: ASYNC109
        """Until ``expected_jobs`` jobs exist and every job is finished; False on timeout."""
        assert self.sessionmaker is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            async with self.sessionmaker() as session:
                statuses = list((await session.execute(select(GenerationJob.status))).scalars())
            if len(statuses) >= expected_jobs and all(status in TERMINAL_JOBS for status in statuses):
                return True
            await asyncio.sleep(0.5)
        return False


# ---------------------------------------------------------------------- measuring one run


@dataclass
class RunRecord:
    """Everything measured in one run, as plain data for the JSON report."""

    figures: dict[str, Any] = field(default_factory=dict)
    series: dict[str, list[Any]] = field(default_factory=dict)


async def measure(stack: Stack, outcomes: list[UserOutcome], started: float, finished: float) -> RunRecord:
    """Read the database and the fakes' records after a run (the app processes are stopped already)."""
    assert stack.sessionmaker is not None
    options, offset = stack.options, stack.offset
    async with stack.sessionmaker() as session:
        jobs = list((await session.execute(select(GenerationJob))).scalars())
        tasks = list((await session.execute(select(GenerationTask))).scalars())
        deliveries = list((await session.execute(select(Delivery))).scalars())
        telegram_ids = {row[0]: row[1] for row in (await session.execute(select(User.id, User.telegram_id))).all()}

    kie_done = {task.task_id: task.created_monotonic + task.latency for task in stack.kie.tasks.values()}
    kie_created = {task.task_id: task.created_monotonic for task in stack.kie.tasks.values()}
    # When each delivered portrait appeared in the chat: the fake's arrival time of its album item.
    arrival: dict[int, float] = {}
    job_chat = {job.id: job.chat_id for job in jobs}
    for delivery in deliveries:
        chat = stack.telegram._chats.get(job_chat.get(delivery.job_id, 0), {})
        for task_id, message_id in zip(delivery.task_ids or [], delivery.message_ids or [], strict=False):
            message = chat.get(int(message_id))
            if message is not None:
                arrival[int(task_id)] = message.sent_at
    added = [
        arrival[task.id] - kie_done[task.provider_task_id]
        for task in tasks
        if task.id in arrival and task.provider_task_id in kie_done
    ]
    # The first portrait of each pack: provider success → in the chat (streaming sends it at once).
    first_of_pack: dict[int, GenerationTask] = {}
    for task in tasks:
        if task.id in arrival and task.provider_task_id in kie_done:
            known = first_of_pack.get(task.job_id)
            if known is None or arrival[task.id] < arrival[known.id]:
                first_of_pack[task.job_id] = task
    first_added = [arrival[task.id] - kie_done[task.provider_task_id or ""] for task in first_of_pack.values()]
    # Split the added latency: waiting for the other portraits of the same album (album batching: this
    # part is provider latency, so it shrinks with the time factor) and the app's own work after the
    # album's last portrait was ready (not compressed). Real-time equivalent = wait / F + own work.
    done_of_task = {task.id: kie_done.get(task.provider_task_id or "") for task in tasks}
    album_wait: list[float] = []
    own_work: list[float] = []
    real_equivalent: list[float] = []
    for delivery in deliveries:
        moments = [done_of_task.get(int(task_id)) for task_id in delivery.task_ids or []]
        if not moments or any(moment is None for moment in moments):
            continue
        album_ready = max(moment for moment in moments if moment is not None)
        for task_id, moment in zip(delivery.task_ids or [], moments, strict=True):
            if int(task_id) in arrival and moment is not None:
                wait, work = album_ready - moment, arrival[int(task_id)] - album_ready
                album_wait.append(wait)
                own_work.append(work)
                real_equivalent.append(wait / options.time_factor + work)
    to_stored = [
        stored - kie_done[task.provider_task_id]
        for task in tasks
        if task.provider_task_id in kie_done and (stored := to_monotonic(task.stored_at, offset)) is not None
    ]
    # Payment confirmed (the moment the user paid) → the job's first createTask at the provider.
    paid_at = {outcome.telegram_id: outcome.paid_at for outcome in outcomes if outcome.paid_at is not None}
    first_create: dict[int, float] = {}
    for task in tasks:
        created = kie_created.get(task.provider_task_id or "")
        if created is not None:
            first_create[task.job_id] = min(first_create.get(task.job_id, created), created)
    pay_to_create = [
        first_create[job.id] - paid_at[telegram_ids[job.user_id]]
        for job in jobs
        if job.id in first_create and telegram_ids.get(job.user_id) in paid_at
    ]

    # Budget: in every window where at least a window's worth of tasks was waiting, how full was it?
    window = KIE_WINDOW * options.time_factor
    creates = sorted(kie_created.values())
    pending_since = sorted(
        (to_monotonic(task.created_at, offset) or 0.0, kie_created.get(task.provider_task_id or "", math.inf))
        for task in tasks
    )
    saturated = used = 0
    if creates:
        t = creates[0]
        while t < creates[-1]:
            backlog = sum(1 for since, sent in pending_since if since <= t < sent)
            if backlog >= KIE_LIMIT:
                saturated += 1
                used += sum(1 for moment in creates if t <= moment < t + window)
            t += window
    max_in_window = 0
    for index, moment in enumerate(creates):
        upper = next((j for j in range(index, len(creates)) if creates[j] >= moment + window), len(creates))
        max_in_window = max(max_in_window, upper - index)

    paid_jobs = [job for job in jobs if job.order_id is not None]
    photos_delivered = sum(1 for task in tasks if task.status == "delivered")
    telegram_calls = Counter(call.method for call in stack.telegram.calls() if call.method != "getUpdates")
    sends = {
        method: telegram_calls[method]
        for method in ("sendMediaGroup", "sendPhoto", "sendMessage", "editMessageText", "sendInvoice")
    }
    packs = max(1, len(paid_jobs))
    cpu = stack.cpu_seconds()
    statements = stack.db_statements
    duration = finished - started
    record = RunRecord()
    record.figures = {
        "mode": "callbacks" if options.callbacks else "polling",
        "database": make_url(stack.database_url).get_backend_name(),
        "time_factor": options.time_factor,
        "users": len(outcomes),
        "users_failed": sum(1 for outcome in outcomes if outcome.error),
        "user_errors": sorted({outcome.error for outcome in outcomes if outcome.error})[:5],
        "packs": len(paid_jobs),
        "packs_finished": sum(1 for job in paid_jobs if job.status in TERMINAL_JOBS),
        "photos_delivered": photos_delivered,
        "photos_credited_back": sum(job.photos_failed for job in paid_jobs),
        "wall_seconds": round(duration, 1),
        "added_latency_s": percentiles(added),
        "added_latency_first_portrait_s": percentiles(first_added),
        "added_album_wait_s": percentiles(album_wait),
        "added_app_work_s": percentiles(own_work),
        "added_latency_real_time_equivalent_s": percentiles(real_equivalent),
        "provider_success_to_stored_s": percentiles(to_stored),
        "payment_to_first_create_s": percentiles(pay_to_create),
        "kie_creates": len(creates),
        "kie_limit": f"{KIE_LIMIT}/{window:g}s",
        "kie_budget_used": round(used / (saturated * KIE_LIMIT), 3) if saturated else None,
        "kie_saturated_windows": saturated,
        # The app's limiter widens every window by a safety margin, a share of it (providers/ratelimit.py).
        "kie_budget_ceiling": round(1 / (1 + DEFAULT_SAFETY_MARGIN_SHARE), 3),
        "kie_max_creates_in_window": max_in_window,
        "kie_429": stack.kie.rate_limited_count,
        "kie_status_calls": len(stack.kie.record_info_calls),
        "kie_status_calls_per_photo": round(len(stack.kie.record_info_calls) / photos_delivered, 2)
        if photos_delivered
        else None,
        "kie_status_429": getattr(stack.kie, "record_info_rate_limited_count", None),
        "replicate_creates": len(stack.replicate.creates),
        "replicate_429": sum(1 for request in stack.replicate.requests if request.status == 429),
        "telegram_sends_per_pack": {method: round(count / packs, 2) for method, count in sends.items()},
        "telegram_429_provoked": stack.telegram.flood_429s,
        "telegram_429_seen_by_app": stack.telegram_429_seen,
        "cpu_seconds": round(cpu, 1),
        "cpu_seconds_per_pack": round(cpu / packs, 3),
        "cpu_utilisation": round(cpu / duration, 2) if duration else None,
        "peak_rss_mib": round(stack.peak_rss() / 2**20, 1),
        "db_statements": statements,
        "db_statements_per_photo": round(statements / photos_delivered, 1) if photos_delivered else None,
        "app_restarts": sum(app.starts - 1 for app in stack.apps),
    }
    photo_times = sorted(
        m.sent_at - started for m in stack.telegram.sent_messages() if m.kind == "photo" and m.from_bot
    )
    record.series = {
        "added_latency_s": sorted(round(value, 4) for value in added),
        "delivered_at_s": [round(value, 3) for value in photo_times],
        "created_at_s": [round(value - started, 3) for value in creates],
        "cpu": [(round(t - started, 2), round(c, 2), r) for t, c, r in stack.samples],
    }
    return record


async def run_load(options: LoadOptions) -> RunRecord:
    """One load run: start everything, let the users buy, wait for every pack, measure."""
    async with Stack(options) as stack:
        started = time.monotonic()
        cpu_before = stack.cpu_seconds()
        runner = psutil.Process()
        runner_before = sum(runner.cpu_times()[:2])
        users = stack.users(options.packs)
        outcomes = await stack.run_users(users)
        paid = sum(1 for outcome in outcomes if outcome.paid_at is not None)
        remaining = options.deadline_seconds - (time.monotonic() - started)
        done = await stack.wait_jobs_done(paid, timeout=max(10.0, remaining))
        finished = time.monotonic()
        await stack.collect_app_figures()
        await stack.stop_apps()
        record = await measure(stack, outcomes, started, finished)
        record.figures["cpu_seconds_startup"] = round(cpu_before, 1)
        # The runner (fakes + simulated users) shares the machine: its CPU is the load's own cost.
        record.figures["runner_cpu_utilisation"] = round(
            (sum(runner.cpu_times()[:2]) - runner_before) / max(0.001, finished - started), 2
        )
        record.figures["finished_in_time"] = done
        if not done:
            record.figures["note"] = f"not every job finished within {options.deadline_seconds:.0f} s"
        return record


# ---------------------------------------------------------------------- command line


def main() -> None:
    from bench.report import write_reports

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--packs", type=int, default=10, help="users (= packs) for the latency runs")
    parser.add_argument("--steps", default="", help="capacity steps, e.g. 10,100,300,1000 (callbacks mode)")
    parser.add_argument("--mode", choices=["callbacks", "polling", "both"], default="both")
    parser.add_argument("--time-factor", type=float, default=0.05)
    parser.add_argument("--database-url", default=None, help="postgresql+asyncpg://... (a fresh database is made)")
    parser.add_argument("--arrival-seconds", type=float, default=None)
    parser.add_argument("--deadline", type=float, default=1800.0)
    parser.add_argument("--out", type=Path, default=RESULTS / "load")
    parser.add_argument("--profile", action="store_true", help="pyinstrument the app; reports next to --out")
    args = parser.parse_args()

    def options(packs: int, callbacks: bool) -> LoadOptions:
        mode = "callbacks" if callbacks else "polling"
        profile = args.out.parent / f"profile-{mode}-{packs}.txt" if args.profile else None
        return LoadOptions(
            profile_to=profile,
            packs=packs,
            callbacks=callbacks,
            time_factor=args.time_factor,
            database_url=args.database_url,
            arrival_seconds=args.arrival_seconds,
            deadline_seconds=args.deadline,
        )

    runs: list[dict[str, Any]] = []
    modes = {"callbacks": [True], "polling": [False], "both": [True, False]}[args.mode]
    for callbacks in modes:
        record = asyncio.run(run_load(options(args.packs, callbacks)))
        runs.append({"kind": "latency", **record.figures, "series": record.series})
        print(f"done: {record.figures['mode']} {record.figures['packs']} packs", flush=True)
    for step in [int(value) for value in args.steps.split(",") if value.strip()]:
        record = asyncio.run(run_load(options(step, True)))
        runs.append({"kind": "capacity", **record.figures, "series": record.series})
        print(f"done: capacity step {step}", flush=True)
        # Keep what is measured so far: a large step can take long, and the figures of the others stand.
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".partial.json").write_text(json.dumps(runs, default=str))
    write_reports(runs, args.out, command=" ".join(["python -m bench.load", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
