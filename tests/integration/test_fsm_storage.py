"""The database FSM storage: aiogram's contract on SQLite and PostgreSQL, and housekeeping forgets stale steps."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from aiogram.fsm.state import State, StatesGroup
from aiogram.fsm.storage.base import StorageKey
from sqlalchemy import func, select

from scheduler.housekeeping import Housekeeping
from storage.db import create_engine, create_sessionmaker
from storage.files import LocalFileStore
from storage.fsm import DatabaseStorage, update_session
from storage.migrate import upgrade_async
from storage.models import Event, FsmRecord, utcnow


class Steps(StatesGroup):
    first = State()


async def test_state_and_data_round_trip_and_a_finished_conversation_leaves_no_row(
    database_url: str, tmp_path: Path
) -> None:
    await upgrade_async(database_url)
    engine = create_engine(database_url)
    sessionmaker = create_sessionmaker(engine)
    storage = DatabaseStorage(sessionmaker)
    key = StorageKey(bot_id=1, chat_id=42, user_id=42)
    other_bot = StorageKey(bot_id=2, chat_id=42, user_id=42)
    try:
        assert await storage.get_state(key) is None and await storage.get_data(key) == {}
        await storage.set_state(key, Steps.first)
        await storage.set_data(key, {"avatar_id": 7, "style": None, "names": ["a", "ё"]})
        assert await storage.update_data(key, {"pack": "p7"}) == {
            "avatar_id": 7,
            "style": None,
            "names": ["a", "ё"],
            "pack": "p7",
        }
        # A second storage over the same database is a restarted process: it sees the same step.
        restarted = DatabaseStorage(sessionmaker)
        assert await restarted.get_state(key) == "Steps:first"
        assert (await restarted.get_data(key))["pack"] == "p7"
        assert await restarted.get_state(other_bot) is None

        await restarted.set_state(key, None)
        assert await restarted.get_data(key) != {}  # data outlives a cleared state until it is cleared too
        await restarted.set_data(key, {})
        async with sessionmaker() as session:
            assert await session.scalar(select(func.count()).select_from(FsmRecord)) == 0

        await storage.set_state(key, Steps.first)
        housekeeping = Housekeeping(
            sessionmaker,
            LocalFileStore(tmp_path / "files"),
            reference_retention=timedelta(days=30),
            result_retention=timedelta(days=90),
            conversation_retention=timedelta(days=30),
        )
        assert (await housekeeping.run(now=utcnow() + timedelta(days=29))).conversations == 0
        assert await storage.get_state(key) == "Steps:first"
        assert (await housekeeping.run(now=utcnow() + timedelta(days=31))).conversations == 1
        assert await storage.get_state(key) is None
    finally:
        await engine.dispose()


async def test_a_look_at_the_step_inside_an_update_holds_no_connection(database_url: str) -> None:
    """A read that opened the update's transaction ends it (the update may wait long, e.g. for an
    album's other photos); a transaction the update had open before stays open, its writes uncommitted."""
    await upgrade_async(database_url)
    engine = create_engine(database_url)
    sessionmaker = create_sessionmaker(engine)
    storage = DatabaseStorage(sessionmaker)
    key = StorageKey(bot_id=1, chat_id=43, user_id=43)
    try:
        async with sessionmaker() as session:
            token = update_session.set(session)
            try:
                assert await storage.get_state(key) is None
                assert not session.in_transaction()
                assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]  # QueuePool

                session.add(Event(name="fsm_read_test"))
                await session.flush()
                assert await storage.get_data(key) == {}
                assert session.in_transaction()
                await session.rollback()
            finally:
                update_session.reset(token)
        async with sessionmaker() as session:
            assert await session.scalar(select(func.count()).where(Event.name == "fsm_read_test")) == 0
    finally:
        await engine.dispose()
