"""Chaos suite: the real application (subprocesses) against the fakes, with faults, then the invariants.

Run: ``python -m bench.chaos [--only kills,kie,telegram,payments,two_processes,bad_input,money,fuzz] [--scale 1.0]
[--database-url postgresql+asyncpg://postgres@127.0.0.1:5432/postgres]``. ``make chaos`` runs them all.
Each scenario prints one line of figures and the invariant check (bench/chaos_invariants.py); the exit
status is non-zero when any invariant is broken. ``--scale`` shrinks the pack counts (the smoke test uses it).

1. kills — SIGKILL the application at random moments during 100 packs (at least 10 kills), restarting it.
2. kie — Kie.ai down for the whole run (everything goes to Replicate); then down for a window mid-run.
3. telegram — a third of sends answered 429, plus albums that fail part-way.
4. payments — card notifications duplicated ×10, reordered, lost; forged ones for unpaid orders; Stars
   payment messages delivered ×10.
5. two_processes — two processes on PostgreSQL (bot + scheduler) sharing the work; the scheduler is
   SIGKILLed mid-run and not restarted.
6. bad_input — the intake's bad-input corpus from 50 users at once while 20 packs are generated.
7. money — 50 buyers: card and Stars crossed on one order (both orders of events), notifications and
   Stars messages repeated, providers failing photos (partial packs), an admin's /refund (twice), and
   double taps on "use my credits" after a partial pack; ends with the money invariants
   (tests/ledger_check.py, through the same invariant check as every scenario).
8. fuzz — 3000 hypothesis-generated hostile requests to every HTTP endpoint of an idle app: no 5xx,
   no table changed, no call to any outside service.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from bench.chaos_invariants import Invariants, check_invariants
from bench.load import RESULTS, LoadOptions, Stack
from bench.users import SimUser
from storage.models import Avatar, GenerationJob, Payment, ReferencePhoto, User
from studio.states import JobStatus, PaymentStatus
from tests import image_corpus as corpus
from tests.endpoint_fuzz import fuzz, generate_cases, table_contents
from tests.fakes.telegram import FakeUser

Scenario = Callable[[LoadOptions, float], Awaitable[dict[str, Any]]]


async def finish(stack: Stack, outcomes: list[Any], figures: dict[str, Any], **check: Any) -> dict[str, Any]:
    """Wait for the work to end, stop the apps, check the invariants; the scenario's figures + verdict."""
    started = time.monotonic()
    paid = {outcome.telegram_id for outcome in outcomes if outcome.paid_at is not None}
    figures["all_finished"] = await stack.wait_jobs_done(len(paid), timeout=stack.options.deadline_seconds)
    figures["drain_seconds"] = round(time.monotonic() - started, 1)
    await stack.stop_apps()
    assert stack.sessionmaker is not None
    invariants: Invariants = await check_invariants(
        stack.sessionmaker, stack.telegram, stack.files_dir, paid=paid, **check
    )
    figures["invariants"] = invariants.line()
    figures["ok"] = invariants.ok and figures["all_finished"]
    figures["problems"] = invariants.problems[:20]
    figures["kie_429"] = stack.kie.rate_limited_count
    return figures


async def until(stack: Stack, predicate: Callable[[], bool], timeout: float = 300.0) -> None:  # noqa: ASYNC109
    """Until ``predicate`` holds (re-checked whenever the fake Kie sees a request, at least every 50 ms)."""
    await stack.kie.wait_for(predicate, within_seconds=timeout)


async def webhook_retries(stack: Stack) -> None:
    """Telegram keeps re-posting updates the webhook did not accept (the app was down); so does this."""
    while True:
        await asyncio.sleep(1.0)
        await stack.telegram.flush_webhook()


def last_webhook_status(stack: Stack, user_id: int) -> int | None:
    for delivery in reversed(stack.telegram.webhook_deliveries):
        payload = next((value for key, value in delivery.update.items() if key != "update_id"), {})
        if isinstance(payload, dict) and payload.get("from", {}).get("id") == user_id:
            return delivery.status
    return None


def _update_summary(update: dict[str, Any]) -> str:
    """A few words on what an update carried: command text, photo (and its album), button data."""
    if "callback_query" in update:
        return f"tap {update['callback_query'].get('data')}"
    message = next((value for key, value in update.items() if key != "update_id"), {})
    if not isinstance(message, dict):
        return "?"
    if "photo" in message:
        return f"photo #{message.get('message_id')} album {str(message.get('media_group_id', '-'))[-4:]}"
    return str(message.get("text") or next(iter(message), "?"))[:30]


