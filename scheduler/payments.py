"""Payments end to end: create, confirm (notification, poll, button, Stars), reconcile, free starts.

Every confirmation path ends in ``storage.payments.apply_status`` with what the provider's API
says, inside one transaction; the user is told after the commit, best effort.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from providers.payments import PaymentInfo, PaymentProviderError, RefundInfo
from providers.stars import StarsPayments
from providers.yookassa import YooKassaClient
from scheduler.notify import UserNotifier
from scheduler.signals import WorkSignals
from storage import jobs, ledger
from storage import orders as order_queries
from storage import payments as payment_queries
from storage.models import GenerationJob, Order, User, utcnow
from studio.catalogue import Catalogue
from studio.credits import Currency, price_for, trial_line
from studio.states import OrderStatus, PaymentProviderName, PaymentStatus

log = logging.getLogger(__name__)

# Rounds of "find or create the live payment" per tap on Pay; each ends one stale attempt.
MAX_ATTEMPT_ROUNDS = 3


class PaymentUnavailable(Exception):
    """The provider could not create the payment now; ``retryable`` tells whether Pay may be tapped again."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class OrderNotPayable(Exception):
    """The order is not (or no longer) waiting for payment."""


@dataclass(frozen=True, slots=True)
class PayLink:
    payment_id: int
    confirmation_url: str
    amount: int


