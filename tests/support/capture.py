"""A capture of what a fake outside service posts: not a stand-in for any endpoint of ours.

The fakes of Kie, Replicate and Telegram send their callbacks, webhooks and updates over HTTP, so they
need somewhere to send them. Tests of the provider clients (and of the fakes themselves) point them at
an ``OutgoingRequestCapture``: it keeps each request exactly as it arrived (path, headers, raw body)
and answers with a status the test scripted. It runs none of PinGlass's logic — no verification, no
re-fetch, no storing: the tests hand what it captured to the code they test (``parse_callback``...).
What our web app does with such a request is tested against the real app (tests/integration/
test_engine_faults.py and the other engine tests).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Self

from aiohttp import web
from multidict import CIMultiDictProxy


@dataclass(frozen=True, slots=True)
class CapturedRequest:
    path: str
    headers: CIMultiDictProxy[str]  # case-insensitive, as a web framework hands them over
    body: bytes
    answered: int  # the status the capture answered with


class OutgoingRequestCapture:
    """Records every POST a fake sends to ``url`` and answers it with the next scripted status.

    ``answers``: statuses for the first requests, in order; every later one gets ``then`` (200 unless
    told). A fake that retries on a non-2xx answer can so be made to retry without any logic here.
    """

    def __init__(self, answers: Iterable[int] = (), *, then: int = 200) -> None:
        self.requests: list[CapturedRequest] = []
        self._answers = list(answers)
        self._then = then
        self._arrived = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_post("/{path:.*}", self._capture)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}/captured"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def wait_for(self, count: int, within_seconds: float = 30.0) -> list[CapturedRequest]:
        """Until ``count`` requests have arrived (TimeoutError after ``within_seconds``); returns them all."""
        async with asyncio.timeout(within_seconds), self._arrived:
            await self._arrived.wait_for(lambda: len(self.requests) >= count)
        return list(self.requests)

    async def _capture(self, request: web.Request) -> web.Response:
        status = self._answers.pop(0) if self._answers else self._then
        self.requests.append(CapturedRequest(request.path, request.headers, await request.read(), status))
        async with self._arrived:
            self._arrived.notify_all()
        return web.Response(status=status)


__all__ = ["CapturedRequest", "OutgoingRequestCapture"]
