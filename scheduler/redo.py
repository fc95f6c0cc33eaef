"""Redo by reply: a user replies 🔁 (or "redo", "ещё", /redo) to a delivered portrait and gets a new
take of it (same prompt, new seed) as a reply to it.

A redo is an ordinary 1-portrait generation job (storage/redos.py), so dispatch, fallback, the
likeness check, storage, crash-safe delivery and the ledger all apply as to any pack. Each pack
includes ``free_per_pack`` free redos; after them a redo costs one credit, taken only after the
user's one-tap confirmation. One reply (its message id) is at most one redo: Telegram may deliver
the same update twice, and the confirmation button may be tapped twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from scheduler.signals import WorkSignals
from storage import avatars as avatar_queries
from storage import deliveries, ledger, redos
from storage.jobs import NotEnoughCredits
from storage.models import GenerationJob, GenerationTask, User
from studio.redo import RedoKind, redo_kind
from studio.states import AvatarStatus


class RedoOutcome(StrEnum):
    QUEUED = "queued"  # a redo is on its way (``kind`` says how it is paid)
    CONFIRM = "confirm"  # the free redos are used: ask before taking a credit
    NO_CREDITS = "no_credits"  # the free redos are used and the balance is empty
    ALREADY = "already"  # this reply asked already (a repeated update, a second tap)
    NOT_PORTRAIT = "not_portrait"  # the reply is to a message that is not one of the user's portraits
    NO_REPLY = "no_reply"  # a trigger word that replies to nothing
    PHOTOS_GONE = "photos_gone"  # the pack's selfies were deleted: nothing to make a new take from


@dataclass(frozen=True, slots=True)
class RedoAnswer:
    outcome: RedoOutcome
    kind: RedoKind | None = None
    free_left: int = 0
    balance: int = 0


class RedoService:
    def __init__(
        self, sessionmaker: async_sessionmaker[AsyncSession], *, signals: WorkSignals, free_per_pack: int
    ) -> None:
        self.sessionmaker = sessionmaker
        self.signals = signals
        self.free_per_pack = free_per_pack

    async def request(self, user: User, chat_id: int, portrait_message_id: int | None, message_id: int) -> RedoAnswer:
        """A reply with a trigger word: a free redo at once, or the question whether to spend a credit."""
        return await self._redo(user, chat_id, portrait_message_id, message_id, may_pay=False)

    async def confirm(self, user: User, chat_id: int, portrait_message_id: int, message_id: int) -> RedoAnswer:
        """The confirmation's button: the redo that reply asked for, for one credit (free again if a
        free redo came back to the allowance meanwhile)."""
        return await self._redo(user, chat_id, portrait_message_id, message_id, may_pay=True)

    async def _redo(
        self, user: User, chat_id: int, portrait_message_id: int | None, message_id: int, *, may_pay: bool
    ) -> RedoAnswer:
        if portrait_message_id is None:
            return RedoAnswer(RedoOutcome.NO_REPLY)
        async with self.sessionmaker() as session:
            task = await deliveries.portrait_for_message(session, chat_id, portrait_message_id)
            pack = await redos.pack_of(session, task) if task is not None else None
            if task is None or pack is None or pack.user_id != user.id:
                return RedoAnswer(RedoOutcome.NOT_PORTRAIT)
            request = redos.reply_request(message_id)
            if await redos.find(session, pack.id, request) is not None:
                return RedoAnswer(RedoOutcome.ALREADY)
            if not await self._selfies_kept(session, pack):
                return RedoAnswer(RedoOutcome.PHOTOS_GONE)
            await ledger.lock_user(session, user.id)  # redos of one user take turns: none overdraws the allowance
            used = await redos.free_redos_used(session, pack.id)
            kind = redo_kind(used, self.free_per_pack)
            balance = await ledger.balance(session, user.id)
            if kind == RedoKind.PAID and balance < 1:
                return RedoAnswer(RedoOutcome.NO_CREDITS, kind)
            if kind == RedoKind.PAID and not may_pay:
                return RedoAnswer(RedoOutcome.CONFIRM, kind, balance=balance)
            answer = await self._queue(session, pack, task, kind, request, portrait_message_id)
            if answer.outcome != RedoOutcome.QUEUED:
                await session.rollback()
                return answer
            free_left = max(self.free_per_pack - used - (kind == RedoKind.FREE), 0)
            balance = await ledger.balance(session, user.id)
            await session.commit()
        self.signals.job_queued()
        return RedoAnswer(RedoOutcome.QUEUED, kind, free_left=free_left, balance=balance)

    @staticmethod
    async def _queue(
        session: AsyncSession,
        pack: GenerationJob,
        task: GenerationTask,
        kind: RedoKind,
        request: str,
        portrait_message_id: int,
    ) -> RedoAnswer:
        try:
            job = await redos.create_redo(
                session, pack=pack, sources=[task], kind=kind, request=request, reply_to_message_id=portrait_message_id
            )
        except NotEnoughCredits:
            return RedoAnswer(RedoOutcome.NO_CREDITS, kind)
        return RedoAnswer(RedoOutcome.QUEUED if job is not None else RedoOutcome.ALREADY, kind)

    @staticmethod
    async def _selfies_kept(session: AsyncSession, pack: GenerationJob) -> bool:
        if pack.avatar_id is None:
            return False
        avatar = await avatar_queries.get_avatar(session, pack.avatar_id, pack.user_id)
        return avatar is not None and avatar.status == AvatarStatus.READY