class PaymentService:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        catalogue: Catalogue,
        notifier: UserNotifier,
        signals: WorkSignals,
        yookassa: YooKassaClient | None,
        return_url: str,
        receipts: bool = False,
        vat_code: int = 1,
        poll_interval_seconds: float = 60.0,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.catalogue = catalogue
        self.notifier = notifier
        self.signals = signals
        self.yookassa = yookassa
        self.return_url = return_url
        self.receipts = receipts
        self.vat_code = vat_code
        self.poll_interval = timedelta(seconds=poll_interval_seconds)

    # ------------------------------------------------------------ YooKassa

    async def start_yookassa(self, order_id: int, user: User) -> PayLink:
        if self.yookassa is None:
            raise PaymentUnavailable("YooKassa is not configured", retryable=False)
        # A live attempt may turn out to be over (its notification lost, or a repeated key answered
        # with a payment that has ended meanwhile); then the next round opens a fresh attempt.
        for _round in range(MAX_ATTEMPT_ROUNDS):
            link = await self._yookassa_round(order_id, user)
            if link is not None:
                return link
        raise PaymentUnavailable(f"order {order_id}: no live payment after {MAX_ATTEMPT_ROUNDS} rounds", retryable=True)

    async def _yookassa_round(self, order_id: int, user: User) -> PayLink | None:
        """The link of the order's live YooKassa payment (created if needed); None when it just ended."""
        assert self.yookassa is not None
        async with self.sessionmaker() as session:
            # The order row lock makes concurrent taps on Pay take turns, so they share one attempt.
            order = await payment_queries.lock_order(session, order_id, user.id)
            if order is None or order.status not in payment_queries.PAYABLE_ORDER_STATUSES:
                raise OrderNotPayable(str(order_id))
            amount = price_for(self.catalogue.pack(order.pack), Currency.RUB)
            attempt = await payment_queries.open_attempt(
                session, order, PaymentProviderName.YOOKASSA, amount, Currency.RUB
            )
            await session.commit()
            attempt_id, key, pack = attempt.id, attempt.idempotence_key, self.catalogue.pack(order.pack)
            live = (attempt.status, attempt.provider_payment_id, attempt.confirmation_url, attempt.amount)
        status, provider_id, confirmation_url, attempt_amount = live
        if status == PaymentStatus.PENDING and provider_id and confirmation_url:
            try:
                result = await self.sync(provider_id, report_cancel=False)
            except PaymentProviderError as error:
                # Cannot ask now: the link is most likely still good, and the poll settles it later.
                log.warning("yookassa %s: could not re-check before reuse: %s", provider_id, error)
                result = None
            if result is not None and result.payment.status != PaymentStatus.PENDING:
                return None
            return PayLink(attempt_id, confirmation_url, attempt_amount)
        description = f"PinGlass: {pack.title.get(user.language)}, order {order_id}"
        try:
            info = await self.yookassa.create_payment(
                amount_kopecks=amount,
                description=description,
                return_url=self.return_url,
                metadata={"order_id": str(order_id), "payment_id": str(attempt_id), "user_id": str(user.id)},
                idempotence_key=key,
                receipt_email=user.email if self.receipts else None,
                vat_code=self.vat_code if self.receipts else None,
                item_description=pack.title.get("ru"),
            )
        except PaymentProviderError as error:
            if not error.retryable:
                async with self.sessionmaker() as session:
                    await payment_queries.abandon_attempt(session, attempt_id, str(error))
                    await session.commit()
            # A retryable failure leaves the attempt in "creating" with its key: the next tap repeats
            # the very same request, so YooKassa returns the payment it may already have made.
            raise PaymentUnavailable(str(error), retryable=error.retryable) from error
        async with self.sessionmaker() as session:
            await payment_queries.attach_provider_payment(session, attempt_id, info.id, info.confirmation_url)
            await session.commit()
        if info.final or not info.confirmation_url:
            # Already over (a repeated key can return a payment that ended since): settle it and
            # let the next round decide (paid: not payable any more; cancelled: a new attempt).
            await self.sync(info.id, report_cancel=False)
            return None
        return PayLink(attempt_id, info.confirmation_url, amount)

    async def check(self, payment_id: int, user: User) -> str:
        """The "Check payment" button: ask YooKassa now; return the payment's status afterwards."""
        async with self.sessionmaker() as session:
            payment = await payment_queries.get_payment(session, payment_id)
            if payment is None or payment.user_id != user.id:
                raise OrderNotPayable(str(payment_id))
            provider_id, status = payment.provider_payment_id, payment.status
        if provider_id is None or status != PaymentStatus.PENDING:
            return str(status)
        await self.sync(provider_id)
        async with self.sessionmaker() as session:
            refreshed = await payment_queries.get_payment(session, payment_id)
            assert refreshed is not None
            return str(refreshed.status)

    async def sync(self, provider_payment_id: str, *, report_cancel: bool = True) -> payment_queries.ApplyResult | None:
        """Re-fetch a YooKassa payment and act only on what the API says. Raises on provider errors.

        An id we never created is not fetched at all: a stray or forged notification costs no API
        call and is answered 200 (a 5xx would only make its sender retry it for a day).
        ``report_cancel=False``: the user is paying anew right now, so "your payment expired" is noise.
        """
        assert self.yookassa is not None
        async with self.sessionmaker() as session:
            ours = await payment_queries.find_by_provider_id(session, PaymentProviderName.YOOKASSA, provider_payment_id)
        if ours is None:
            return None
        info = await self.yookassa.get_payment(provider_payment_id)
        return await self._apply_yookassa(info, report_cancel=report_cancel)

    async def _apply_yookassa(
        self, info: PaymentInfo, *, report_cancel: bool = True
    ) -> payment_queries.ApplyResult | None:
        async with self.sessionmaker() as session:
            payment = await payment_queries.find_by_provider_id(session, PaymentProviderName.YOOKASSA, info.id)
            if payment is None:
                return None  # not ours (or from another shop): nothing to do
            detail = {"reason": info.cancellation_reason} if info.cancellation_reason else None
            result = await payment_queries.apply_status(
                session,
                payment,
                _our_status(info),
                amount=info.amount_kopecks,
                currency=Currency.RUB if info.currency == "RUB" else info.currency,
                detail=detail,
            )
            facts = await self._facts(session, payment.order_id, result.job)
            await session.commit()
        if result.mismatch:
            log.error("payment %s amount mismatch: %s", payment.id, result.mismatch)
        await self._tell_outcome(
            result, facts, cancellation_reason=info.cancellation_reason, report_cancel=report_cancel
        )
        return result

    async def reconcile(self) -> int:
        """Backstop for lost notifications: re-fetch payments still pending, oldest check first."""
        if self.yookassa is None:
            return 0
        async with self.sessionmaker() as session:
            due = await payment_queries.pending_to_reconcile(session, utcnow() - self.poll_interval / 2)
            ids = [payment.provider_payment_id for payment in due if payment.provider_payment_id]
        settled = 0
        for provider_id in ids:
            try:
                result = await self.sync(provider_id, report_cancel=False)
            except PaymentProviderError as error:
                log.warning("reconcile: YooKassa %s: %s", provider_id, error)
                continue
            settled += int(bool(result and result.changed))
        return settled

    # ------------------------------------------------------------ Telegram Stars

    async def stars_precheckout(self, order_id: int, telegram_id: int, currency: str, amount: int) -> str | None:
        """None when the order may be paid; otherwise the text key of the refusal reason."""
        async with self.sessionmaker() as session:
            order = await order_queries.get_order(session, order_id)
            user = await session.get(User, order.user_id) if order else None
            if order is None or user is None or user.telegram_id != telegram_id:
                return "payment.refused.unknown_order"
            if order.status not in payment_queries.PAYABLE_ORDER_STATUSES:
                return "payment.refused.not_payable"
            if currency != Currency.STARS or amount != price_for(self.catalogue.pack(order.pack), Currency.STARS):
                return "payment.refused.price_changed"
        return None

    async def stars_paid(
        self, order_id: int, telegram_id: int, charge_id: str, currency: str, amount: int
    ) -> payment_queries.ApplyResult | None:
        async with self.sessionmaker() as session:
            order = await order_queries.get_order(session, order_id)
            user = await session.get(User, order.user_id) if order else None
            if order is None or user is None or user.telegram_id != telegram_id:
                log.error("stars payment %s for unknown order %s", charge_id, order_id)
                return None
            payment = await payment_queries.record_stars_payment(session, order, charge_id, amount, currency)
            result = await payment_queries.apply_status(
                session,
                payment,
                PaymentStatus.SUCCEEDED,
                amount=price_for(self.catalogue.pack(order.pack), Currency.STARS),
                currency=Currency.STARS,
            )
            if result.mismatch is None and amount != payment.amount:
                log.error("stars payment %s paid %s, order wanted %s", charge_id, amount, payment.amount)
            facts = await self._facts(session, order.id, result.job)
            await session.commit()
        await self._tell_outcome(result, facts)
        return result

    async def refund_stars(self, payment_id: int, stars: StarsPayments, photos: int | None = None) -> bool:
        """Refund a Stars payment at Telegram and take its credits back (all, or ``photos`` of them), once
        (the admin command calls this). Telegram refunds Stars only in full."""
        async with self.sessionmaker() as session:
            payment = await payment_queries.get_payment(session, payment_id)
            if payment is None or payment.provider != PaymentProviderName.STARS or not payment.provider_payment_id:
                raise OrderNotPayable(str(payment_id))
            user = await session.get(User, payment.user_id)
            order = await session.get(Order, payment.order_id)
            assert user is not None and order is not None
            charge_id = payment.provider_payment_id
        await stars.refund(user.telegram_id, charge_id)  # a repeat answers "already refunded": still once
        take = order.photos if photos is None else max(1, min(photos, order.photos))
        async with self.sessionmaker() as session:
            payment = await payment_queries.get_payment(session, payment_id)
            assert payment is not None
            taken = await payment_queries.record_refund(session, payment, take, f"stars:{charge_id}")
            await session.commit()
        return taken

    async def refund_yookassa(self, payment_id: int, photos: int | None = None) -> tuple[bool, RefundInfo]:
        """Refund a succeeded YooKassa payment (in full, or the share of ``photos``) and take the credits
        back, once. The Idempotence-Key is derived from our payment id, so a repeated or concurrent
        refund gets YooKassa's first refund back instead of a second one."""
        if self.yookassa is None:
            raise PaymentUnavailable("YooKassa is not configured", retryable=False)
        async with self.sessionmaker() as session:
            payment = await payment_queries.get_payment(session, payment_id)
            if (
                payment is None
                or payment.provider != PaymentProviderName.YOOKASSA
                or not payment.provider_payment_id
                or payment.status not in (PaymentStatus.SUCCEEDED, PaymentStatus.REFUNDED)
            ):
                raise OrderNotPayable(str(payment_id))
            user = await session.get(User, payment.user_id)
            order = await session.get(Order, payment.order_id)
            assert user is not None and order is not None
            take = order.photos if photos is None else max(1, min(photos, order.photos))
            amount = payment.amount if take >= order.photos else payment.amount * take // order.photos
            provider_id, email, order_id = payment.provider_payment_id, user.email, order.id
        refund = await self.yookassa.create_refund(
            payment_id=provider_id,
            amount_kopecks=amount,
            idempotence_key=f"pg-refund-{payment_id}",
            description=f"PinGlass order {order_id}: refund",
            receipt_email=email if self.receipts and email else None,
            vat_code=self.vat_code if self.receipts else None,
        )
        if refund.status != "succeeded":
            return False, refund  # a pending refund is not money back yet; the admin repeats later
        async with self.sessionmaker() as session:
            payment = await payment_queries.get_payment(session, payment_id)
            assert payment is not None
            taken = await payment_queries.record_refund(session, payment, take, f"yookassa:{refund.id}")
            await session.commit()
        return taken, refund

    # ------------------------------------------------------------ free starts

    async def start_free(self, order_id: int, user: User) -> GenerationJob | None:
        """The trial pack (once per user): credit it and queue it with low priority."""
        async with self.sessionmaker() as session:
            order = await order_queries.get_order(session, order_id, user.id)
            if order is None or order.status != OrderStatus.READY:
                raise OrderNotPayable(str(order_id))
            if not await ledger.record(session, user.id, trial_line(user.id, order.photos), order_id=order.id):
                await session.rollback()
                raise OrderNotPayable("trial already used")
            job = await jobs.create_job_for_order(session, order, user, priority=jobs.PRIORITY_FREE)
            facts = await self._facts(session, order.id, job)
            await session.commit()
        if job is not None:
            self.signals.job_queued()
            await self._tell_queued(facts)
        return job

    # ------------------------------------------------------------ telling the user

    async def _facts(self, session: AsyncSession, order_id: int, job: GenerationJob | None) -> dict[str, object]:
        order = await session.get(Order, order_id)
        assert order is not None
        user = await session.get(User, order.user_id)
        assert user is not None
        facts: dict[str, object] = {
            "chat_id": user.telegram_id,
            "language": user.language,
            "order_id": order.id,
            "order_status": order.status,
            "photos": order.photos,
        }
        if job is not None:
            facts["job_id"] = job.id
            facts["position"] = await jobs.queue_position(session, job)
        return facts

    async def _tell_outcome(
        self,
        result: payment_queries.ApplyResult,
        facts: dict[str, object],
        cancellation_reason: str | None = None,
        *,
        report_cancel: bool = True,
    ) -> None:
        if result.credited and result.job is not None:
            self.signals.job_queued()
            await self._tell_queued(facts, key="payment.succeeded")
        elif (
            report_cancel
            and result.changed
            and result.payment.status == PaymentStatus.CANCELED
            # An order paid some other way meanwhile needs no "pay again".
            and facts.get("order_status") == OrderStatus.AWAITING_PAYMENT
        ):
            await self.notifier.tell(
                int(facts["chat_id"]),  # type: ignore[call-overload]
                str(facts["language"]),
                "payment.canceled.expired"
                if cancellation_reason == "expired_on_confirmation"
                else "payment.canceled.other",
                buttons=("pay_again", facts["order_id"]),
            )

    async def _tell_queued(self, facts: dict[str, object], key: str = "job.queued") -> None:
        await self.notifier.tell(
            int(facts["chat_id"]),  # type: ignore[call-overload]
            str(facts["language"]),
            key,
            buttons=("cancel_job", facts.get("job_id")),
            photos=facts["photos"],
            position=facts.get("position", 1),
        )


def _our_status(info: PaymentInfo) -> str:
    if info.succeeded:
        return PaymentStatus.SUCCEEDED
    if info.canceled:
        return PaymentStatus.CANCELED
    return PaymentStatus.PENDING
