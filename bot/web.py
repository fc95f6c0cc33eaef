"""The aiohttp web app: health, metrics, and the endpoints outside services call."""

from __future__ import annotations

import functools
import logging
import mimetypes
from collections.abc import Awaitable, Callable, Iterable, Mapping

from aiogram.types import Update
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.observability import Heartbeat, Metrics, database_reachable
from providers.jsonbody import MAX_BODY_BYTES as JSON_MAX_BODY_BYTES
from providers.jsonbody import MalformedJson, load_json, load_json_object, same_text
from storage.files import FileNotFoundInStore, FileStore, SignedFileUrls
from studio.policy import BreakerState

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

TELEGRAM_WEBHOOK_PATH = "/telegram/webhook"
YOOKASSA_PATH = "/payments/yookassa"
KIE_CALLBACK_PATH = "/providers/kie/callback"
REPLICATE_WEBHOOK_PATH = "/providers/replicate/webhook"
SELFHOSTED_WEBHOOK_PATH = "/providers/selfhosted/webhook"
SIGNED_FILES_PATH = "/files/{key:.+}"
# Bigger bodies are refused by aiohttp itself (413) before anything reads them.
MAX_BODY_BYTES = JSON_MAX_BODY_BYTES
TELEGRAM_SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


def _check_telegram_update(raw: bytes) -> None:
    # aiogram would raise from inside its handler (a 500 with a traceback) on a bad body.
    try:
        Update.model_validate(load_json_object(raw), context={})
    except ValidationError as error:
        raise MalformedJson(f"not a Telegram update: {error.error_count()} errors") from None


def _check_json(raw: bytes) -> None:
    load_json(raw)


# Every body an outside caller sends is checked here first, so a handler only ever sees JSON of
# bounded size and depth: whatever a stranger sends is a 4xx, never a 500.
_BODY_CHECKS: dict[str, Callable[[bytes], None]] = {
    TELEGRAM_WEBHOOK_PATH: _check_telegram_update,
    YOOKASSA_PATH: _check_json,
    KIE_CALLBACK_PATH: _check_json,
    REPLICATE_WEBHOOK_PATH: _check_json,
    SELFHOSTED_WEBHOOK_PATH: _check_json,
}


@web.middleware
async def refuse_malformed_bodies(request: web.Request, handler: Handler) -> web.StreamResponse:
    check = _BODY_CHECKS.get(request.path) if request.method == "POST" else None
    if check is None or request.match_info.http_exception is not None:  # not routed here: 404/405
        return await handler(request)
    secret = request.headers.get(TELEGRAM_SECRET_HEADER)
    if request.path == TELEGRAM_WEBHOOK_PATH and secret is not None and not secret.isascii():
        # aiogram compares with secrets.compare_digest, which raises on non-ASCII text.
        return web.json_response({"error": "unauthorized"}, status=401)
    try:
        check(await request.read())
    except MalformedJson as error:
        return web.json_response({"error": str(error)}, status=400)
    return await handler(request)


