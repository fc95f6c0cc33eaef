"""The composition root: builds settings-driven parts once, wires them, runs them, stops them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import timedelta
from typing import IO, Any, Literal

from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ParseMode
from aiogram.fsm.storage.base import BaseStorage
from aiogram.utils.i18n import I18n
from aiogram.webhook.aiohttp_server import SimpleRequestHandler
from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.album import AlbumCollector, UserLocks
from bot.broadcast import TelegramBroadcastSender
from bot.delivery import TelegramAlbumSender
from bot.handlers import build_root_router
from bot.i18n import UserLanguageMiddleware, build_i18n
from bot.logging_setup import configure_logging as setup_logging
from bot.middlewares.banned import BannedUserMiddleware
from bot.middlewares.db import DbSessionMiddleware
from bot.middlewares.metrics import UpdateCountingMiddleware
from bot.middlewares.replay import ReplayMiddleware, StampingStorage
from bot.middlewares.throttling import ThrottlingMiddleware
from bot.middlewares.user import UserMiddleware
from bot.notifier import TelegramNotifier
from bot.observability import Heartbeat, Metrics
from bot.originals import TelegramDocumentSender
from bot.reminders import TelegramReminderSender
from bot.settings import Settings, parse_limit
from bot.startup import HEARTBEAT_SECONDS, ProcessRegistry, StartRefused, TelegramLink
from bot.telegram_limits import ForgivingCallbackAnswers, OutgoingLimits, ResponseTypesKept
from bot.web import (
    KIE_CALLBACK_PATH,
    REPLICATE_WEBHOOK_PATH,
    SELFHOSTED_WEBHOOK_PATH,
    SIGNED_FILES_PATH,
    TELEGRAM_WEBHOOK_PATH,
    YOOKASSA_PATH,
    build_web_app,
    signed_files,
    yookassa_notifications,
)
from providers.base import ImageProvider
from providers.faces import FaceAnalyser, FaceModelsUnavailable
from providers.http import DownloadPolicy
from providers.kie import KieProvider
from providers.ratelimit import RedisSlidingWindowLimiter, SlidingWindowLimiter
from providers.replicate import ReplicateProvider
from providers.selfhosted import SelfHostedProvider
from providers.stars import StarsPayments
from providers.yookassa import IpAllowList, YooKassaClient, client_ip
from scheduler.accounts import AccountService
from scheduler.admin import AdminService
from scheduler.broadcast import BroadcastService
from scheduler.credits import CreditService
from scheduler.delivery import DeliveryConfig, DeliveryService
from scheduler.engine import EngineConfig, GenerationEngine
from scheduler.examples import ExampleService
from scheduler.favourites import FavouritesService
from scheduler.gifts import GiftService
from scheduler.housekeeping import Housekeeping
from scheduler.intake import IntakeLimits, IntakeService
from scheduler.jobs import Beat, build_scheduler
from scheduler.originals import OriginalsService
from scheduler.payments import PaymentService
from scheduler.provider_health import AlertLatch, MemoryLatch, ProviderHealthMonitor, RedisLatch
from scheduler.redo import RedoService
from scheduler.referrals import ReferralService
from scheduler.reminders import ReminderService
from scheduler.results import ResultsService
from scheduler.signals import WorkSignals
from scheduler.wakeup import WakeableJob
from storage.avatars import is_reference_of_job_in_flight
from storage.db import count_statements, create_engine, create_sessionmaker
from storage.files import FileStore, LocalFileStore, S3FileStore, SignedFileUrls
from storage.fsm import DatabaseStorage
from storage.images import register_heif
from storage.migrate import upgrade_async
from studio.catalogue import Catalogue, load_catalogue
from studio.delivery import ALBUM_MAX, ChatBudgets
from studio.faces import FaceLimits
from studio.policy import parse_fallback_policy

log = logging.getLogger("pinglass")


def build_bot(settings: Settings) -> Bot:
    session = AiohttpSession(
        api=TelegramAPIServer.from_base(settings.TELEGRAM_API_URL),
        timeout=60,
        proxy=settings.TELEGRAM_PROXY.get_secret_value() or None,
    )
    return Bot(
        token=settings.BOT_TOKEN.get_secret_value(),
        session=session,
        default=DefaultBotProperties(parse_mode=ParseMode.HTML),
    )


def build_file_store(settings: Settings) -> FileStore:
    if settings.STORAGE_BACKEND == "s3":
        return S3FileStore(
            bucket=settings.S3_BUCKET,
            endpoint_url=settings.S3_ENDPOINT_URL or None,
            region=settings.S3_REGION or None,
            access_key=settings.S3_ACCESS_KEY.get_secret_value() or None,
            secret_key=settings.S3_SECRET_KEY.get_secret_value() or None,
        )
    if settings.PUBLIC_URL:
        return LocalFileStore(
            settings.LOCAL_STORAGE_DIR,
            public_base_url=settings.PUBLIC_URL,
            signing_secret=settings.file_url_secret,
        )
    return LocalFileStore(settings.LOCAL_STORAGE_DIR)


def build_fsm_storage(settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]) -> BaseStorage:
    """Redis when configured, our database otherwise: never memory, so a restart resumes every conversation.
    Either way each step is stamped with the update that made it (bot/middlewares/replay.py)."""
    if settings.REDIS_URL:
        from aiogram.fsm.storage.redis import RedisStorage

        return StampingStorage(RedisStorage.from_url(settings.REDIS_URL))
    return StampingStorage(DatabaseStorage(sessionmaker))


@dataclass
class Application:
    """One PinGlass process: web app always, the bot when ``with_bot``, the scheduler always."""

    settings: Settings
    with_bot: bool = True
    # How the face models are loaded (about 0.6 CPU s a copy, two copies): the tests hand over models
    # an earlier app of theirs loaded (tests/support/faces.py).
    load_faces: Callable[[FaceLimits], FaceAnalyser] = FaceAnalyser.load
    # Unique per process and per start: leases and claims compare it, so two processes must never share it.
    instance_id: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}")

    db_engine: AsyncEngine = field(init=False)
    sessionmaker: async_sessionmaker[AsyncSession] = field(init=False)
    files: FileStore = field(init=False)
    catalogue: Catalogue = field(init=False)
    signals: WorkSignals = field(init=False)
    yookassa: YooKassaClient | None = field(init=False, default=None)
    payments: PaymentService = field(init=False)
    credits: CreditService = field(init=False)
    redo: RedoService = field(init=False)
    engine_service: GenerationEngine = field(init=False)
    faces: FaceAnalyser | None = field(init=False, default=None)
    delivery: DeliveryService = field(init=False)
    delivery_job: WakeableJob = field(init=False)
    originals: OriginalsService = field(init=False)
    favourites: FavouritesService = field(init=False)
    housekeeping: Housekeeping = field(init=False)
    providers: list[ImageProvider] = field(init=False, default_factory=list)
    _redis: Any = field(init=False, default=None)
    bot: Bot = field(init=False)
    dispatcher: Dispatcher = field(init=False)
    scheduler: AsyncIOScheduler = field(init=False)
    heartbeat: Heartbeat = field(init=False)
    metrics: Metrics = field(init=False)
    web_app: web.Application = field(init=False)
    broadcasts: BroadcastService = field(init=False)
    admin: AdminService = field(init=False)
    provider_health: ProviderHealthMonitor = field(init=False)
    accounts: AccountService = field(init=False)
    gifts: GiftService = field(init=False)
    referrals: ReferralService = field(init=False)
    results: ResultsService = field(init=False)
    intake: IntakeService = field(init=False)
    examples: ExampleService = field(init=False)
    _runner: web.AppRunner | None = field(init=False, default=None)
    _polling: asyncio.Task[None] | None = field(init=False, default=None)
    _stopped: asyncio.Event = field(init=False, default_factory=asyncio.Event)
    # Set by a signal or by a fatal start-up problem found in the background (a rejected token).
    stop_requested: asyncio.Event = field(init=False, default_factory=asyncio.Event)
    exit_code: int = field(init=False, default=0)
    registry: ProcessRegistry = field(init=False)
    telegram: TelegramLink | None = field(init=False, default=None)
    _telegram_start: asyncio.Task[None] | None = field(init=False, default=None)
    port: int = field(init=False, default=0)

    async def start(self) -> None:
        settings = self.settings
        self.bot = build_bot(settings)
        if self.with_bot:
            await self._probe_telegram()
        if settings.AUTO_MIGRATE:
            await upgrade_async(settings.DATABASE_URL)
        self.db_engine = create_engine(settings.DATABASE_URL)
        self.sessionmaker = create_sessionmaker(self.db_engine)
        await self._register_process()
        register_heif()
        self.faces = await self._load_faces()
        self.catalogue = load_catalogue()
        self.files = build_file_store(settings)
        self.heartbeat = Heartbeat()
        self.metrics = Metrics()
        count_statements(self.db_engine, self.metrics.db_statements.inc)
        # One budget per chat, shared by every send (the session middleware) and delivery's planning.
        budgets = ChatBudgets(ALBUM_MAX, settings.TELEGRAM_CHAT_RATE)
        self.bot.session.middleware(ResponseTypesKept())
        self.bot.session.middleware(ResponseTypesKept())
        self.bot.session.middleware(ForgivingCallbackAnswers())
        self.bot.session.middleware(
            OutgoingLimits(
                global_rate=settings.TELEGRAM_GLOBAL_RATE,
                budgets=budgets,
                on_retry_after=self.metrics.telegram_429.inc,
                on_send=lambda method: self.metrics.telegram_sends.labels(method).inc(),
            )
        )
        self.signals = WorkSignals()
        i18n = build_i18n()
        notifier = TelegramNotifier(self.bot, i18n)
        if settings.yookassa_enabled:
            self.yookassa = YooKassaClient(
                settings.YOOKASSA_SHOP_ID, settings.YOOKASSA_SECRET_KEY.get_secret_value(), settings.YOOKASSA_API_URL
            )
        self.payments = PaymentService(
            self.sessionmaker,
            catalogue=self.catalogue,
            notifier=notifier,
            signals=self.signals,
            yookassa=self.yookassa,
            return_url=settings.YOOKASSA_RETURN_URL or "https://t.me/",
            receipts=settings.YOOKASSA_RECEIPTS,
            vat_code=settings.YOOKASSA_VAT_CODE,
            poll_interval_seconds=settings.POLL_INTERVAL_SECONDS,
            stars=StarsPayments(self.bot) if settings.STARS_ENABLED else None,
            admin_chat_ids=settings.ADMIN_IDS,
        )
        self.credits = CreditService(
            self.sessionmaker, catalogue=self.catalogue, notifier=notifier, signals=self.signals
        )
        self.redo = RedoService(self.sessionmaker, signals=self.signals, free_per_pack=settings.FREE_REDOS_PER_PACK)
        self.providers = self._build_providers()
        self.engine_service = GenerationEngine(
            self.sessionmaker,
            files=self.files,
            catalogue=self.catalogue,
            providers=self.providers,
            policy=parse_fallback_policy(settings.FALLBACK_POLICY),
            signals=self.signals,
            notifier=notifier,
            config=EngineConfig(
                worker_id=self.instance_id,
                public_url=settings.PUBLIC_URL,
                poll_interval_seconds=settings.POLL_INTERVAL_SECONDS,
                tick_seconds=settings.DISPATCH_TICK_SECONDS,
                lease_seconds=settings.TASK_LEASE_SECONDS,
                store_retry_after_seconds=settings.TASK_LEASE_SECONDS,
            ),
            on_latency=lambda provider, seconds: self.metrics.provider_latency.labels(provider).observe(seconds),
            faces=self.faces,
        )
        self.originals = OriginalsService(
            self.sessionmaker, files=self.files, sender=TelegramDocumentSender(self.bot, notifier), notifier=notifier
        )
        self.favourites = FavouritesService(
            self.sessionmaker, files=self.files, sender=TelegramAlbumSender(self.bot, notifier), notifier=notifier
        )
        self.housekeeping = Housekeeping(
            self.sessionmaker,
            self.files,
            reference_retention=timedelta(days=settings.REFERENCE_RETENTION_DAYS),
            result_retention=timedelta(days=settings.RESULT_RETENTION_DAYS),
            conversation_retention=timedelta(days=settings.FSM_RETENTION_DAYS),
        )
        self.delivery = DeliveryService(
            self.sessionmaker,
            sender=TelegramAlbumSender(self.bot, notifier),
            budgets=budgets,
            files=self.files,
            notifier=notifier,
            catalogue=self.catalogue,
            config=DeliveryConfig(
                worker_id=self.instance_id,
                lease_seconds=settings.TASK_LEASE_SECONDS,
                album_window_seconds=settings.ALBUM_WINDOW_SECONDS,
                tick_seconds=settings.DISPATCH_TICK_SECONDS,
                likeness_guarantee=settings.LIKENESS_GUARANTEE if settings.FACE_CHECKS else 0.0,
                free_redos_per_pack=settings.FREE_REDOS_PER_PACK,
                referral_bonus_photos=settings.REFERRAL_BONUS_PHOTOS,
            ),
        )
        self.delivery_job = WakeableJob("deliver", self.delivery.deliver_all, settings.DISPATCH_TICK_SECONDS)
        self.delivery.on_missed_wake = self.delivery_job.wake
        self.delivery.on_job_queued = self.signals.job_queued
        self.signals.on_task_stored(self.delivery_job.wake)
        # Broadcasts share the Bot, hence its outgoing rate limits, with delivery and replies.
        self.broadcasts = BroadcastService(
            self.sessionmaker, sender=TelegramBroadcastSender(self.bot), notifier=notifier
        )
        # Reminders too share the Bot and its outgoing limits; the words and buttons are the notifier's.
        self.reminders = ReminderService(
            self.sessionmaker,
            sender=TelegramReminderSender(self.bot, notifier),
            result_retention=timedelta(days=settings.RESULT_RETENTION_DAYS),
        )
        self.provider_health = ProviderHealthMonitor(
            self.providers,
            notifier=notifier,
            admin_chat_ids=settings.ADMIN_IDS,
            balance_alert_below={"kie": settings.KIE_BALANCE_ALERT_BELOW},
            latch=self._alert_latch(),
        )
        self.admin = AdminService(
            self.sessionmaker,
            payments=self.payments,
            engine=self.engine_service,
            delivery=self.delivery,
            stars=self.payments.stars,
            broadcasts=self.broadcasts,
            usd_rates=self.settings.usd_rates,
            probes=self.provider_health,
        )
        self.accounts = AccountService(self.sessionmaker)
        self.gifts = GiftService(
            self.sessionmaker, catalogue=self.catalogue, payments=self.payments, accounts=self.accounts
        )
        self.referrals = ReferralService(
            self.sessionmaker, accounts=self.accounts, bonus_photos=settings.REFERRAL_BONUS_PHOTOS
        )
        self.results = ResultsService(self.sessionmaker, files=self.files)
        self.intake = IntakeService(
            self.sessionmaker,
            catalogue=self.catalogue,
            files=self.files,
            limits=IntakeLimits(
                max_photo_bytes=self.settings.MAX_PHOTO_BYTES,
                min_photo_side=self.settings.MIN_PHOTO_SIDE,
                rejects_per_hour=self.settings.INTAKE_REJECTS_PER_HOUR,
            ),
            faces=self.faces,
            grid_capable=self.engine_service.primary_grid_capable,
        )
        self.examples = ExampleService(
            self.sessionmaker, catalogue=self.catalogue, intake=self.intake, files=self.files, signals=self.signals
        )
        self.dispatcher = self._build_dispatcher(i18n)
        self.scheduler = self._build_scheduler()
        if self.telegram is not None:
            self.telegram.dispatcher = self.dispatcher
            self.telegram.sessionmaker = self.sessionmaker
        self.web_app = build_web_app(
            db_engine=self.db_engine,
            extra_checks=self._health_details,
            heartbeat=self.heartbeat,
            metrics=self.metrics,
            sessionmaker=self.sessionmaker,
            breaker_states=self.engine_service.breaker_states,
            paused_providers=lambda: self.engine_service.paused,
            metrics_token=settings.METRICS_TOKEN.get_secret_value(),
        )
        self._add_payment_routes()
        self._add_provider_routes()
        self._add_file_routes()
        if self.with_bot and settings.PUBLIC_URL:
            SimpleRequestHandler(
                dispatcher=self.dispatcher,
                bot=self.bot,
                # Answer Telegram only after handling: answered-then-crashed updates (a selfie, a Stars
                # payment) would be lost, since Telegram never sends an acknowledged update again.
                handle_in_background=False,
                secret_token=settings.webhook_secret,
            ).register(self.web_app, path=TELEGRAM_WEBHOOK_PATH)

        self._runner = web.AppRunner(self.web_app, handle_signals=False, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, settings.WEB_HOST, settings.WEB_PORT)
        await site.start()
        self.port = self._bound_port(site)
        self.scheduler.start()
        await self.engine_service.refresh_overrides()  # admins' pauses and primary, before any work
        self.engine_service.start()
        await self.broadcasts.resume()
        self.signals.job_queued()  # pick up whatever was queued while we were down
        if self.with_bot:
            await self._start_bot()
        log.info(
            "PinGlass started: web on %s:%s, bot=%s, mode=%s",
            settings.WEB_HOST,
            self.port,
            self.with_bot,
            "webhook" if settings.PUBLIC_URL else "polling",
        )

    async def _probe_telegram(self) -> None:
        """Before anything else starts: a token Telegram rejects ends the start with one line."""
        self.telegram = TelegramLink(self.bot, api_url=self.settings.TELEGRAM_API_URL, on_fatal=self._fatal)
        try:
            await self.telegram.probe()
        except StartRefused:
            await self.bot.session.close()
            raise

    async def _register_process(self) -> None:
        """A bot without Redis keeps conversations, albums and limits in this process: it must be alone."""
        self.registry = ProcessRegistry(
            self.sessionmaker, self.instance_id, role="bot" if self.with_bot else "scheduler"
        )
        try:
            await self.registry.register(alone=self.with_bot and not self.settings.REDIS_URL)
        except StartRefused:
            await self.db_engine.dispose()
            await self.bot.session.close()
            raise

    def _fatal(self, exit_code: int) -> None:
        self.exit_code = exit_code
        self.stop_requested.set()

    async def _load_faces(self) -> FaceAnalyser | None:
        """Load the face models once (about 0.5 s, off the loop); without them the bot runs, unchecked, and says so."""
        settings = self.settings
        if not settings.FACE_CHECKS:
            log.info("face checks are off (FACE_CHECKS=false): selfies and portraits are not checked for faces")
            return None
        limits = FaceLimits(
            min_size_px=settings.FACE_MIN_SIZE_PX,
            min_size_ratio=settings.FACE_MIN_SIZE_RATIO,
            blur_min=settings.FACE_BLUR_MIN,
            match_max_distance=settings.FACE_MATCH_MAX_DISTANCE,
            identity_min_score=settings.IDENTITY_MIN_SCORE,
        )
        try:
            return await asyncio.to_thread(self.load_faces, limits)
        except FaceModelsUnavailable as error:
            log.error(
                "FACE CHECKS ARE OFF: the face models could not be loaded (%s); nothing is checked for faces", error
            )
            return None

    def _bound_port(self, site: web.TCPSite) -> int:
        server = site._server  # aiohttp exposes no public accessor for the bound socket
        sockets = getattr(server, "sockets", None) or []
        return int(sockets[0].getsockname()[1]) if sockets else self.settings.WEB_PORT

    def _limiter(
        self, name: str, limit: str, kind: Literal["create", "status"] = "create"
    ) -> SlidingWindowLimiter | RedisSlidingWindowLimiter:
        calls, seconds = parse_limit(limit)
        if self.settings.REDIS_URL:
            return RedisSlidingWindowLimiter(self._redis_client(), f"pinglass:limit:{name}:{kind}", calls, seconds)
        return SlidingWindowLimiter(calls, seconds)

    def _redis_client(self) -> Any:
        import redis.asyncio as redis_asyncio

        if self._redis is None:
            self._redis = redis_asyncio.Redis.from_url(self.settings.REDIS_URL)
        return self._redis

    def _alert_latch(self) -> AlertLatch:
        # Shared through Redis when there is one, so the processes of a deploy alert once between them.
        return RedisLatch(self._redis_client()) if self.settings.REDIS_URL else MemoryLatch()

    def _health_details(self) -> dict[str, object]:
        """/healthz detail beyond the web app's own: the Telegram link and the providers' last probes."""
        details: dict[str, object] = dict(self.telegram.health()) if self.telegram is not None else {}
        details["provider_health"] = self.provider_health.as_json()
        return details

    def _download_policy(self) -> DownloadPolicy:
        settings = self.settings
        return DownloadPolicy(
            hosts=(),
            allow_loopback=settings.DOWNLOAD_ALLOW_LOOPBACK,
            max_redirects=settings.DOWNLOAD_MAX_REDIRECTS,
        ).with_hosts(settings.DOWNLOAD_ALLOWED_HOSTS)

    def _build_providers(self) -> list[ImageProvider]:
        settings = self.settings
        providers: list[ImageProvider] = []
        if settings.KIE_API_KEY.get_secret_value():
            providers.append(
                KieProvider(
                    api_key=settings.KIE_API_KEY.get_secret_value(),
                    api_url=settings.KIE_API_URL,
                    upload_url=settings.KIE_UPLOAD_URL,
                    model=settings.KIE_MODEL,
                    hmac_key=settings.KIE_WEBHOOK_HMAC_KEY.get_secret_value() or None,
                    create_limiter=self._limiter("kie", settings.KIE_CREATE_LIMIT),
                    download_policy=self._download_policy(),
                    status_limiter=self._limiter("kie", settings.KIE_STATUS_LIMIT, "status"),
                    price_per_image=settings.KIE_PRICE_PER_IMAGE,
                )
            )
        if settings.REPLICATE_API_TOKEN.get_secret_value():
            providers.append(
                ReplicateProvider(
                    api_token=settings.REPLICATE_API_TOKEN.get_secret_value(),
                    api_url=settings.REPLICATE_API_URL,
                    model=settings.REPLICATE_MODEL,
                    webhook_secret=settings.REPLICATE_WEBHOOK_SECRET.get_secret_value() or None,
                    create_limiter=self._limiter("replicate", settings.REPLICATE_CREATE_LIMIT),
                    download_policy=self._download_policy(),
                    status_limiter=self._limiter("replicate", settings.REPLICATE_STATUS_LIMIT, "status"),
                    price_per_image=settings.REPLICATE_PRICE_PER_IMAGE,
                )
            )
        if settings.GENERATOR_URL:
            links = SignedFileUrls(settings.file_url_secret, settings.generator_files_url)
            providers.append(
                SelfHostedProvider(
                    settings.GENERATOR_URL,
                    settings.GENERATOR_TOKEN.get_secret_value(),
                    reference_links=links.url_for,
                    webhook_secret=settings.GENERATOR_WEBHOOK_SECRET.get_secret_value() or None,
                    create_limiter=self._limiter("selfhosted", settings.GENERATOR_CREATE_LIMIT),
                    download_policy=self._download_policy(),
                    status_limiter=self._limiter("selfhosted", settings.GENERATOR_STATUS_LIMIT, "status"),
                )
            )
        return providers

    def _add_file_routes(self) -> None:
        """Signed /files links: how the self-hosted generator reads the selfies of the jobs it runs."""
        sessionmaker = self.sessionmaker

        async def reference_in_flight(key: str) -> bool:
            async with sessionmaker() as session:
                return await is_reference_of_job_in_flight(session, key)

        self.web_app.router.add_get(
            SIGNED_FILES_PATH,
            signed_files(
                links=SignedFileUrls(self.settings.file_url_secret),
                files=self.files,
                may_serve=reference_in_flight,
            ),
        )

    def _add_provider_routes(self) -> None:
        engine = self.engine_service

        def endpoint(name: str) -> Any:
            async def handle(request: web.Request) -> web.Response:
                status = await engine.accept_callback(name, request.headers, await request.read())
                return web.json_response({"status": status}, status=status)

            return handle

        self.web_app.router.add_post(KIE_CALLBACK_PATH, endpoint("kie"))
        self.web_app.router.add_post(REPLICATE_WEBHOOK_PATH, endpoint("replicate"))
        self.web_app.router.add_post(SELFHOSTED_WEBHOOK_PATH, endpoint("selfhosted"))

    def _add_payment_routes(self) -> None:
        settings = self.settings
        allowed = IpAllowList(settings.YOOKASSA_TRUSTED_IPS)
        proxies = IpAllowList(settings.YOOKASSA_TRUSTED_PROXIES)

        def address(request: web.Request) -> str:
            return client_ip(request.remote or "", request.headers, settings.YOOKASSA_TRUSTED_PROXY_HEADER, proxies)

        if self.yookassa is not None:
            self.web_app.router.add_post(
                YOOKASSA_PATH,
                yookassa_notifications(
                    sync=self.payments.sync,
                    sync_refund=self.payments.sync_refund,
                    trusted=allowed.is_trusted,
                    client_address=address,
                ),
            )

    def _build_dispatcher(self, i18n: I18n) -> Dispatcher:
        dispatcher = Dispatcher(
            storage=build_fsm_storage(self.settings, self.sessionmaker),
            settings=self.settings,
            i18n=i18n,
            sessionmaker=self.sessionmaker,
            metrics=self.metrics,
            catalogue=self.catalogue,
            files=self.files,
            album_collector=AlbumCollector(),
            originals=self.originals,
            favourites=self.favourites,
            delivery=self.delivery,
            user_locks=UserLocks(),
            payments=self.payments,
            credits=self.credits,
            redo=self.redo,
            signals=self.signals,
            faces=self.faces,
            admin=self.admin,
            accounts=self.accounts,
            gifts=self.gifts,
            referrals=self.referrals,
            results=self.results,
            intake=self.intake,
            examples=self.examples,
        )
        dispatcher.update.outer_middleware(UpdateCountingMiddleware(self.metrics.updates_handled))
        dispatcher.update.outer_middleware(ThrottlingMiddleware(self.settings.THROTTLE_UPDATES_PER_SECOND, i18n=i18n))
        # Before the update's session exists: its look at the step is a short read of its own, not a
        # pooled connection held through the handler (which needs a second one for the services it calls).
        dispatcher.update.outer_middleware(ReplayMiddleware())
        dispatcher.update.outer_middleware(DbSessionMiddleware(self.sessionmaker))
        dispatcher.update.outer_middleware(UserMiddleware(i18n, on_unblocked=self.signals.task_stored))
        dispatcher.update.outer_middleware(BannedUserMiddleware(i18n))
        UserLanguageMiddleware(i18n).setup(dispatcher)
        dispatcher.include_router(build_root_router())
        return dispatcher

    def _build_scheduler(self) -> AsyncIOScheduler:
        scheduler, self.running_jobs = build_scheduler(
            engine=self.engine_service,
            delivery=self.delivery_job,
            housekeeping=self.housekeeping,
            payments=self.payments,
            recover_seconds=self.settings.RECOVER_INTERVAL_SECONDS,
            provider_health=self.provider_health,
            reminders=self.reminders,
            beats=(
                Beat("process-heartbeat", self.registry.beat, HEARTBEAT_SECONDS),
                Beat("heartbeat", self.heartbeat.beat, self.heartbeat.interval_seconds, at_start=True),
            ),
        )
        return scheduler

    async def _start_bot(self) -> None:
        """Reach Telegram in the background: the web app and the scheduler run whether or not it answers."""
        assert self.telegram is not None
        receive = self._register_webhook if self.settings.PUBLIC_URL else self._start_polling
        if self.settings.PUBLIC_URL:
            await self.dispatcher.emit_startup(bot=self.bot)
        self._telegram_start = asyncio.create_task(self.telegram.run(receive), name="telegram-start")
        # Usually Telegram answers at once and the bot is fully up when start() returns; a stop asked
        # for meanwhile (SIGTERM while Telegram is slow to answer) does not wait for that answer.
        await _first_of(self.telegram.first_attempt_done.wait(), self.stop_requested.wait())

    async def _register_webhook(self, allowed_updates: list[str]) -> None:
        assert self.telegram is not None
        await self.telegram.register_webhook(
            f"{self.settings.PUBLIC_URL}{TELEGRAM_WEBHOOK_PATH}", self.settings.webhook_secret, allowed_updates
        )

    async def _start_polling(self, allowed_updates: list[str]) -> None:
        # Keep pending updates: they may be selfies a user sent while we were down.
        await self.bot.delete_webhook(drop_pending_updates=False)
        self._polling = asyncio.create_task(
            self.dispatcher.start_polling(
                self.bot,
                handle_signals=False,
                close_bot_session=False,
                allowed_updates=allowed_updates,
                polling_timeout=10,
            ),
            name="telegram-polling",
        )

    async def stop(self) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        if self._telegram_start is not None and not self._telegram_start.done():
            self._telegram_start.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._telegram_start
        if self._polling is not None:
            with contextlib.suppress(RuntimeError):
                await self.dispatcher.stop_polling()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._polling, timeout=5)
        elif self.with_bot and self.settings.PUBLIC_URL:
            await self.dispatcher.emit_shutdown(bot=self.bot)
        # The engine's jobs first: their passes are cancelled rather than waited for (a create waiting
        # for its rate window, a poll waiting on the provider), and its creates in flight are awaited.
        await self.engine_service.stop()
        if self.scheduler.running:
            self.scheduler.pause()  # nothing new starts; what runs may finish (a few seconds at most)
            if not await self.running_jobs.wait(timeout=5.0):
                log.warning("stopping with scheduled jobs still running: they are cancelled")
            self.scheduler.shutdown(wait=False)
            # shutdown cancels what still runs without awaiting it: let the cancelled jobs unwind (and roll
            # back their transactions) before the database engine is disposed under them, or a job's open
            # SQLite write transaction outlives this app and the next process waits out the busy timeout.
            await self.running_jobs.wait(timeout=5.0)
        await self.delivery.stop()
        await self.broadcasts.close()
        await self.originals.stop()
        await self.favourites.stop()
        for provider in self.providers:
            await provider.aclose()
        if self._redis is not None:
            await self._redis.aclose()
        if self._runner is not None:
            await self._runner.cleanup()
        await self.dispatcher.storage.close()
        await self.bot.session.close()
        await self.files.aclose()
        if self.faces is not None:
            self.faces.close()
        if self.yookassa is not None:
            await self.yookassa.aclose()
        with contextlib.suppress(Exception):
            await self.registry.unregister()
        await self.db_engine.dispose()
        log.info("PinGlass stopped")

    async def run_until_signalled(self) -> int:
        """Run until SIGTERM/SIGINT or a fatal start-up problem; the process's exit code."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stop_requested.set)
        await self.start()
        try:
            await self.stop_requested.wait()
        finally:
            await self.stop()
        return self.exit_code


async def _first_of(*waits: Coroutine[Any, Any, Any]) -> None:
    """Wait until the first of ``waits`` is done; the others are cancelled."""
    tasks = [asyncio.ensure_future(wait) for wait in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


def configure_logging(settings: Settings, stream: IO[str] | None = None) -> logging.Handler:
    """Structured lines (``LOG_FORMAT``) with every configured secret redacted; see bot.logging_setup."""
    return setup_logging(
        settings.LOG_LEVEL, log_format=settings.LOG_FORMAT, secrets=settings.secret_values(), stream=stream
    )
