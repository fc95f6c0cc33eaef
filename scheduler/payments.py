"""Payments end to end: create, confirm (notification, poll, button, Stars), reconcile, free starts.

Every confirmation path ends in ``storage.payments.apply_status`` with what the provider's API
says, inside one transaction; the user is told after the commit, best effort.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from providers.payments import PaymentInfo, PaymentProviderError, RefundInfo
from providers.stars import StarsCharge, StarsPayments
from providers.yookassa import YooKassaClient
from scheduler.notices import GiftPaid, JobQueued, PaymentCanceled, PaymentReturned, RefundCanceled
from scheduler.notify import UserNotifier
from scheduler.signals import WorkSignals
from storage import jobs, ledger
from storage import orders as order_queries
from storage import payments as payment_queries
from storage.models import GenerationJob, Order, Payment, Refund, User, utcnow
from storage.payments import RefundStatus, ReturnReason
from studio.catalogue import Catalogue
from studio.credits import Currency, price_for, trial_line
from studio.states import FINAL_JOB_STATUSES, OrderStatus, PaymentProviderName, PaymentStatus

log = logging.getLogger(__name__)

# Rounds of "find or create the live payment" per tap on Pay; each ends one stale attempt.
MAX_ATTEMPT_ROUNDS = 3
STARS_PAYLOAD = re.compile(r"^order:(\d{1,18})$")
# Telegram wants a pre-checkout answer within 10 s; a look at a pending card payment gets part of it.
PRECHECKOUT_SYNC_SECONDS = 4.0
STARS_PAGE = 100
# YooKassa honours an Idempotence-Key for 24 h; a refund never sent within 23 h is checked on the
# payment before it is sent again (the same key might by then make a second refund).
REFUND_KEY_SAFE_AGE = timedelta(hours=23)
# Refunds made outside the bot (the dashboard) are looked for this far back.
REFUND_LOOKBACK = timedelta(days=7)
FINAL_PAID_STATUSES = (PaymentStatus.SUCCEEDED, PaymentStatus.REFUNDED)


def stars_payload(order_id: int) -> str:
    return f"order:{order_id}"


def parse_stars_payload(payload: str) -> int | None:
    match = STARS_PAYLOAD.match(payload)
    return int(match.group(1)) if match else None


class PaymentUnavailable(Exception):
    """The provider could not create the payment now; ``retryable`` tells whether Pay may be tapped again."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class OrderNotPayable(Exception):
    """The order is not (or no longer) waiting for payment."""