def stalled_trace(stack: Stack, user_id: int, kills_at: list[float], limit: int = 60) -> list[str]:
    """One stalled user's story, in time order: kills, webhook POSTs of their updates, the bot's messages.

    The POSTs of an update that failed (no process, or none answering within the fake's 60 s) before one
    was answered are folded into one line.
    """
    events: list[tuple[float, str]] = [(at, "KILL") for at in kills_at]
    refused: dict[int, list[float]] = {}
    for delivery in stack.telegram.webhook_deliveries:
        payload = next((value for key, value in delivery.update.items() if key != "update_id"), {})
        if not (isinstance(payload, dict) and payload.get("from", {}).get("id") == user_id):
            continue
        update_id, what = delivery.update["update_id"], _update_summary(delivery.update)
        if delivery.status is None:
            refused.setdefault(update_id, []).append(delivery.posted_at)
            continue
        if update_id in refused:
            times = refused.pop(update_id)
            span = times[-1] - times[0]
            events.append((times[0], f"post u{update_id} {what}: failed x{len(times)} over {span:.1f} s"))
        events.append((delivery.posted_at, f"post u{update_id} {what}"))
        events.append((delivery.answered_at, f"  -> {delivery.status} u{update_id}"))
    for update_id, times in refused.items():
        span = times[-1] - times[0]
        events.append((times[0], f"post u{update_id}: failed x{len(times)} over {span:.1f} s, never taken"))
    for message in stack.telegram.chat_messages(user_id):
        if message.from_bot:
            buttons = ",".join(button.get("text", "")[:12] for button in message.buttons)
            events.append((message.sent_at, f"bot: {message.content[:60]!r} [{buttons}]"))
    mine = [at for at, text in events if text != "KILL"]
    if not mine:
        return []
    start, end = min(mine), max(mine)
    events = [(at, text) for at, text in events if text != "KILL" or start - 2 <= at <= end + 5]
    return [f"{at - start:7.2f} {text}" for at, text in sorted(events)][-limit:]


async def photo_sets(stack: Stack, telegram_id: int) -> str:
    """The user's selfie sets: id, status and photo count of each."""
    assert stack.sessionmaker is not None
    async with stack.sessionmaker() as session:
        rows = await session.execute(
            select(Avatar.id, Avatar.status, func.count(ReferencePhoto.id))
            .join(User, User.id == Avatar.user_id)
            .outerjoin(ReferencePhoto, ReferencePhoto.avatar_id == Avatar.id)
            .where(User.telegram_id == telegram_id)
            .group_by(Avatar.id, Avatar.status)
            .order_by(Avatar.id)
        )
        return "; ".join(f"set {row[0]} {row[1]} {row[2]} photos" for row in rows) or "no sets"


def paid_users(outcomes: list[Any]) -> int:
    return sum(1 for outcome in outcomes if outcome.paid_at is not None)


def errors(outcomes: list[Any]) -> list[str]:
    return sorted({outcome.error for outcome in outcomes if outcome.error})[:3]


# ---------------------------------------------------------------------- 1. kills


