"""The housekeeping job: retention of selfies and portraits, and files that no row points to."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage import fsm, heartbeats, retention
from storage.files import FileStore
from storage.models import utcnow

log = logging.getLogger(__name__)

# A file is written before the row that points to it commits; younger files may be mid-upload.
ORPHAN_GRACE = timedelta(hours=6)
# A process silent this long is certainly gone; its heartbeat row only clutters the table.
SILENT_PROCESS_RETENTION = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class HousekeepingReport:
    reference_sets: int = 0
    reference_files: int = 0
    result_files: int = 0
    orphan_files: int = 0
    conversations: int = 0


class Housekeeping:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        files: FileStore,
        *,
        reference_retention: timedelta,
        result_retention: timedelta,
        orphan_grace: timedelta = ORPHAN_GRACE,
        conversation_retention: timedelta | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.files = files
        self.reference_retention = reference_retention
        self.result_retention = result_retention
        self.orphan_grace = orphan_grace
        self.conversation_retention = conversation_retention

    async def run(self, now: datetime | None = None) -> HousekeepingReport:
        """One pass; ``now`` is a parameter so tests can move time instead of waiting for it."""
        now = now or utcnow()
        async with self.sessionmaker() as session:
            avatar_ids = await retention.avatars_due(session, now - self.reference_retention)
            reference_keys = await retention.remove_reference_photos(session, avatar_ids)
            result_keys = await retention.remove_results_stored_before(session, now - self.result_retention)
            conversations = 0
            if self.conversation_retention is not None:
                conversations = await fsm.remove_stale(session, now - self.conversation_retention)
            await heartbeats.remove_silent(session, now - SILENT_PROCESS_RETENTION)
            await session.commit()
        await self._delete(reference_keys + result_keys)
        orphans = await self._sweep_orphans(now)
        report = HousekeepingReport(len(avatar_ids), len(reference_keys), len(result_keys), orphans, conversations)
        if any((report.reference_sets, report.result_files, report.orphan_files, report.conversations)):
            log.info(
                "housekeeping: reference_sets=%s reference_files=%s result_files=%s orphan_files=%s conversations=%s",
                report.reference_sets,
                report.reference_files,
                report.result_files,
                report.orphan_files,
                report.conversations,
            )
        return report

    async def _sweep_orphans(self, now: datetime) -> int:
        stored = [item for prefix in retention.STORE_PREFIXES for item in await self.files.list_objects(prefix)]
        old_enough = [item.key for item in stored if item.modified_at < now - self.orphan_grace]
        if not old_enough:
            return 0
        # Read the referenced set after listing: a row committed meanwhile is then seen, not swept.
        async with self.sessionmaker() as session:
            referenced = await retention.referenced_keys(session)
        orphans = [key for key in old_enough if key not in referenced]
        await self._delete(orphans)
        return len(orphans)

    async def _delete(self, keys: list[str]) -> None:
        for key in keys:
            await self.files.delete(key)