@dataclass(frozen=True, slots=True)
class OrderFacts:
    """Who to tell about an order and what, read in the transaction that changed it."""

    chat_id: int
    language: str
    order_id: int
    order_status: OrderStatus
    photos: int
    job_id: int | None
    position: int  # the job's place in the queue


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
        stars: StarsPayments | None = None,
        admin_chat_ids: Sequence[int] = (),
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
        self.stars = stars
        self.admin_chat_ids = tuple(admin_chat_ids)
        # Transactions before this offset are all settled; a restart scans from the start once.
        self._stars_offset = 0
        # Pre-checkout checks of a card payment that outlived their wait (kept referenced until done).
        self._late_checks: set[asyncio.Future[payment_queries.ApplyResult | None]] = set()

    async def payable_order(self, order_id: int, user_id: int) -> Order | None:
        """The user's order while it waits for payment; None for any other (paid, cancelled, not theirs)."""
        async with self.sessionmaker() as session:
            order = await order_queries.get_order(session, order_id, user_id)
        return order if order is not None and order.status == OrderStatus.AWAITING_PAYMENT else None

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
        if result.returned is not None:
            await self._after_return(result, result.returned, facts)
        await self._tell_outcome(
            result, facts, cancellation_reason=info.cancellation_reason, report_cancel=report_cancel
        )
        return result

    async def reconcile(self) -> int:
        """Backstop for lost notifications: re-fetch payments still pending, oldest check first; then
        finish open refunds and take in refunds made outside the bot."""
        settled = await self._reconcile_payments()
        await self.settle_refunds()
        if self.yookassa is not None:
            try:
                await self.reconcile_refunds()
            except PaymentProviderError as error:
                log.warning("reconcile: YooKassa refunds: %s", error)
        return settled

    async def _reconcile_payments(self) -> int:
        if self.yookassa is None:
            return 0
        async with self.sessionmaker() as session:
            due = await payment_queries.pending_to_reconcile(session, utcnow() - self.poll_interval / 2)
            ids = [payment.provider_payment_id for payment in due if payment.provider_payment_id]
        settled = 0
        for provider_id in ids:
            try:
                # The backstop of a lost (or outrun) payment.canceled notification: the user is told,
                # as the notification would have told them; a payment that changed only once tells once.
                result = await self.sync(provider_id)
            except PaymentProviderError as error:
                log.warning("reconcile: YooKassa %s: %s", provider_id, error)
                continue
            settled += int(bool(result and result.changed))
        return settled

    # ------------------------------------------------------------ Telegram Stars

    async def stars_precheckout(
        self, order_id: int, telegram_id: int, currency: str, amount: int, payload: str = ""
    ) -> str | None:
        """None when the order may be paid (its intent is then recorded); otherwise the text key of the
        refusal reason. A card payment of the order still pending is asked about first: if it has
        just succeeded, the Stars payment would be a second one."""
        await self._settle_pending_card_payments(order_id)
        async with self.sessionmaker() as session:
            order = await order_queries.get_order(session, order_id)
            user = await session.get(User, order.user_id) if order else None
            if order is None or user is None or user.telegram_id != telegram_id:
                return "payment.refused.unknown_order"
            if user.is_banned:
                return "payment.refused.banned"
            if order.status not in payment_queries.PAYABLE_ORDER_STATUSES or await payment_queries.has_paid_payment(
                session, order.id
            ):
                return "payment.refused.not_payable"
            price = price_for(self.catalogue.pack(order.pack), Currency.STARS)
            if currency != Currency.STARS or amount != price:
                return "payment.refused.price_changed"
            if not await payment_queries.avatar_ready(session, order) and not (
                await payment_queries.payable_without_selfies(session, order)
            ):
                return "payment.refused.photos_gone"
            await payment_queries.record_stars_intent(session, order, price, payload or stars_payload(order.id))
            await session.commit()
        return None

    async def _settle_pending_card_payments(self, order_id: int) -> None:
        if self.yookassa is None:
            return
        async with self.sessionmaker() as session:
            pending = await payment_queries.live_provider_ids(session, order_id, PaymentProviderName.YOOKASSA)
        for provider_id in pending:
            check = asyncio.ensure_future(self.sync(provider_id, report_cancel=False))
            self._late_checks.add(check)
            check.add_done_callback(self._late_checks.discard)
            try:
                # Shielded: the time limit stops our wait, not the check: a late YooKassa answer still
                # settles the card payment now rather than at the next reconcile round.
                await asyncio.wait_for(asyncio.shield(check), PRECHECKOUT_SYNC_SECONDS)
            except (PaymentProviderError, TimeoutError) as error:
                # Cannot tell now: accept; if the card payment succeeds too, it is returned.
                log.warning("pre-checkout of order %s: card payment %s not checked: %s", order_id, provider_id, error)

    async def stars_paid(
        self, order_id: int, telegram_id: int, charge_id: str, currency: str, amount: int
    ) -> payment_queries.ApplyResult | None:
        async with self.sessionmaker() as session:
            order = await order_queries.get_order(session, order_id)
            user = await session.get(User, order.user_id) if order else None
            if order is None or user is None or user.telegram_id != telegram_id:
                log.error("stars payment %s for unknown order %s: refunding it", charge_id, order_id)
                await self._refund_unknown_charge(telegram_id, charge_id)
                return None
            payment = await payment_queries.record_stars_payment(
                session,
                order,
                charge_id,
                price_for(self.catalogue.pack(order.pack), Currency.STARS),
                Currency.STARS,
            )
            result = await payment_queries.apply_status(
                session, payment, PaymentStatus.SUCCEEDED, amount=amount, currency=currency
            )
            facts = await self._facts(session, order.id, result.job)
            await session.commit()
        if result.mismatch:
            log.error("stars payment %s amount mismatch: %s", charge_id, result.mismatch)
        if result.returned is not None:
            await self._after_return(result, result.returned, facts)
        await self._tell_outcome(result, facts)
        return result

    async def _refund_unknown_charge(self, telegram_id: int, charge_id: str) -> None:
        if self.stars is None:
            return
        try:
            await self.stars.refund(telegram_id, charge_id)
        except PaymentProviderError as error:
            log.error("stars charge %s of an unknown order could not be refunded: %s", charge_id, error)

    async def reconcile_stars(self) -> int:
        """Backstop for ``successful_payment`` updates that never got handled (dropped, crashed,
        never delivered): every incoming Stars charge without a settled payment row is settled now,
        through the same path; returns how many were."""
        if self.stars is None:
            return 0
        offset, settled, all_settled_so_far = self._stars_offset, 0, True
        # A charge this fresh is most likely being handled from its update right now.
        fresh_since = utcnow() - self.poll_interval / 2
        while True:
            try:
                charges, seen = await self.stars.charges(offset, STARS_PAGE)
            except Exception as error:  # the Bot API is down or slow: the next run tries again
                log.warning("stars reconcile: getStarTransactions failed: %s", error)
                return settled
            async with self.sessionmaker() as session:
                known = await payment_queries.payments_by_charge_ids(session, [c.charge_id for c in charges])
            for charge in charges:
                payment = known.get(charge.charge_id)
                if payment is not None and payment.status in FINAL_PAID_STATUSES:
                    continue
                if charge.date > fresh_since:
                    all_settled_so_far = False
                    continue
                if await self._settle_charge(charge):
                    settled += 1
                else:
                    all_settled_so_far = False
            if seen < STARS_PAGE:
                return settled
            offset += seen
            if all_settled_so_far:
                self._stars_offset = offset

    async def _settle_charge(self, charge: StarsCharge) -> bool:
        log.error(
            "stars reconcile: charge %s (%s XTR, %r) was never handled; settling it now",
            charge.charge_id,
            charge.amount,
            charge.invoice_payload,
        )
        order_id = parse_stars_payload(charge.invoice_payload)
        if order_id is None:
            await self._refund_unknown_charge(charge.user_telegram_id, charge.charge_id)
            return True
        try:
            result = await self.stars_paid(
                order_id, charge.user_telegram_id, charge.charge_id, Currency.STARS, charge.amount
            )
        except Exception:
            log.exception("stars reconcile: charge %s could not be settled", charge.charge_id)
            return False
        return result is None or result.payment.status in FINAL_PAID_STATUSES

    # ------------------------------------------------------------ returning money

    async def _after_return(self, result: payment_queries.ApplyResult, reason: ReturnReason, facts: OrderFacts) -> None:
        """A payment that could not buy its order: send the money back now and tell the user."""
        payment = result.payment
        log.error(
            "payment %s (%s %s) for order %s is returned (%s); the order was bought by payment %s",
            f"{payment.id}/{payment.provider}:{payment.provider_payment_id}",
            payment.amount,
            payment.currency,
            payment.order_id,
            reason,
            result.kept_payment_id,
        )
        refund_amount = payment.amount
        if result.refund_id is not None:
            async with self.sessionmaker() as session:
                refund = await payment_queries.get_refund(session, result.refund_id)
                if refund is not None:
                    refund_amount = refund.amount
            await self._carry_out(result.refund_id)
        returned = PaymentReturned(facts.order_id, reason, refund_amount, Currency(payment.currency))
        await self.notifier.tell(facts.chat_id, facts.language, returned)

    async def settle_refunds(self) -> int:
        """Finish refunds decided but not confirmed (provider down, process stopped in between)."""
        async with self.sessionmaker() as session:
            due = await payment_queries.open_refunds(session, utcnow() - self.poll_interval / 2)
            ids = [refund.id for refund in due]
        for refund_id in ids:
            await self._carry_out(refund_id)
        return len(ids)

    async def carry_out(self, refund_id: int) -> None:
        """Ask the provider for a refund booked elsewhere (a gift taken back); never raises: what fails
        stays open for the settle job."""
        await self._carry_out(refund_id)

    async def _carry_out(self, refund_id: int) -> None:
        """Ask the provider for an open refund, or about it, and record what it says. Never raises."""
        async with self.sessionmaker() as session:
            refund = await payment_queries.get_refund(session, refund_id)
            if refund is None or refund.status not in payment_queries.OPEN_REFUND_STATUSES:
                return
            payment = await session.get(Payment, refund.payment_id)
            assert payment is not None
            user = await session.get(User, payment.user_id)
            assert user is not None
            telegram_id = user.telegram_id
        try:
            if refund.provider == PaymentProviderName.STARS:
                await self._carry_out_stars(refund, payment, telegram_id)
            else:
                await self._carry_out_yookassa(refund, payment)
        except PaymentProviderError as error:
            # Stays open: the settle job asks again with the same key (or the stored refund id).
            log.warning("refund %s of payment %s not done yet: %s", refund.id, payment.id, error)

    async def _carry_out_stars(self, refund: Refund, payment: Payment, telegram_id: int) -> None:
        if self.stars is None or not payment.provider_payment_id:
            return
        await self.stars.refund(telegram_id, payment.provider_payment_id)  # "already refunded" is done too
        async with self.sessionmaker() as session:
            await payment_queries.mark_refund(session, refund.id, RefundStatus.SUCCEEDED)
            await session.commit()

    async def _carry_out_yookassa(self, refund: Refund, payment: Payment) -> None:
        if self.yookassa is None or not payment.provider_payment_id:
            return
        if refund.provider_refund_id:
            # Never re-create a refund YooKassa has: its key may have expired and make a second one.
            info = await self.yookassa.get_refund(refund.provider_refund_id)
        elif (
            utcnow() - refund.created_at > REFUND_KEY_SAFE_AGE
            and (await self.yookassa.get_payment(payment.provider_payment_id)).refunded_kopecks >= refund.amount
        ):
            log.error("refund %s: no refund id kept, but the payment shows the money returned", refund.id)
            async with self.sessionmaker() as session:
                await payment_queries.mark_refund(session, refund.id, RefundStatus.SUCCEEDED, detail="seen on payment")
                await session.commit()
            return
        else:
            info = await self._create_yookassa_refund(refund, payment)
        await self._record_refund_info(refund.id, info)

    async def _create_yookassa_refund(self, refund: Refund, payment: Payment) -> RefundInfo:
        """POST /refunds for a refunds row; the body depends on the row only, so every repeat with its
        key is the same request (a different body under one key is refused by YooKassa)."""
        assert self.yookassa is not None and payment.provider_payment_id
        email = None
        if self.receipts:
            async with self.sessionmaker() as session:
                user = await session.get(User, payment.user_id)
                email = user.email if user is not None else None
        what = "refund" if refund.reason == ReturnReason.ADMIN else "returned payment"
        return await self.yookassa.create_refund(
            payment_id=payment.provider_payment_id,
            amount_kopecks=refund.amount,
            idempotence_key=refund.idempotence_key,
            description=f"PinGlass order {payment.order_id}: {what}",
            receipt_email=email or None,
            vat_code=self.vat_code if email else None,
        )

    async def _record_refund_info(self, refund_id: int, info: RefundInfo) -> None:
        status = _refund_status(info.status)
        async with self.sessionmaker() as session:
            moved = await payment_queries.mark_refund(session, refund_id, status, provider_refund_id=info.id)
            await session.commit()
        if moved and status == RefundStatus.CANCELED:
            await self._report_canceled_refund(refund_id, info)

    async def _report_canceled_refund(self, refund_id: int, info: RefundInfo) -> None:
        log.error(
            "REFUND CANCELED: refund %s (YooKassa %s) of payment %s, %s kopecks: the money was NOT returned",
            refund_id,
            info.id,
            info.payment_id,
            info.amount_kopecks,
        )
        for admin_id in self.admin_chat_ids:
            await self.notifier.tell(
                admin_id, "en", RefundCanceled(refund_id, info.id, info.payment_id, info.amount_kopecks)
            )

    async def sync_refund(self, provider_refund_id: str, claimed_payment_id: str | None) -> None:
        """A ``refund.succeeded`` notification: re-fetch the refund and act on what YooKassa says.

        A refund of a payment we never created (as the notification names it), or naming none, is not
        fetched at all, like a payment notification; one YooKassa does not know is stray or forged. Neither
        changes anything, and both are answered 200 (a 5xx would only make its sender retry)."""
        assert self.yookassa is not None
        if claimed_payment_id is None:
            return  # YooKassa's refund objects always name their payment
        async with self.sessionmaker() as session:
            ours = await payment_queries.find_by_provider_id(session, PaymentProviderName.YOOKASSA, claimed_payment_id)
        if ours is None:
            return
        try:
            info = await self.yookassa.get_refund(provider_refund_id)
        except PaymentProviderError as error:
            if error.status != 404:
                raise
            log.warning("refund notification for %s, which YooKassa does not know: ignored", provider_refund_id)
            return
        await self._apply_refund_info(info)

    async def reconcile_refunds(self) -> int:
        """Refunds YooKassa made that we have not recorded (made in the dashboard, or a lost
        notification): each marks its payment refunded and takes the credits back."""
        assert self.yookassa is not None
        since = (utcnow() - REFUND_LOOKBACK).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        cursor: str | None = None
        applied = 0
        while True:
            refunds, cursor = await self.yookassa.list_refunds(created_gte=since, cursor=cursor)
            for info in refunds:
                applied += int(await self._apply_refund_info(info))
            if not cursor:
                return applied

    async def _apply_refund_info(self, info: RefundInfo) -> bool:
        """Record a YooKassa refund; True when it changed something here."""
        async with self.sessionmaker() as session:
            payment = await payment_queries.find_by_provider_id(session, PaymentProviderName.YOOKASSA, info.payment_id)
            if payment is None:
                return False  # another shop's, or not a payment of ours
            ours = await payment_queries.find_refund(
                session, PaymentProviderName.YOOKASSA, info.id
            ) or await payment_queries.refund_in_flight(session, payment.id, info.amount_kopecks)
            if ours is not None:
                refund_id, reason, open_ = ours.id, ours.reason, ours.status in payment_queries.OPEN_REFUND_STATUSES
        if ours is not None:
            if not open_:
                return False
            await self._record_refund_info(refund_id, info)
            if reason == ReturnReason.ADMIN and _refund_status(info.status) == RefundStatus.SUCCEEDED:
                await self._take_back(payment.id, info)
            return True
        if _refund_status(info.status) != RefundStatus.SUCCEEDED:
            return False
        log.warning("YooKassa refund %s of payment %s was made outside the bot", info.id, payment.id)
        async with self.sessionmaker() as session:
            row = await session.get(Payment, payment.id)
            assert row is not None
            await payment_queries.add_refund(
                session,
                row,
                reason=ReturnReason.PROVIDER,
                amount=info.amount_kopecks,
                idempotence_key=f"pg-seen-{info.id}"[:64],
                provider_refund_id=info.id,
                status=RefundStatus.SUCCEEDED,
            )
            await session.commit()
        await self._take_back(payment.id, info)
        return True

    async def _take_back(self, payment_id: int, info: RefundInfo) -> bool:
        """Mark the payment refunded and take back the credits this refund pays for, once."""
        async with self.sessionmaker() as session:
            payment = await payment_queries.get_payment(session, payment_id)
            assert payment is not None
            order = await session.get(Order, payment.order_id)
            assert order is not None
            if payment.status not in FINAL_PAID_STATUSES:
                return False
            photos = (
                order.photos
                if info.amount_kopecks >= payment.amount
                else max(1, order.photos * info.amount_kopecks // max(payment.amount, 1))
            )
            taken = await payment_queries.record_refund(session, payment, photos, f"yookassa:{info.id}")
            await session.commit()
        return taken

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
            order = await session.get(Order, payment.order_id)
            assert order is not None
            take = order.photos if photos is None else max(1, min(photos, order.photos))
            amount = payment.amount if take >= order.photos else payment.amount * take // order.photos
        key = f"pg-refund-{payment_id}"
        async with self.sessionmaker() as session:
            payment = await payment_queries.get_payment(session, payment_id)
            assert payment is not None
            row = await payment_queries.add_refund(
                session, payment, reason=ReturnReason.ADMIN, amount=amount, idempotence_key=key
            )
            await session.commit()
            row_id, known_id = row.id, row.provider_refund_id
        if known_id:
            # Re-fetched, never re-created: after 24 h the same key would make a second refund.
            refund = await self.yookassa.get_refund(known_id)
        else:
            async with self.sessionmaker() as session:
                stored = await payment_queries.get_refund(session, row_id)
                payment = await payment_queries.get_payment(session, payment_id)
            assert stored is not None and payment is not None
            refund = await self._create_yookassa_refund(stored, payment)
        await self._record_refund_info(row_id, refund)
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
        """The trial pack (once per user): credit it and queue it with low priority.

        Its Start button again (the same tap delivered twice, or a second tap) tells the user about the
        pack it started; only another order's Start finds the trial used.
        """
        async with self.sessionmaker() as session:
            order = await order_queries.get_order(session, order_id, user.id)
            if order is None or order.status != OrderStatus.READY:
                raise OrderNotPayable(str(order_id))
            job = await jobs.job_for_order(session, order.id)
            if job is not None and job.status in FINAL_JOB_STATUSES:
                raise OrderNotPayable("trial already used")
            if job is None:
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

    async def _facts(self, session: AsyncSession, order_id: int, job: GenerationJob | None) -> OrderFacts:
        order = await session.get(Order, order_id)
        assert order is not None
        user = await session.get(User, order.user_id)
        assert user is not None
        position = await jobs.queue_position(session, job) if job is not None else 1
        return OrderFacts(
            user.telegram_id,
            user.language,
            order.id,
            OrderStatus(order.status),
            order.photos,
            job_id=job.id if job is not None else None,
            position=position,
        )

    async def _tell_outcome(
        self,
        result: payment_queries.ApplyResult,
        facts: OrderFacts,
        cancellation_reason: str | None = None,
        *,
        report_cancel: bool = True,
    ) -> None:
        if result.returned is not None:
            return
        if result.credited and result.job is not None:
            self.signals.job_queued()
            await self._tell_queued(facts, paid=True)
        elif result.changed and result.gift is not None:
            gift = result.gift
            await self.notifier.tell(facts.chat_id, facts.language, GiftPaid(gift.id, gift.code, gift.photos))
        elif (
            report_cancel
            and result.changed
            and result.payment.status == PaymentStatus.CANCELED
            # An order paid some other way meanwhile needs no "pay again".
            and facts.order_status == OrderStatus.AWAITING_PAYMENT
        ):
            expired = cancellation_reason == "expired_on_confirmation"
            await self.notifier.tell(facts.chat_id, facts.language, PaymentCanceled(facts.order_id, expired))

    async def _tell_queued(self, facts: OrderFacts, *, paid: bool = False) -> None:
        if facts.job_id is not None:
            queued = JobQueued(facts.job_id, facts.photos, facts.position, paid=paid)
            await self.notifier.tell(facts.chat_id, facts.language, queued)


def _refund_status(status: str) -> RefundStatus:
    if status == "succeeded":
        return RefundStatus.SUCCEEDED
    if status == "canceled":
        return RefundStatus.CANCELED
    return RefundStatus.PENDING


def _our_status(info: PaymentInfo) -> str:
    if info.succeeded:
        return PaymentStatus.SUCCEEDED
    if info.canceled:
        return PaymentStatus.CANCELED
    return PaymentStatus.PENDING
