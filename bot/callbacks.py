"""Callback data factories. Each carries the id of what it acts on, so stale buttons are detectable."""

from __future__ import annotations

from enum import StrEnum

from aiogram.filters.callback_data import CallbackData

# Actions are enums: forged or stale data fails to unpack, and the tap falls through to the
# stale-button answer like any unknown data. Their values are what buttons already sent carry.


class MenuAction(StrEnum):
    NEW = "new"
    REUSE = "reuse"
    GIFT = "gift"


class MenuCb(CallbackData, prefix="m"):
    action: MenuAction


class UploadAction(StrEnum):
    DONE = "done"


class UploadCb(CallbackData, prefix="u"):
    action: UploadAction
    avatar_id: int


class StyleCb(CallbackData, prefix="s"):
    avatar_id: int
    style: str


class PackCb(CallbackData, prefix="p"):
    avatar_id: int
    style: str
    pack_id: str


class SpendCb(CallbackData, prefix="sp"):
    """A pack of ``photos`` paid from the balance, from the pack picker."""

    avatar_id: int
    style: str
    photos: int


class OrderAction(StrEnum):
    PAY = "pay"
    CHANGE = "change"
    CANCEL = "cancel"
    START = "start"


class OrderCb(CallbackData, prefix="o"):
    order_id: int
    action: OrderAction


class PayMethod(StrEnum):
    YOOKASSA = "yookassa"
    STARS = "stars"


class PayCb(CallbackData, prefix="pay"):
    order_id: int
    method: PayMethod


class CheckCb(CallbackData, prefix="chk"):
    payment_id: int


class JobAction(StrEnum):
    CANCEL = "cancel"


class JobCb(CallbackData, prefix="j"):
    job_id: int
    action: JobAction


class AgainCb(CallbackData, prefix="again"):
    avatar_id: int  # a new pack with this photo set


class ResultsAction(StrEnum):
    ORIGINALS = "originals"  # asks "all or favourites only?" when the pack has favourites
    CREDITS = "credits"
    ORIGINALS_ALL = "orig_all"
    ORIGINALS_FAVOURITES = "orig_fav"
    PROFILE_PHOTO = "profile"


class ResultsCb(CallbackData, prefix="r"):
    job_id: int
    action: ResultsAction


class ForgetCb(CallbackData, prefix="forget"):
    confirm: bool


class RedoCb(CallbackData, prefix="rd"):
    """Redo for one credit: the portrait's message and the reply that asked (one redo per reply)."""

    portrait: int
    request: int


class ResendCb(CallbackData, prefix="rs"):
    job_id: int
    chunk: int  # the album whose arrival a crash left unknown


class SettingsCb(CallbackData, prefix="set"):
    reminders: bool  # the value the tap sets (not a flip): a repeated tap changes nothing more


class GiftAction(StrEnum):
    PACK = "pack"  # buy this pack as a gift
    REFUND = "refund"  # the buyer takes an unopened gift back


class GiftCb(CallbackData, prefix="g"):
    action: GiftAction
    pack_id: str = ""  # PACK only
    gift_id: int = 0  # REFUND only


# ---------------------------------------------------------------- admin buttons
# One factory per admin area; each action is an enum, as above.


class AdminJobAction(StrEnum):
    RETRY = "retry"
    CANCEL = "cancel"
    RESEND = "resend"


class AdminJobCb(CallbackData, prefix="aj"):
    action: AdminJobAction
    job_id: int


class AdminUserAction(StrEnum):
    GRANT = "grant"
    BAN = "ban"
    UNBAN = "unban"


class AdminUserCb(CallbackData, prefix="au"):
    action: AdminUserAction
    user_id: int  # our users.id, not the Telegram id
    photos: int = 0  # grant only


class AdminProviderAction(StrEnum):
    PAUSE = "pause"
    RESUME = "resume"
    PRIMARY = "primary"


class AdminProviderCb(CallbackData, prefix="ap"):
    action: AdminProviderAction
    name: str


class BroadcastSegment(StrEnum):
    ALL = "all"
    PAID = "paid"
    NEVER_PAID = "never_paid"
    LANG_RU = "lang_ru"
    LANG_EN = "lang_en"


class AdminBroadcastAction(StrEnum):
    SEGMENT = "seg"
    SEND = "send"
    DISCARD = "drop"
    STOP = "stop"


class AdminBroadcastCb(CallbackData, prefix="ab"):
    action: AdminBroadcastAction
    broadcast_id: int
    segment: BroadcastSegment | None = None  # SEGMENT only
