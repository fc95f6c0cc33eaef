"""The aiohttp web app: health, metrics, and the endpoints outside services call."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.observability import Heartbeat, Metrics, database_reachable

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

TELEGRAM_WEBHOOK_PATH = "/telegram/webhook"
YOOKASSA_PATH = "/payments/yookassa"
KIE_CALLBACK_PATH = "/providers/kie/callback"
REPLICATE_WEBHOOK_PATH = "/providers/replicate/webhook"


def build_web_app(
    *,
    engine: AsyncEngine,
    heartbeat: Heartbeat,
    metrics: Metrics,
    extra_checks: Callable[[], dict[str, object]] | None = None,
) -> web.Application:
    app = web.Application(client_max_size=2 * 1024 * 1024)

    async def healthz(_request: web.Request) -> web.Response:
        db_ok, db_latency, db_error = await database_reachable(engine)
        age = heartbeat.age_seconds()
        scheduler_ok = heartbeat.healthy()
        body: dict[str, object] = {
            "database": {"ok": db_ok, "latency_ms": round(db_latency * 1000, 1), "error": db_error},
            "scheduler": {
                "ok": scheduler_ok,
                "heartbeat_age_seconds": None if age is None else round(age, 2),
            },
        }
        if extra_checks is not None:
            body.update(extra_checks())
        healthy = db_ok and scheduler_ok
        body["status"] = "ok" if healthy else "unhealthy"
        return web.json_response(body, status=200 if healthy else 503)

    async def metrics_endpoint(_request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_endpoint)
    return app
