"""Callback data factories. Each carries the id of what it acts on, so stale buttons are detectable."""

from __future__ import annotations

from aiogram.filters.callback_data import CallbackData


class MenuCb(CallbackData, prefix="m"):
    action: str  # "new" | "reuse"


class UploadCb(CallbackData, prefix="u"):
    action: str  # "done"
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


class OrderCb(CallbackData, prefix="o"):
    order_id: int
    action: str  # "pay" | "change" | "cancel" | "start"


class PayCb(CallbackData, prefix="pay"):
    order_id: int
    method: str  # "yookassa" | "stars"


class CheckCb(CallbackData, prefix="chk"):
    payment_id: int


class JobCb(CallbackData, prefix="j"):
    job_id: int
    action: str  # "cancel"


class AgainCb(CallbackData, prefix="again"):
    avatar_id: int  # a new pack with this photo set


class ResultsCb(CallbackData, prefix="r"):
    job_id: int
    action: str  # "originals" | "credits"


class ForgetCb(CallbackData, prefix="forget"):
    confirm: bool


class ResendCb(CallbackData, prefix="rs"):
    job_id: int
    chunk: int  # the album whose arrival a crash left unknown
