"""Simulated users for the load and chaos runs: each one talks to the bot only through the fake Telegram.

A user sends /start, uploads a set of selfies as an album, picks a style and a pack, and pays — by card
(the fake YooKassa marks the payment succeeded and notifies the app) or with Telegram Stars (pre-checkout
query, then the successful_payment message). The moment the payment is confirmed on the provider's side
is recorded, so the runner can measure payment → first createTask.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from bot.callbacks import OrderCb
from tests.fakes.telegram import ChatMessage, FakeTelegram, FakeUser
from tests.fakes.yookassa import FakeYooKassa
from tests.image_corpus import selfie_set

PayMethod = Literal["card", "stars"]
# Notification handling for card payments: delivered normally, or one of the chaos variants.
CardNotice = Literal["normal", "duplicated", "reordered", "lost"]


@dataclass
class UserOutcome:
    """What one simulated user did and when (``time.monotonic()`` moments of the runner)."""

    telegram_id: int
    method: PayMethod
    order_id: int | None = None
    payment_id: str | None = None
    paid_at: float | None = None
    error: str | None = None
    steps: list[str] = field(default_factory=list)


def has_text(fragment: str) -> Callable[[ChatMessage], bool]:
    return lambda message: fragment in message.content


def has_button(fragment: str) -> Callable[[ChatMessage], bool]:
    return lambda message: any(fragment in button.get("text", "") for button in message.buttons)


class SimUser:
    """One person buying one pack; ``reply_timeout`` bounds every wait for the bot's answer."""

    def __init__(
        self,
        telegram: FakeTelegram,
        kassa: FakeYooKassa | None,
        *,
        index: int,
        method: PayMethod,
        pack_photos: int = 23,
        selfies: int = 5,
        reply_timeout: float = 60.0,
    ) -> None:
        self.telegram = telegram
        self.kassa = kassa
        self.user: FakeUser = telegram.user(language_code="en")
        self.index = index
        self.pack_photos = pack_photos
        self.selfies = selfies
        self.reply_timeout = reply_timeout
        self.outcome = UserOutcome(self.user.id, method)

    async def _reply(self, predicate: Callable[[ChatMessage], bool] | None = None) -> ChatMessage:
        """The bot's answer to the user's last action. Patience (``reply_timeout``) counts from the moment
        the bot took the user's last update, not from the action: while the bot is down or restarting
        (the chaos kills), Telegram keeps re-posting the update and the user has nothing to react to but
        a bot that is away, which a person waits out. A stall — an update the bot took and never
        answered — still fails after ``reply_timeout``; a bot that never takes the update, after ten."""
        deadline = time.monotonic() + 10 * self.reply_timeout
        timeout = self.reply_timeout
        while True:
            try:
                return await self.user.wait_reply(predicate, timeout=timeout)
            except TimeoutError:
                taken_ago = self._taken_ago()
                if taken_ago is None or taken_ago >= self.reply_timeout or time.monotonic() >= deadline:
                    raise
                timeout = self.reply_timeout - taken_ago

    def _taken_ago(self) -> float | None:
        """Seconds since the webhook accepted this user's newest update: 0 while one is still waiting to
        be taken, None when none went through the webhook (polling)."""

        def mine(update: dict[str, Any]) -> bool:
            payload = next((value for key, value in update.items() if key != "update_id"), {})
            return isinstance(payload, dict) and payload.get("from", {}).get("id") == self.user.id

        if any(mine(update) for update in self.telegram.pending_updates):
            return 0.0
        for delivery in reversed(self.telegram.webhook_deliveries):
            if delivery.status is not None and 200 <= delivery.status < 300 and mine(delivery.update):
                return time.monotonic() - delivery.answered_at
        return None

    async def to_summary(self) -> int:
        """Intake to the order summary; returns the order id."""
        user, steps = self.user, self.outcome.steps
        await user.send_command("/start")
        await self._reply(has_button("New photo session"))
        await user.click("New photo session")
        # Its own answer, not just the next message: a /start whose POST a killed process never answered
        # comes again and is greeted again, and photos sent on that would go out before the set is open.
        await self._reply(has_text("Send 5"))
        steps.append("start")
        await user.send_album(selfie_set(self.selfies, first_seed=1000 + self.index * 10))
        await self._reply(has_button("Done"))
        await user.click("Done")
        await self._reply(has_button("Professional"))
        await user.click("Professional")
        steps.append("photos")
        await self._reply(has_button(f"{self.pack_photos} photos"))
        await user.click(f"{self.pack_photos} photos")
        # The summary itself (with its buttons), not "Your order is ready — confirm it with the buttons above".
        summary = await self._reply(lambda message: has_text("Your order")(message) and bool(message.buttons))
        self.outcome.order_id = OrderCb.unpack(summary.buttons[0]["callback_data"]).order_id
        steps.append("summary")
        return self.outcome.order_id

    async def choose_method(self) -> ChatMessage:
        await self.user.click("💳 Pay")
        await self._reply(has_text("How would you like to pay"))
        if self.outcome.method == "stars":
            await self.user.click("Telegram Stars")
            return await self._reply(lambda message: message.kind == "invoice")
        await self.user.click("By card")
        return await self._reply(lambda message: any("url" in button for button in message.buttons))

    def card_payment_id(self) -> str:
        """The fake YooKassa payment the app created for this user's order (by its metadata)."""
        assert self.kassa is not None and self.outcome.order_id is not None
        for payment_id, payment in self.kassa.payments.items():
            if payment.get("metadata", {}).get("order_id") == str(self.outcome.order_id):
                return payment_id
        raise LookupError(f"no YooKassa payment for order {self.outcome.order_id}")

    async def pay_stars(self, *, repeat_update: int = 1) -> None:
        """Pay the newest invoice like a client: pre-checkout, wait for the bot's yes, the payment message."""
        invoices = [m for m in self.telegram.chat_messages(self.user.id) if m.kind == "invoice"]
        invoice, payload = invoices[-1].raw["invoice"], invoices[-1].invoice_payload or ""
        query = await self.user.pre_checkout(payload, invoice["currency"], invoice["total_amount"])
        query_id = query["pre_checkout_query"]["id"]
        answer = await self.telegram.wait_for(
            lambda call: (
                call.method == "answerPreCheckoutQuery"
                and call.response_ok
                and str(call.params.get("pre_checkout_query_id")) == query_id
            ),
            timeout=self.reply_timeout,
        )
        if not answer.params.get("ok"):
            raise RuntimeError("pre-checkout refused")
        charge = f"stxBENCH{self.user.id}x{self.outcome.order_id}"
        self.outcome.paid_at = time.monotonic()
        # Telegram may deliver the same service message more than once (chaos: repeat_update > 1).
        for _ in range(repeat_update):
            await self.user.successful_payment(payload, invoice["currency"], invoice["total_amount"], charge)

    async def pay_card(self, notice: CardNotice = "normal") -> None:
        assert self.kassa is not None
        payment_id = self.card_payment_id()
        self.outcome.payment_id = payment_id
        kassa = self.kassa
        if notice == "normal":
            self.outcome.paid_at = time.monotonic()
            await kassa.pay(payment_id)  # the fake notifies the app's /payments/yookassa
            return
        # Chaos variants. The fake decides synchronously inside pay() whether to hold or lose the automatic
        # notification, so flipping its switch around this one call affects this payment only.
        self.outcome.paid_at = time.monotonic()
        if notice == "duplicated":
            await kassa.pay(payment_id)
            await kassa.notify(payment_id, duplicates=10, concurrent=True)
            return
        if notice == "reordered":
            kassa.hold_notifications = True
            try:
                await kassa.pay(payment_id)
            finally:
                kassa.hold_notifications = False
            await kassa.send_stale(payment_id, "payment.canceled")
            await kassa.send_stale(payment_id, "payment.waiting_for_capture")
            await kassa.notify(payment_id)
            return
        kassa.lose_notifications = True  # "lost": the app's reconciliation poll must find the payment
        try:
            await kassa.pay(payment_id)
        finally:
            kassa.lose_notifications = False

    async def buy(self, notice: CardNotice = "normal", stars_repeats: int = 1) -> UserOutcome:
        """The whole purchase; failures are recorded, not raised, so one stuck user does not stop a run."""
        try:
            await self.to_summary()
            await self.choose_method()
            if self.outcome.method == "stars":
                await self.pay_stars(repeat_update=stars_repeats)
            else:
                await self.pay_card(notice)
            self.outcome.steps.append("paid")
        except Exception as error:  # recorded in the report; the invariants decide whether it matters
            self.outcome.error = f"{type(error).__name__}: {error}"[:300]
        return self.outcome