def build_web_app(
    *,
    db_engine: AsyncEngine,
    heartbeat: Heartbeat,
    metrics: Metrics,
    extra_checks: Callable[[], dict[str, object]] | None = None,
    sessionmaker: async_sessionmaker[AsyncSession] | None = None,
    breaker_states: Callable[[], Mapping[str, str]] | None = None,
    paused_providers: Callable[[], Iterable[str]] | None = None,
    metrics_token: str = "",
) -> web.Application:
    """/healthz is 503 when the database is unreachable, the scheduler's heartbeat is stale, or
    every configured image provider's breaker is open (no new portrait can start anywhere; a
    half-open breaker is probing, so it still counts as able). Paused providers are an admin's
    choice, reported but not unhealthy; no provider configured at all is not unhealthy either.

    With ``metrics_token`` set, /metrics and the detail of /healthz need ``Authorization: Bearer
    <token>``; without it /healthz still answers the plain status (and 200/503) for load balancers."""
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[refuse_malformed_bodies])

    def authorized(request: web.Request) -> bool:
        if not metrics_token:
            return True
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and same_text(token.strip(), metrics_token)

    async def healthz(request: web.Request) -> web.Response:
        db_ok, db_latency, db_error = await database_reachable(db_engine)
        age = heartbeat.age_seconds()
        scheduler_ok = heartbeat.healthy()
        body: dict[str, object] = {
            "database": {"ok": db_ok, "latency_ms": round(db_latency * 1000, 1), "error": db_error},
            "scheduler": {
                "ok": scheduler_ok,
                "heartbeat_age_seconds": None if age is None else round(age, 2),
            },
        }
        providers_ok = True
        if breaker_states is not None:
            breakers = dict(breaker_states())
            providers_ok = not breakers or any(state != BreakerState.OPEN for state in breakers.values())
            body["providers"] = {
                "ok": providers_ok,
                "breakers": breakers,
                "paused": sorted(paused_providers()) if paused_providers is not None else [],
            }
        if extra_checks is not None:
            body.update(extra_checks())
        healthy = db_ok and scheduler_ok and providers_ok
        body["status"] = "ok" if healthy else "unhealthy"
        if not authorized(request):
            body = {"status": body["status"]}
        return web.json_response(body, status=200 if healthy else 503)

    async def metrics_endpoint(request: web.Request) -> web.Response:
        if not authorized(request):
            return web.json_response(
                {"error": "unauthorized"}, status=401, headers={"WWW-Authenticate": 'Bearer realm="metrics"'}
            )
        if sessionmaker is not None:
            await metrics.refresh_state(sessionmaker, breaker_states() if breaker_states is not None else None)
        return web.Response(body=generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_endpoint)
    return app


def yookassa_notifications(
    *,
    sync: Callable[[str], Awaitable[object]],
    sync_refund: Callable[[str, str | None], Awaitable[object]] | None = None,
    trusted: Callable[[str], bool],
    client_address: Callable[[web.Request], str],
) -> Handler:
    """POST /payments/yookassa: trusted sources only; re-fetch by id, act, commit, then 200.

    YooKassa signs nothing, so the body is used only to learn *which* payment to re-fetch.
    Events we ignore get 200 (a 4xx would make YooKassa retry for a day); our failures get 500
    so that it does retry.
    """
    from providers.yookassa import BadNotification, parse_notification

    async def handle(request: web.Request) -> web.Response:
        address = client_address(request)
        if not trusted(address):
            log.warning("yookassa notification from untrusted address %s", address)
            return web.json_response({"error": "forbidden"}, status=403)
        try:
            notification = parse_notification(await request.read())
        except BadNotification as error:
            return web.json_response({"error": str(error)}, status=400)
        if notification.object_type == "refund" and sync_refund is not None:
            # refund.succeeded: re-fetch the refund, take the credits back
            act = functools.partial(sync_refund, notification.object_id, notification.payment_id)
        elif notification.object_type == "payment":
            act = functools.partial(sync, notification.object_id)
        else:
            return web.json_response({"status": "ignored"})
        try:
            await act()
        except Exception:
            log.exception("yookassa notification for %s failed", notification.object_id)
            return web.json_response({"error": "processing failed"}, status=500)
        return web.json_response({"status": "ok"})

    return handle


def signed_files(*, links: SignedFileUrls, files: FileStore, may_serve: Callable[[str], Awaitable[bool]]) -> Handler:
    """GET /files/{key}?exp=…&sig=…: a stored file for whoever holds a link we signed (a provider
    fetching a selfie), read through the configured store, local or S3.

    403 for a link we did not sign, one changed after signing, or one past its expiry; 404 for a
    key ``may_serve`` refuses (only selfies of jobs still in flight are served) or that is gone."""

    async def handle(request: web.Request) -> web.Response:
        key = request.match_info["key"]
        if not links.verify(key, request.query.get("exp", ""), request.query.get("sig", "")):
            return web.json_response({"error": "forbidden"}, status=403)
        if not await may_serve(key):
            return web.json_response({"error": "not found"}, status=404)
        try:
            data = await files.get(key)
        except FileNotFoundInStore:
            return web.json_response({"error": "not found"}, status=404)
        content_type = mimetypes.guess_type(key)[0] or "application/octet-stream"
        return web.Response(body=data, headers={"Content-Type": content_type, "Cache-Control": "no-store"})

    return handle