async def kills(options: LoadOptions, scale: float) -> dict[str, Any]:
    packs, wanted_kills = max(4, round(100 * scale)), max(3, round(10 * min(1.0, scale * 2)))
    rng = random.Random(options.seed)
    async with Stack(replace(options, packs=packs)) as stack:
        app = stack.apps[0]
        outcomes_task = asyncio.create_task(stack.run_users(stack.users(packs)))
        redeliver = asyncio.create_task(webhook_retries(stack))
        # Kills start once the first pack is paid and go on through intake, payments, generation and delivery.
        await until(stack, lambda: bool(stack.kie.tasks) or outcomes_task.done())
        kills_at: list[float] = []
        while app.kills < wanted_kills:
            await asyncio.sleep(rng.uniform(0.5, 4.0))
            kills_at.append(time.monotonic())
            await asyncio.to_thread(app.kill)
            await asyncio.sleep(rng.uniform(0.0, 0.5))
            await app.start()
        outcomes = await outcomes_task
        redeliver.cancel()
        stalled = {outcome.telegram_id for outcome in outcomes if outcome.error}
        figures = {
            "packs": paid_users(outcomes),
            "kills": app.kills,
            "users_stalled": len(stalled),
            # Why a conversation stalled: its last update was accepted (HTTP 200) by a process that died
            # before handling it, or it never got through at all.
            "stalled_last_update_acknowledged": sum(
                1 for user_id in stalled if last_webhook_status(stack, user_id) == 200
            ),
            # The last step each stalled user completed: where in the conversation the kills hurt.
            "stalled_after_step": dict(
                Counter(outcome.steps[-1] if outcome.steps else "none" for outcome in outcomes if outcome.error)
            ),
            "user_errors": errors(outcomes),
        }
        result = await finish(stack, outcomes, figures)
        # Printed with the problems (not in the one-line summary): what each of a few stalled users saw.
        # Those who stalled furthest along first: a user who never got past /start says little.
        steps = {outcome.telegram_id: len(outcome.steps) for outcome in outcomes}
        for user_id in sorted(stalled, key=lambda user_id: (-steps[user_id], user_id))[:4]:
            result["problems"].append(f"stalled user {user_id}: {await photo_sets(stack, user_id)}")
            trace = stalled_trace(stack, user_id, kills_at)
            result["problems"] += [f"stalled user {user_id}: {line}" for line in trace]
        return result


# ---------------------------------------------------------------------- 2. Kie.ai outages


async def kie_down(options: LoadOptions, scale: float) -> dict[str, Any]:
    packs = max(3, round(20 * scale))
    results: dict[str, Any] = {}
    async with Stack(replace(options, packs=packs)) as stack:
        stack.kie.outage = True
        outcomes = await stack.run_users(stack.users(packs))
        figures = {"packs": paid_users(outcomes), "user_errors": errors(outcomes)}
        results["whole_run"] = await finish(stack, outcomes, figures)
        results["whole_run"]["replicate_creates"] = len(stack.replicate.creates)
        results["whole_run"]["kie_creates"] = len(stack.kie.tasks)
    async with Stack(replace(options, packs=packs, seed=options.seed + 1)) as stack:
        outcomes_task = asyncio.create_task(stack.run_users(stack.users(packs)))
        await until(stack, lambda: len(stack.kie.tasks) >= 20 or outcomes_task.done())
        stack.kie.outage = True
        window = max(3.0, 300 * options.time_factor)  # a 5-minute outage, time-compressed
        await asyncio.sleep(window)
        stack.kie.outage = False
        outcomes = await outcomes_task
        figures = {"packs": paid_users(outcomes), "outage_seconds": window, "user_errors": errors(outcomes)}
        results["window"] = await finish(stack, outcomes, figures)
        results["window"]["replicate_creates"] = len(stack.replicate.creates)
        results["window"]["kie_creates"] = len(stack.kie.tasks)
    results["ok"] = results["whole_run"]["ok"] and results["window"]["ok"]
    return results


# ---------------------------------------------------------------------- 3. Telegram 429s and broken albums


