"""SQLAlchemy 2 models: the durable state of PinGlass (see DESIGN.md "Data").

Statuses are stored as strings whose vocabulary lives in ``studio.states``; every status change
is a conditional UPDATE (a job's or task's in ``storage.transitions``, others in their query
modules), never an in-place read-modify-write.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from studio.generation import CLAIM_KEY_LENGTH

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both SQLite (which drops tzinfo) and PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use aware UTC datetimes")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime,
        dict[str, Any]: JSON,
        list[Any]: JSON,
    }


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    telegram_id: Mapped[int] = mapped_column(BigInteger, unique=True)
    username: Mapped[str | None] = mapped_column(String(64))
    first_name: Mapped[str | None] = mapped_column(String(128))
    language: Mapped[str] = mapped_column(String(8), default="ru")
    source: Mapped[str | None] = mapped_column(String(64))
    referrer_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    email: Mapped[str | None] = mapped_column(String(254))
    is_banned: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    is_blocked: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    # /settings: gentle reminders (an unpaid order, idle credits, originals about to be deleted).
    reminders_enabled: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))
    max_active_jobs: Mapped[int] = mapped_column(Integer, default=1, server_default=text("1"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)


class Avatar(Base):
    __tablename__ = "avatars"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="collecting")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    ready_at: Mapped[datetime | None] = mapped_column()


class ReferencePhoto(Base):
    __tablename__ = "reference_photos"
    __table_args__ = (
        UniqueConstraint("avatar_id", "sha256"),
        UniqueConstraint("avatar_id", "file_unique_id"),
        # Slots 1..8: a concurrent ninth photo collides here instead of slipping in.
        UniqueConstraint("avatar_id", "slot"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    avatar_id: Mapped[int] = mapped_column(ForeignKey("avatars.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    slot: Mapped[int] = mapped_column(Integer)
    storage_key: Mapped[str] = mapped_column(String(255))
    size_bytes: Mapped[int] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    file_unique_id: Mapped[str | None] = mapped_column(String(128))
    face_embedding: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Order(Base):
    __tablename__ = "orders"
    # A pack paid from the balance names what it was spent from (a job's returned credits, a tap in
    # the pack picker): one source, one order, however often the button is tapped. An order chosen in
    # the picker names the tap (callback query id) that chose it: Telegram posts a tap again when the
    # process died before answering it, and the second delivery must find this order, not add one.
    __table_args__ = (UniqueConstraint("user_id", "spend_key"), UniqueConstraint("user_id", "created_by"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    avatar_id: Mapped[int | None] = mapped_column(ForeignKey("avatars.id", ondelete="SET NULL"))
    style: Mapped[str] = mapped_column(String(32))
    pack: Mapped[str] = mapped_column(String(32))
    photos: Mapped[int] = mapped_column(Integer)
    price_rub_kopecks: Mapped[int] = mapped_column(Integer, default=0)
    price_stars: Mapped[int] = mapped_column(Integer, default=0)
    # The currency and amount actually paid (minor units: kopecks, or whole Stars).
    currency: Mapped[str | None] = mapped_column(String(8))
    amount: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(24), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    paid_at: Mapped[datetime | None] = mapped_column()
    spend_key: Mapped[str | None] = mapped_column(String(64))
    created_by: Mapped[str | None] = mapped_column(String(64))


class Payment(Base):
    __tablename__ = "payments"
    __table_args__ = (
        UniqueConstraint("provider", "provider_payment_id"),
        Index("ix_payments_status_checked", "status", "last_checked_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    provider: Mapped[str] = mapped_column(String(16))
    provider_payment_id: Mapped[str | None] = mapped_column(String(128))
    idempotence_key: Mapped[str] = mapped_column(String(64), unique=True)
    amount: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(16))
    confirmation_url: Mapped[str | None] = mapped_column(Text)
    status_history: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_checked_at: Mapped[datetime | None] = mapped_column()


class Refund(Base):
    """Money we return for one payment: written before the provider is asked, so a crash or an
    outage between the decision and the provider's answer leaves a row the settle job finishes.
    ``provider_refund_id`` is kept so the refund is re-fetched, never re-created after YooKassa's
    24 h Idempotence-Key window."""

    __tablename__ = "refunds"
    __table_args__ = (
        UniqueConstraint("provider", "provider_refund_id"),
        Index("ix_refunds_status", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    payment_id: Mapped[int] = mapped_column(ForeignKey("payments.id", ondelete="CASCADE"), index=True)
    provider: Mapped[str] = mapped_column(String(16))
    provider_refund_id: Mapped[str | None] = mapped_column(String(128))
    idempotence_key: Mapped[str] = mapped_column(String(64), unique=True)
    reason: Mapped[str] = mapped_column(String(24))
    amount: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class LedgerEntry(Base):
    __tablename__ = "ledger"
    __table_args__ = (UniqueConstraint("reason", "reference"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    delta: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(16))
    reference: Mapped[str] = mapped_column(String(128))
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id", ondelete="SET NULL"))
    job_id: Mapped[int | None] = mapped_column(ForeignKey("generation_jobs.id", ondelete="SET NULL"))
    payment_id: Mapped[int | None] = mapped_column(ForeignKey("payments.id", ondelete="SET NULL"))
    note: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Gift(Base):
    """A pack paid by ``buyer_id`` for whoever opens its link first. The order is the gift's
    purchase (paid through the usual payment machinery); the row's status moves only by conditional
    UPDATEs (studio.gifts.GiftStatus), so of an opener and a refund, or two openers, exactly one wins."""

    __tablename__ = "gifts"
    __table_args__ = (Index("ix_gifts_buyer_status", "buyer_id", "status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(16), unique=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), unique=True)
    buyer_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    pack: Mapped[str] = mapped_column(String(32))
    photos: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    payment_id: Mapped[int | None] = mapped_column(ForeignKey("payments.id", ondelete="SET NULL"))
    redeemed_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    paid_at: Mapped[datetime | None] = mapped_column()
    redeemed_at: Mapped[datetime | None] = mapped_column()
    refunded_at: Mapped[datetime | None] = mapped_column()


class PromoCode(Base):
    """An admin's offer of ``photos`` credits: once per user (the ledger's UNIQUE reference), at most
    ``max_uses`` users (a conditional UPDATE of ``used``), until ``expires_at``."""

    __tablename__ = "promo_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(16), unique=True)
    photos: Mapped[int] = mapped_column(Integer)
    max_uses: Mapped[int] = mapped_column(Integer)
    used: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    expires_at: Mapped[datetime] = mapped_column()
    created_by: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class GenerationJob(Base):
    __tablename__ = "generation_jobs"
    __table_args__ = (
        # The dispatch queue: paid first, then oldest.
        Index("ix_generation_jobs_queue", "status", "priority", "created_at"),
        Index("ix_generation_jobs_user_status", "user_id", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id", ondelete="SET NULL"), unique=True)
    avatar_id: Mapped[int | None] = mapped_column(ForeignKey("avatars.id", ondelete="SET NULL"))
    chat_id: Mapped[int] = mapped_column(BigInteger)
    language: Mapped[str] = mapped_column(String(8), default="ru")
    style: Mapped[str] = mapped_column(String(32))
    priority: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    photos_total: Mapped[int] = mapped_column(Integer)
    photos_completed: Mapped[int] = mapped_column(Integer, default=0)
    photos_failed: Mapped[int] = mapped_column(Integer, default=0)
    progress_message_id: Mapped[int | None] = mapped_column(BigInteger)
    provider_refs: Mapped[dict[str, Any]] = mapped_column(default=dict)
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None] = mapped_column()
    # One process delivers a job at a time (several may run the scheduler): who, and until when.
    delivery_owner: Mapped[str | None] = mapped_column(String(64))
    delivery_lease_until: Mapped[datetime | None] = mapped_column()
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column()
    first_image_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()
    delivered_at: Mapped[datetime | None] = mapped_column()


class GenerationTask(Base):
    __tablename__ = "generation_tasks"
    __table_args__ = (
        UniqueConstraint("job_id", "prompt_index", "variant"),
        # Due polls and retries, in (next_poll_at, id) order; MIN(next_poll_at) per status.
        Index("ix_generation_tasks_due", "status", "next_poll_at", "id"),
        # The claim queue: pending tasks in claim order, read a few at a time without a sort.
        Index("ix_generation_tasks_claim", "status", "claim_key"),
        Index("ix_generation_tasks_provider_task", "provider", "provider_task_id"),
        Index("ix_generation_tasks_job_status", "job_id", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("generation_jobs.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    prompt_index: Mapped[int] = mapped_column(Integer)
    variant: Mapped[int] = mapped_column(Integer, default=0)
    seed: Mapped[int] = mapped_column(BigInteger)
    # The task's place in the claim queue (studio.generation.claim_key), fixed at fan-out.
    claim_key: Mapped[str] = mapped_column(String(CLAIM_KEY_LENGTH))
    provider: Mapped[str | None] = mapped_column(String(32))
    provider_index: Mapped[int] = mapped_column(Integer, default=0)
    provider_task_id: Mapped[str | None] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    polls: Mapped[int] = mapped_column(Integer, default=0)
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None] = mapped_column()
    next_poll_at: Mapped[datetime | None] = mapped_column()
    submitted_at: Mapped[datetime | None] = mapped_column()
    provider_done_at: Mapped[datetime | None] = mapped_column()
    stored_at: Mapped[datetime | None] = mapped_column()
    delivered_at: Mapped[datetime | None] = mapped_column()
    result_url: Mapped[str | None] = mapped_column(Text)
    result_key: Mapped[str | None] = mapped_column(String(255))
    thumb_key: Mapped[str | None] = mapped_column(String(255))
    telegram_file_id: Mapped[str | None] = mapped_column(String(255))
    identity_score: Mapped[float | None] = mapped_column(Float)
    flagged: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    # Regenerations because the portrait did not look like the person (face checks); feeds /stats.
    identity_redos: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    # The model of the last create, and what every create of this portrait cost at the price of
    # the model that ran it, in millionths of a USD (studio/costs.py): exact on SQLite and PostgreSQL.
    model: Mapped[str | None] = mapped_column(String(160))
    cost_micros: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    # Grid packs (migration 0010): the tasks of one 2×2 grid share ``grid_group`` within the job, each
    # is one panel (``grid_slot`` 0..3, row-major); the slot-0 task's create makes the grid for all
    # four. NULL for ordinary tasks.
    grid_group: Mapped[int | None] = mapped_column(Integer)
    grid_slot: Mapped[int | None] = mapped_column(Integer)
    # The main face in the stored portrait, [left, top, size] in its pixels, as the identity check
    # found it (migration 0012): the profile photo is cropped around it. NULL when not checked.
    face_box: Mapped[list[Any] | None] = mapped_column()
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Delivery(Base):
    __tablename__ = "deliveries"
    __table_args__ = (UniqueConstraint("job_id", "chunk_index"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("generation_jobs.id", ondelete="CASCADE"))
    chunk_index: Mapped[int] = mapped_column(Integer)
    task_ids: Mapped[list[Any]] = mapped_column(default=list)
    status: Mapped[str] = mapped_column(String(16))
    message_ids: Mapped[list[Any]] = mapped_column(default=list)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column()


class PortraitMessage(Base):
    """Which portrait a chat message shows: written when its album or photo is confirmed, so a reply
    to a portrait or a reaction on it (Telegram names only the chat and the message) finds its task."""

    __tablename__ = "portrait_messages"

    chat_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    message_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("generation_tasks.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Favourite(Base):
    """A portrait its owner marked with a positive reaction (migration 0012); the reaction's removal
    deletes the row, so the table is the current state, not a history (that is the events)."""

    __tablename__ = "favourites"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    task_id: Mapped[int] = mapped_column(
        ForeignKey("generation_tasks.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class ExampleSet(Base):
    """Style previews (studio/examples.py): an admin's reference photos (an avatar of theirs) and the
    free jobs, one per style, that turn them into example portraits. The live set is the picker's."""

    __tablename__ = "example_sets"
    __table_args__ = (Index("ix_example_sets_status", "status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_by: Mapped[int] = mapped_column(BigInteger)  # the admin's Telegram id
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    avatar_id: Mapped[int | None] = mapped_column(ForeignKey("avatars.id", ondelete="SET NULL"))
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    live_at: Mapped[datetime | None] = mapped_column()


class ExampleJob(Base):
    """A job that makes examples: it holds no credits (nothing reserved, nothing released) and its
    portraits outlive retention while they are shown."""

    __tablename__ = "example_jobs"

    job_id: Mapped[int] = mapped_column(ForeignKey("generation_jobs.id", ondelete="CASCADE"), primary_key=True)
    set_id: Mapped[int] = mapped_column(ForeignKey("example_sets.id", ondelete="CASCADE"), index=True)


class StyleExample(Base):
    """One example portrait of a style in a set, and the Telegram file id it was last sent as (so it is
    uploaded once, then only named)."""

    __tablename__ = "style_examples"
    __table_args__ = (UniqueConstraint("set_id", "style", "position"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    set_id: Mapped[int] = mapped_column(ForeignKey("example_sets.id", ondelete="CASCADE"))
    style: Mapped[str] = mapped_column(String(32))
    position: Mapped[int] = mapped_column(Integer)
    task_id: Mapped[int] = mapped_column(ForeignKey("generation_tasks.id", ondelete="CASCADE"))
    file_id: Mapped[str | None] = mapped_column(String(255))


class Redo(Base):
    """A new take of delivered portraits (studio/redo.py): a reply's redo of one portrait, or the
    likeness guarantee's redo of a pack's unlike ones. Its job is an ordinary generation job (engine,
    delivery, ledger); this row says which pack it belongs to, what it redoes and how it was paid.
    ``request`` names what asked for it ("reply:<message id>", "guarantee"): a repeated update or a
    second tap finds this row instead of adding one."""

    __tablename__ = "redos"
    __table_args__ = (UniqueConstraint("pack_job_id", "request"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    pack_job_id: Mapped[int] = mapped_column(ForeignKey("generation_jobs.id", ondelete="CASCADE"))
    job_id: Mapped[int] = mapped_column(ForeignKey("generation_jobs.id", ondelete="CASCADE"), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    request: Mapped[str] = mapped_column(String(64))
    # The portrait each task of the job redoes, by position.
    source_task_ids: Mapped[list[Any]] = mapped_column(default=list)
    reply_to_message_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Event(Base):
    __tablename__ = "events"
    __table_args__ = (Index("ix_events_name_created", "name", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(48))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    job_id: Mapped[int | None] = mapped_column(BigInteger)
    properties: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


# ---------------------------------------------------------------- admin (issue 7)


class AuditLog(Base):
    """Every admin action: who (Telegram id), what, on what, when, and the details of the answer."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_created", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    admin_telegram_id: Mapped[int] = mapped_column(BigInteger)
    action: Mapped[str] = mapped_column(String(32))
    target: Mapped[str | None] = mapped_column(String(128))
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class UserBan(Base):
    """Why and by whom a user is banned, and whether the one polite notice went out."""

    __tablename__ = "user_bans"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    banned_by: Mapped[int | None] = mapped_column(BigInteger)
    reason: Mapped[str | None] = mapped_column(String(255))
    banned_at: Mapped[datetime] = mapped_column(default=utcnow)
    notified_at: Mapped[datetime | None] = mapped_column()


class ProviderOverride(Base):
    """Run-time provider switches set by admins; every engine re-reads them every few seconds."""

    __tablename__ = "provider_overrides"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    paused: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    is_primary: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    updated_by: Mapped[int | None] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Broadcast(Base):
    __tablename__ = "broadcasts"
    # A draft names the admin's message it was made from: that message delivered again is one draft.
    __table_args__ = (
        Index("ix_broadcasts_status", "status"),
        UniqueConstraint("created_by", "source_message_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_by: Mapped[int] = mapped_column(BigInteger)
    text: Mapped[str] = mapped_column(Text)
    photo_file_id: Mapped[str | None] = mapped_column(String(255))
    source_message_id: Mapped[int | None] = mapped_column(BigInteger)
    segment: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    total: Mapped[int] = mapped_column(Integer, default=0)
    sent: Mapped[int] = mapped_column(Integer, default=0)
    blocked: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()


class BroadcastRecipient(Base):
    """One line per user a broadcast reached (or tried to): the log, and the resume point after a restart."""

    __tablename__ = "broadcast_recipients"
    __table_args__ = (UniqueConstraint("broadcast_id", "user_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    broadcast_id: Mapped[int] = mapped_column(ForeignKey("broadcasts.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Reminder(Base):
    """One reminder per user, cause and what it is about, claimed BEFORE it is sent: a crash between
    the claim and the send loses that reminder, and nothing can ever send it twice."""

    __tablename__ = "reminders"
    __table_args__ = (UniqueConstraint("user_id", "cause", "reference"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    cause: Mapped[str] = mapped_column(String(32))
    reference: Mapped[str] = mapped_column(String(64))
    # claimed → sent | blocked | failed, once Telegram has answered.
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# Indexes for /stats, whose queries filter these tables by time (see bench/bench_stats.py).
Index("ix_users_created_at", User.created_at)
Index("ix_orders_paid_at", Order.paid_at)
Index("ix_generation_jobs_created_at", GenerationJob.created_at)
Index("ix_ledger_reason_created", LedgerEntry.reason, LedgerEntry.created_at)


class FsmRecord(Base):
    """One chat's conversation step and its data (aiogram FSM), so a restart resumes where the user was."""

    __tablename__ = "fsm_states"
    __table_args__ = (Index("ix_fsm_states_updated_at", "updated_at"),)

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    state: Mapped[str | None] = mapped_column(String(255))
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ProcessHeartbeat(Base):
    """A running process and its role ("bot" or "scheduler"); a bot without Redis must be alone."""

    __tablename__ = "process_heartbeats"

    instance_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    beat_at: Mapped[datetime] = mapped_column(default=utcnow)


class DeployMarker(Base):
    """A named fact shared by every process of a deploy (e.g. which webhook registration is current)."""

    __tablename__ = "deploy_markers"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(255))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
