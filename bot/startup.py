"""Start-up that explains itself: one bot per database without Redis, and Telegram reached patiently.

Every refusal and every failure here is one log line (or one stderr line) for the operator, never a
traceback: a wrong token, an unreachable Telegram, a second bot process that would split the state.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta

from aiogram import Bot, Dispatcher
from aiogram.exceptions import TelegramNetworkError, TelegramServerError, TelegramUnauthorizedError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage import heartbeats
from storage.models import utcnow

log = logging.getLogger("pinglass")

HEARTBEAT_SECONDS = 5.0
# A bot whose row has not been touched for this long is gone (killed, or its host died).
HEARTBEAT_SILENCE = timedelta(seconds=HEARTBEAT_SECONDS * 4)
WEBHOOK_MARKER = "telegram_webhook"
# Exit codes of `python -m bot` besides 0 and 2 (bad settings).
EXIT_REFUSED = 3
EXIT_TOKEN_REJECTED = 4


# The first getMe waits at most this long: a black-holed network must not hold the start back.
PROBE_TIMEOUT_SECONDS = 10


class StartRefused(Exception):
    """This process must not run; the message is the one line the operator reads."""

    exit_code = EXIT_REFUSED


class TokenRejected(StartRefused):
    exit_code = EXIT_TOKEN_REJECTED


@dataclass
class ProcessRegistry:
    """Heartbeat rows in the database: how a second bot process without Redis is noticed and refused."""

    sessionmaker: async_sessionmaker[AsyncSession]
    instance_id: str
    role: str
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)

    async def register(self, *, alone: bool) -> None:
        """Beat once; with ``alone``, refuse when an older bot process is alive on this database."""
        now = utcnow()
        async with self.sessionmaker() as session:
            await heartbeats.beat(
                session, instance_id=self.instance_id, role=self.role, host=self.host, pid=self.pid, now=now
            )
            await session.commit()
            if not alone:
                return
            others = [
                row
                for row in await heartbeats.live_processes(session, self.role, now - HEARTBEAT_SILENCE)
                if row.instance_id != self.instance_id and not self._earlier_life_of_this_host(row.host, row.pid)
            ]
        # Of two bots starting together, the one registered first stays; the later one gives way.
        if others and (others[0].started_at, others[0].instance_id) < (now, self.instance_id):
            await self.unregister()
            other = others[0]
            raise StartRefused(
                f"another bot process ({other.host}, pid {other.pid}) runs on this database without REDIS_URL; "
                "set REDIS_URL on every process to run several bots, or run `python -m scheduler` beside one bot "
                f"(a stopped process is forgotten {int(HEARTBEAT_SILENCE.total_seconds())} s after its last beat)"
            )

    async def beat(self) -> None:
        try:
            async with self.sessionmaker() as session:
                await heartbeats.beat(
                    session, instance_id=self.instance_id, role=self.role, host=self.host, pid=self.pid, now=utcnow()
                )
                await session.commit()
        except Exception as error:  # the next beat tries again; /healthz reports the database
            log.warning("process heartbeat failed: %s", error)

    async def unregister(self) -> None:
        async with self.sessionmaker() as session:
            await heartbeats.forget(session, self.instance_id)
            await session.commit()

    def _earlier_life_of_this_host(self, host: str, pid: int) -> bool:
        """A row from this machine whose process is gone (or is us, restarted as the same pid in a container)."""
        if host != self.host:
            return False
        if pid == self.pid:
            return True
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False


def webhook_fingerprint(url: str, secret: str, allowed_updates: list[str]) -> str:
    text = "\n".join([url, secret, ",".join(sorted(allowed_updates))])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass
class TelegramLink:
    """Reach Telegram at start, then receive updates; retried in the background (the web app and the
    scheduler run meanwhile, /healthz reports it).

    Unreachable: one line per attempt, with the URL and the cause, and a growing pause. A token that
    Telegram rejects: one line and a non-zero exit (``TokenRejected`` from the probe, ``on_fatal`` later)."""

    bot: Bot
    api_url: str
    on_fatal: Callable[[int], None]
    # Built after the probe, once the database is up.
    dispatcher: Dispatcher | None = None
    sessionmaker: async_sessionmaker[AsyncSession] | None = None
    first_delay: float = 1.0
    max_delay: float = 60.0
    ok: bool = False
    error: str | None = None
    username: str | None = None
    attempt: int = 1
    # Set once the first attempt has ended either way: start-up waits for it, never for the retries.
    first_attempt_done: asyncio.Event = field(default_factory=asyncio.Event)

    def health(self) -> dict[str, object]:
        return {"telegram": {"ok": self.ok, "error": self.error, "bot": self.username}}

    async def probe(self) -> None:
        """The first getMe, before anything else starts: a rejected token ends the start right here;
        an unreachable Telegram is the first line of the retries that ``run`` goes on with."""
        try:
            me = await self.bot.get_me(request_timeout=PROBE_TIMEOUT_SECONDS)
        except TelegramUnauthorizedError:
            raise TokenRejected(self._rejected()) from None
        except (TelegramNetworkError, TelegramServerError, OSError) as error:
            self._unreachable(error, self.first_delay)
            return
        self.username = me.username

    async def run(self, receive: Callable[[list[str]], Awaitable[None]]) -> None:
        """Check the token, then ``receive`` (set the webhook or start polling); retried until it succeeds."""
        try:
            await self._attempts(receive)
        finally:
            self.first_attempt_done.set()

    async def _attempts(self, receive: Callable[[list[str]], Awaitable[None]]) -> None:
        delay = self.first_delay
        if self.attempt > 1:  # the probe failed and said so
            self.first_attempt_done.set()
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.max_delay)
        while True:
            try:
                me = await self.bot.me()
                self.username = me.username
                assert self.dispatcher is not None
                await receive(self.dispatcher.resolve_used_update_types())
            except TelegramUnauthorizedError:  # revoked while we were retrying
                self.ok, self.error = False, "token rejected"
                log.error("%s", self._rejected())
                self.on_fatal(EXIT_TOKEN_REJECTED)
                return
            except (TelegramNetworkError, TelegramServerError, OSError) as error:
                self._unreachable(error, delay)
                self.first_attempt_done.set()
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_delay)
                continue
            self.ok, self.error = True, None
            if self.attempt > 1:
                log.info("Telegram is reachable again at %s (attempt %s)", self.api_url, self.attempt)
            return

    def _unreachable(self, error: BaseException, retry_in: float) -> None:
        self.ok, self.error = False, _cause(error)
        log.warning(
            "Telegram is unreachable at %s: %s; attempt %s, retrying in %.0f s",
            self.api_url,
            self.error,
            self.attempt,
            retry_in,
        )
        self.attempt += 1

    def _rejected(self) -> str:
        return f"Telegram rejected BOT_TOKEN (401 Unauthorized at {self.api_url}): check the token from @BotFather"

    async def register_webhook(self, url: str, secret: str, allowed_updates: list[str]) -> None:
        """One process per deploy sets the webhook; the others only check that it points at them."""
        assert self.sessionmaker is not None
        async with self.sessionmaker() as session:
            first = await heartbeats.replace_marker(
                session, WEBHOOK_MARKER, webhook_fingerprint(url, secret, allowed_updates)
            )
            await session.commit()
        if not first:
            info = await self.bot.get_webhook_info()
            if info.url == url and sorted(info.allowed_updates or []) == sorted(allowed_updates):
                log.info("Telegram webhook already set to %s by another process of this deploy", url)
                return
            log.warning("Telegram webhook is %r, not %s: setting it", info.url, url)
        await self.bot.set_webhook(
            url=url, secret_token=secret, allowed_updates=allowed_updates, drop_pending_updates=False
        )


def _cause(error: BaseException) -> str:
    """The innermost reason in one line ("ClientConnectorDNSError: Cannot connect to host ...")."""
    inner: BaseException = error
    while inner.__cause__ is not None:
        inner = inner.__cause__
    text = str(getattr(error, "message", "") or error).replace("HTTP Client says - ", "")
    if inner is not error:
        text = f"{type(inner).__name__}: {inner}"
    return " ".join(text.split())[:300]