async def telegram_faults(options: LoadOptions, scale: float) -> dict[str, Any]:
    packs = max(3, round(20 * scale))
    async with Stack(replace(options, packs=packs)) as stack:
        rules = [
            stack.telegram.inject(method, status=429, every=3, retry_after=1)
            for method in ("sendMessage", "sendPhoto", "sendMediaGroup", "editMessageText")
        ]
        # Albums that deliver their first items and then fail with flood control, for a quarter of the packs.
        rng = random.Random(options.seed)
        failures = [
            stack.telegram.inject_album_failure(rng.randint(2, 9), retry_after=1) for _ in range(max(1, packs // 4))
        ]
        outcomes = await stack.run_users(stack.users(packs))
        figures = {"packs": paid_users(outcomes), "user_errors": errors(outcomes)}
        result = await finish(stack, outcomes, figures)
        result["injected_429"] = sum(rule.fired for rule in rules)
        result["partial_albums"] = sum(failure.fired for failure in failures)
        return result


# ---------------------------------------------------------------------- 4. payment notifications


async def payments(options: LoadOptions, scale: float) -> dict[str, Any]:
    packs = max(8, round(40 * scale))
    async with Stack(replace(options, packs=packs)) as stack:
        users = stack.users(packs)
        notices = ["duplicated", "reordered", "lost", "normal"]
        card_users = [position for position, user in enumerate(users) if user.outcome.method == "card"]
        card_index = {position: index for index, position in enumerate(card_users)}

        async def buy(position: int, user: SimUser) -> Any:
            await asyncio.sleep(position * 0.05)
            if user.outcome.method == "stars":
                return await user.buy(stars_repeats=10)
            return await user.buy(notice=notices[card_index[position] % len(notices)])  # type: ignore[arg-type]

        outcomes = list(await asyncio.gather(*(buy(position, user) for position, user in enumerate(users))))
        # Forgers: reach the card payment, never pay, and post a forged "succeeded" notification.
        forgers = [
            SimUser(stack.telegram, stack.kassa, index=10_000 + i, method="card") for i in range(max(2, packs // 8))
        ]
        forged_statuses = []
        for forger in forgers:
            await forger.to_summary()
            await forger.choose_method()
            forged_statuses.append(await stack.kassa.send_forged(forger.card_payment_id()))
        figures = {
            "packs": paid_users(outcomes),
            "card_notices": {
                notice: sum(1 for index in card_index.values() if notices[index % len(notices)] == notice)
                for notice in notices
            },
            "stars_repeated_x10": sum(1 for u in users if u.outcome.method == "stars"),
            "forged": len(forgers),
            "forged_answers": sorted(set(forged_statuses)),
            "user_errors": errors(outcomes),
        }
        return await finish(stack, outcomes, figures, must_not_pay={f.user.id for f in forgers})


# ---------------------------------------------------------------------- 5. two processes on PostgreSQL


def postgres_base_url(options: LoadOptions) -> str | None:
    if options.database_url and options.database_url.startswith("postgresql"):
        return options.database_url
    return os.environ.get("BENCH_DATABASE_URL") or os.environ.get("TEST_DATABASE_URL") or None


async def two_processes(options: LoadOptions, scale: float) -> dict[str, Any]:
    base = postgres_base_url(options)
    if base is None:
        return {"skipped": "needs PostgreSQL: --database-url or TEST_DATABASE_URL", "ok": True}
    packs = max(4, round(40 * scale))
    redis = os.environ.get("BENCH_REDIS_URL") or os.environ.get("TEST_REDIS_URL")
    extra = {"REDIS_URL": redis} if redis else {}
    async with Stack(replace(options, packs=packs, database_url=base), processes=2, extra_env=extra) as stack:
        outcomes_task = asyncio.create_task(stack.run_users(stack.users(packs)))
        # Kill the second process once it has done real work: mid-run, with tasks in flight.
        await until(stack, lambda: len(stack.kie.tasks) >= max(10, packs * 23 // 3))
        await asyncio.to_thread(stack.apps[1].kill)
        outcomes = await outcomes_task
        figures = {
            "packs": paid_users(outcomes),
            "killed": f"{stack.apps[1].module} after {len(stack.kie.tasks)} creates",
            "shared_limiter": "redis" if "REDIS_URL" in stack.apps[0].env else "none (per process)",
            "user_errors": errors(outcomes),
        }
        return await finish(stack, outcomes, figures)


# ---------------------------------------------------------------------- 6. bad input under load

BAD_FILES = [
    (corpus.text_as_jpg, "notes.jpg", "image/jpeg"),
    (corpus.truncated_jpeg, "cut.jpg", "image/jpeg"),
    (corpus.corrupt_png, "broken.png", "image/png"),
    (corpus.tiny_png, "pixel.png", "image/png"),
    (corpus.bomb_png, "bomb.png", "image/png"),
    (corpus.animated_gif, "funny.gif", "image/gif"),
    (corpus.animated_webp, "funny.webp", "image/webp"),
]


async def send_bad_inputs(stack: Stack, user: FakeUser, answered: list[int], timeout: float) -> None:  # noqa: ASYNC109
    """The intake corpus from one user; ``answered`` counts the inputs that got their answer."""
    telegram = stack.telegram
    await user.send_command("/start")
    await user.wait_reply(lambda m: any("New photo session" in b.get("text", "") for b in m.buttons), timeout=timeout)
    await user.click("New photo session")
    await user.wait_reply(timeout=timeout)
    sends: list[Callable[[], Awaitable[Any]]] = [
        user.send_sticker,
        user.send_video,
        user.send_voice,
        lambda: user.send_text("here are my photos"),
        lambda: user.send_document(b"%PDF-1.7\n%fake pdf", "passport.pdf", "application/pdf"),
        lambda: user.send_photo(corpus.small_jpeg()),
        lambda: user.send_document(corpus.valid_jpeg(), "huge.jpg", "image/jpeg", file_size=25 * 2**20),
    ]
    sends += [
        lambda make=make, name=name, mime=mime: user.send_document(make(), name, mime) for make, name, mime in BAD_FILES
    ]
    for send in sends:
        await send()
        await user.wait_reply(timeout=timeout)
        answered[0] += 1
    # A forged button for an order that is not theirs: answered as a callback query, nothing else.
    last = telegram.chat_messages(user.id)[-1]
    query_id = await user.press_button(last.message_id, "o:999999:pay")
    await telegram.wait_for(
        lambda call: call.method == "answerCallbackQuery" and str(call.params.get("callback_query_id")) == query_id,
        timeout=timeout,
    )
    answered[0] += 1


async def bad_input(options: LoadOptions, scale: float) -> dict[str, Any]:
    packs, bad_users = max(3, round(20 * scale)), max(5, round(50 * scale))
    async with Stack(replace(options, packs=packs)) as stack:
        buyers = asyncio.create_task(stack.run_users(stack.users(packs)))
        await until(stack, lambda: bool(stack.kie.tasks) or buyers.done())
        intruders = [stack.telegram.user(language_code="en") for _ in range(bad_users)]
        answered = [0]
        answers = await asyncio.gather(
            *(send_bad_inputs(stack, user, answered, 60.0) for user in intruders), return_exceptions=True
        )
        outcomes = await buyers
        sent = bad_users * (8 + len(BAD_FILES))
        figures = {
            "packs": paid_users(outcomes),
            "bad_users": bad_users,
            "bad_inputs_answered": f"{answered[0]}/{sent}",
            "bad_input_errors": sorted(
                {f"{type(a).__name__}: {a}"[:120] for a in answers if isinstance(a, BaseException)}
            ),
            "user_errors": errors(outcomes),
        }
        bad_ids = {u.id for u in intruders}
        result = await finish(stack, outcomes, figures, must_not_pay=bad_ids, must_have_nothing=bad_ids)
        result["ok"] = result["ok"] and answered[0] == sent
        return result


# ---------------------------------------------------------------------- 7. money

MONEY_ADMIN_ID = 990_000_001
MONEY_KINDS = ("plain", "card_then_stars", "stars_then_card", "repeated", "refunded", "double_tap")


async def pay_card_then_stars(user: SimUser) -> None:
    """Both ways open on one order; Stars goes through first, then the card payment succeeds too."""
    await user.to_summary()
    user.outcome.method = "card"
    await user.choose_method()
    user.outcome.method = "stars"
    await user.choose_method()
    await user.pay_stars()
    user.outcome.method = "card"
    await user.pay_card()


async def pay_stars_then_card(user: SimUser) -> None:
    """Telegram approved the Stars checkout, the card payment succeeds meanwhile, then Stars arrive."""
    await user.to_summary()
    user.outcome.method = "stars"
    await user.choose_method()
    user.outcome.method = "card"
    await user.choose_method()
    invoice_message = [m for m in user.telegram.chat_messages(user.user.id) if m.kind == "invoice"][-1]
    invoice, payload = invoice_message.raw["invoice"], invoice_message.invoice_payload or ""
    query = await user.user.pre_checkout(payload, invoice["currency"], invoice["total_amount"])
    query_id = query["pre_checkout_query"]["id"]
    await user.telegram.wait_for(
        lambda call: (
            call.method == "answerPreCheckoutQuery" and str(call.params.get("pre_checkout_query_id")) == query_id
        ),
        timeout=user.reply_timeout,
    )
    await user.pay_card()
    charge = f"stxCROSS{user.user.id}x{user.outcome.order_id}"
    await user.user.successful_payment(payload, invoice["currency"], invoice["total_amount"], charge)


async def money_buy(position: int, user: SimUser, kind: str) -> Any:
    await asyncio.sleep(position * 0.05)
    try:
        if kind == "card_then_stars":
            await pay_card_then_stars(user)
        elif kind == "stars_then_card":
            await pay_stars_then_card(user)
        elif kind == "repeated":
            return await user.buy(notice="duplicated", stars_repeats=5)
        else:
            return await user.buy()
        user.outcome.steps.append("paid")
    except Exception as error:  # recorded; the invariants decide whether it matters
        user.outcome.error = f"{type(error).__name__}: {error}"[:300]
    return user.outcome


async def payment_ids_of(stack: Stack, telegram_ids: set[int]) -> list[int]:
    assert stack.sessionmaker is not None
    async with stack.sessionmaker() as session:
        rows = await session.execute(
            select(Payment.id)
            .join(User, User.id == Payment.user_id)
            .where(User.telegram_id.in_(telegram_ids), Payment.status == PaymentStatus.SUCCEEDED)
        )
        return list(rows.scalars())


async def jobs_with_returned_credits(stack: Stack, telegram_ids: set[int]) -> list[tuple[int, int]]:
    """(Telegram id, job id) of finished packs that returned credits."""
    assert stack.sessionmaker is not None
    async with stack.sessionmaker() as session:
        rows = await session.execute(
            select(User.telegram_id, GenerationJob.id)
            .join(User, User.id == GenerationJob.user_id)
            .where(
                User.telegram_id.in_(telegram_ids),
                GenerationJob.photos_failed > 0,
                GenerationJob.status.in_([JobStatus.PARTIAL, JobStatus.FAILED]),
            )
        )
        return [(int(telegram_id), int(job_id)) for telegram_id, job_id in rows.all()]


async def money(options: LoadOptions, scale: float) -> dict[str, Any]:
    people = max(len(MONEY_KINDS), round(50 * scale))
    settings = replace(options, packs=people, pack_photos=7)
    async with Stack(settings, extra_env={"ADMIN_IDS": str(MONEY_ADMIN_ID)}) as stack:
        # Photos that fail on both providers are skipped and credited back: partial packs.
        stack.kie.fail_rate, stack.replicate.fail_rate = 0.8, 0.8
        users = stack.users(people)
        kinds = {user.user.id: MONEY_KINDS[position % len(MONEY_KINDS)] for position, user in enumerate(users)}
        outcomes = list(
            await asyncio.gather(*(money_buy(p, user, kinds[user.user.id]) for p, user in enumerate(users)))
        )
        admin = stack.telegram.user(user_id=MONEY_ADMIN_ID, language_code="en")
        refunded = await payment_ids_of(stack, {tid for tid, kind in kinds.items() if kind == "refunded"})
        for payment_id in refunded:
            for _ in range(2):  # a repeated /refund refunds once
                await admin.send_command("/refund", str(payment_id))
                await admin.wait_reply(timeout=60.0)
        paid = {outcome.telegram_id for outcome in outcomes if outcome.paid_at is not None}
        drained = await stack.wait_jobs_done(len(paid), timeout=stack.options.deadline_seconds)
        tappers = {tid for tid, kind in kinds.items() if kind == "double_tap"}
        taps = 0
        for telegram_id, job_id in await jobs_with_returned_credits(stack, tappers):
            fake = stack.telegram.user(user_id=telegram_id)
            last = stack.telegram.chat_messages(telegram_id)[-1]
            queries = await asyncio.gather(
                *(fake.press_button(last.message_id, f"r:{job_id}:credits") for _ in range(2))
            )
            for query_id in queries:
                await stack.telegram.wait_for(
                    lambda call, q=query_id: (
                        call.method == "answerCallbackQuery" and str(call.params.get("callback_query_id")) == q
                    ),
                    timeout=60.0,
                )
            taps += 1
        figures = {
            "people": people,
            "packs": paid_users(outcomes),
            "kinds": {kind: sum(1 for k in kinds.values() if k == kind) for kind in MONEY_KINDS},
            "refunds": len(refunded),
            "double_taps": taps,
            "drained_before_taps": drained,
            "user_errors": errors(outcomes),
        }
        # A user who spent returned credits rightly has a second job: the money checks cover them.
        spent = {telegram_id for telegram_id, _job in await jobs_with_returned_credits(stack, tappers)}
        kept = [outcome for outcome in outcomes if outcome.telegram_id not in spent]
        result = await finish(stack, kept, figures)
        return result


async def fuzz_endpoints(options: LoadOptions, scale: float) -> dict[str, Any]:
    """Hypothesis-generated hostile requests to every endpoint of an idle app: no 5xx, no table changed,
    no call out (tests/endpoint_fuzz.py; the test suite sends a bounded number, this many more)."""
    examples = max(200, round(3000 * scale))
    cases = await asyncio.to_thread(generate_cases, examples, "bench-webhook-secret")
    async with Stack(replace(options, packs=0)) as stack:
        assert stack.sessionmaker is not None
        await asyncio.sleep(2.0)  # start-up calls (setWebhook, ...) are over
        before, calls_before = await table_contents(stack.sessionmaker), outbound(stack)
        report = await fuzz(stack.apps[0].port, cases)
        await asyncio.sleep(1.0)
        after, calls_after = await table_contents(stack.sessionmaker), outbound(stack)
        changed = sorted(name for name in before if before[name] != after.get(name))
        return {
            "ok": not report.server_errors and not changed and calls_before == calls_after,
            "requests": report.line(),
            "server_errors": [f"{case.path} {status} {case.body[:80]!r}" for case, status in report.server_errors[:5]],
            "tables_changed": changed,
            "outbound_calls": f"{calls_before} -> {calls_after}",
        }


# What the app asks on its own clock, whatever requests come: updates, and the reconcile jobs' lists.
CLOCKED_TELEGRAM_METHODS = {"getUpdates", "getWebhookInfo", "getStarTransactions"}
CLOCKED_YOOKASSA_ROUTES = {"GET /payments", "GET /refunds"}


def outbound(stack: Stack) -> tuple[int, ...]:
    """Calls the app made to Kie, Replicate, YooKassa and Telegram (but those it makes on its own clock)."""
    telegram = [call for call in stack.telegram.calls() if call.method not in CLOCKED_TELEGRAM_METHODS]
    kassa = [request for request in stack.kassa.requests if request.route not in CLOCKED_YOOKASSA_ROUTES]
    # The provider-health probes (Kie's balance, Replicate's model lookup) run at start and on a clock too.
    kie = [request for request in stack.kie.requests if request.path != "/api/v1/chat/credit"]
    replicate = [request for request in stack.replicate.requests if not request.path.startswith("/v1/models/")]
    return len(kie), len(replicate), len(kassa), len(telegram)


SCENARIOS: dict[str, Scenario] = {
    "kills": kills,
    "kie": kie_down,
    "telegram": telegram_faults,
    "payments": payments,
    "two_processes": two_processes,
    "bad_input": bad_input,
    "money": money,
    "fuzz": fuzz_endpoints,
}


async def run_scenarios(names: list[str], options: LoadOptions, scale: float) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    for name in names:
        started = time.monotonic()
        try:
            result = await SCENARIOS[name](options, scale)
        except Exception as error:  # a scenario that cannot run is a failed scenario, reported as such
            result = {"ok": False, "error": f"{type(error).__name__}: {error}"[:500]}
        result["seconds"] = round(time.monotonic() - started, 1)
        results[name] = result
        print(f"{name}: {one_line(result)}", flush=True)
    return results


def one_line(result: dict[str, Any]) -> str:
    shown = {key: value for key, value in result.items() if key not in {"problems"}}
    return ("OK " if result.get("ok") else "FAIL ") + json.dumps(shown, ensure_ascii=False, default=str)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(SCENARIOS), help="comma-separated scenario names")
    parser.add_argument("--scale", type=float, default=1.0, help="pack counts × scale (smoke: 0.1)")
    parser.add_argument("--time-factor", type=float, default=0.05)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--deadline", type=float, default=600.0)
    parser.add_argument("--out", type=Path, default=RESULTS / "chaos.json")
    args = parser.parse_args()
    options = LoadOptions(time_factor=args.time_factor, database_url=args.database_url, deadline_seconds=args.deadline)
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)  # resets from killed processes are the point
    names = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown:
        parser.error(f"no scenario named {', '.join(unknown)}; the scenarios are {', '.join(SCENARIOS)}")
    results = asyncio.run(run_scenarios(names, options, args.scale))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    command = " ".join(["python -m bench.chaos", *sys.argv[1:]])
    args.out.write_text(json.dumps({"command": command, "results": results}, indent=1, default=str))
    for name, result in results.items():
        for problem in result.get("problems", []):
            print(f"  {name}: {problem}")
    sys.exit(0 if all(result.get("ok") for result in results.values()) else 1)


if __name__ == "__main__":
    main()
