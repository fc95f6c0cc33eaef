"""Referrals: who invited whom, and the inviter's link and figures.

The bonus itself is paid by delivery, in the transaction that finishes the invited user's pack
(``storage.gifts.pay_referral``): paid only for a delivered pack bought by a payment that still
stands, once per invited user (the ledger reference names the invitee). A refund after that does
not take the bonus back: the pack was delivered, and the bonus rewards the invitation, not the
money (an admin can still correct a balance with /grant).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from scheduler.accounts import AccountService
from storage import gifts as queries
from storage.models import User


@dataclass(frozen=True, slots=True)
class InviteView:
    """What /invite shows: the user's link parameter and what it has brought so far."""

    start_parameter: str
    invited: int
    paid: int
    bonus: int


class ReferralService:
    def __init__(
        self, sessionmaker: async_sessionmaker[AsyncSession], *, accounts: AccountService, bonus_photos: int
    ) -> None:
        self.sessionmaker = sessionmaker
        self.accounts = accounts
        self.bonus_photos = bonus_photos

    async def started(self, user: User, inviter_telegram_id: int | None, *, first_time: bool) -> bool:
        """``/start ref_<id>``: a new user's first /start remembers the inviter (never themselves; a
        known user opening someone's link changes nothing). Returns what /start returns."""
        if first_time and inviter_telegram_id is not None:
            async with self.sessionmaker() as session:
                await queries.set_referrer(session, user.id, inviter_telegram_id)
                await session.commit()
        return await self.accounts.started(user.id, source="ref", first_time=first_time)

    async def invite(self, user: User) -> InviteView:
        async with self.sessionmaker() as session:
            invited, paid = await queries.invited_count(session, user.id)
        return InviteView(f"ref_{user.telegram_id}", invited, paid, self.bonus_photos)
