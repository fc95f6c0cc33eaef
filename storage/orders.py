"""Orders: what the user chose (photos, style, pack) and its price, before and after payment."""

from __future__ import annotations

from sqlalchemy import exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import GenerationJob, LedgerEntry, Order, utcnow
from storage.sql import insert_for, insert_or_find, rows_changed
from studio.catalogue import Pack
from studio.states import LedgerReason, OrderStatus


async def create_order(
    session: AsyncSession, *, user_id: int, avatar_id: int, style: str, pack: Pack, created_by: str | None = None
) -> Order:
    """A new order for ``pack``; with ``created_by`` (the tap that chose it) at most one per tap.

    The UNIQUE (user_id, created_by) decides, not a look-up first: the same tap delivered again, even
    at the same moment to another process, gets the order the first delivery made.
    """
    values = {
        "user_id": user_id,
        "avatar_id": avatar_id,
        "style": style,
        "pack": pack.id,
        "photos": pack.photos,
        "price_rub_kopecks": pack.price_rub_kopecks,
        "price_stars": pack.price_stars,
        "status": OrderStatus.READY if pack.is_free else OrderStatus.AWAITING_PAYMENT,
        "created_by": created_by,
        "created_at": utcnow(),
    }
    order, _created = await insert_or_find(session, Order, values, key=("user_id", "created_by"))
    return order


async def get_order(session: AsyncSession, order_id: int, user_id: int | None = None) -> Order | None:
    query = select(Order).where(Order.id == order_id)
    if user_id is not None:
        query = query.where(Order.user_id == user_id)
    return (await session.execute(query)).scalar_one_or_none()


async def cancel_unpaid_order(session: AsyncSession, order_id: int) -> bool:
    """Withdraw an order nobody paid for and nothing started; a free order that already has its job stays."""
    result = await session.execute(
        update(Order)
        .where(
            Order.id == order_id,
            Order.status.in_([OrderStatus.AWAITING_PAYMENT, OrderStatus.READY]),
            # A started trial keeps the READY status; cancelling it would orphan its queued job.
            ~exists().where(GenerationJob.order_id == Order.id),
        )
        .values(status=OrderStatus.CANCELLED)
    )
    return bool(rows_changed(result))


async def cancel_awaiting_orders(session: AsyncSession, user_id: int) -> int:
    """Withdraw every order of the user still waiting for payment; returns how many."""
    result = await session.execute(
        update(Order)
        .where(Order.user_id == user_id, Order.status == OrderStatus.AWAITING_PAYMENT)
        .values(status=OrderStatus.CANCELLED)
    )
    return rows_changed(result)


async def last_order(session: AsyncSession, user_id: int) -> Order | None:
    return (
        await session.execute(
            select(Order)
            .where(Order.user_id == user_id, Order.status != OrderStatus.CANCELLED)
            .order_by(Order.id.desc())
            .limit(1)
        )
    ).scalar_one_or_none()


async def trial_used(session: AsyncSession, user_id: int) -> bool:
    return bool(
        (
            await session.execute(
                select(exists().where(LedgerEntry.user_id == user_id, LedgerEntry.reason == LedgerReason.TRIAL))
            )
        ).scalar_one()
    )


CREDITS_PACK = "credits"  # the pack id of an order paid from the balance (its size is the order's photos)


async def create_spend_order(
    session: AsyncSession,
    *,
    user_id: int,
    avatar_id: int,
    style: str,
    photos: int,
    spend_key: str,
    created_by: str | None = None,
) -> Order | None:
    """An order paid from the balance, once per ``spend_key``; None when that key was spent already.

    The UNIQUE (user_id, spend_key) decides, not a look-up first: two taps that arrive together
    cannot both insert. ``created_by``: the tap that spent it (see ``spent_by``).
    """
    inserted = await session.execute(
        insert_for(session, Order)
        .values(
            user_id=user_id,
            avatar_id=avatar_id,
            style=style,
            pack=CREDITS_PACK,
            photos=photos,
            status=OrderStatus.READY,
            spend_key=spend_key,
            created_by=created_by,
            created_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=[Order.user_id, Order.spend_key])
        .returning(Order.id)
    )
    order_id = inserted.scalar_one_or_none()
    return None if order_id is None else await session.get(Order, order_id)


async def spent_by(session: AsyncSession, user_id: int, spend_key: str, tap: str) -> Order | None:
    """The order ``spend_key`` was spent on, if the tap ``tap`` spent it (that tap delivered again)."""
    return (
        await session.execute(
            select(Order).where(Order.user_id == user_id, Order.spend_key == spend_key, Order.created_by == tap)
        )
    ).scalar_one_or_none()
