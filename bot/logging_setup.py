"""Structured, redacted logs: one line per record, as logfmt (``LOG_FORMAT=text``) or JSON (``json``).

Context goes in through ``extra`` (``log.info("task failed", extra={"job_id": 3, "task_id": 9})``)
and comes out as ``job_id=3 task_id=9`` or JSON keys. A record's ``fields`` dict (analytics events
use it) is flattened the same way.

Redaction happens on the fully rendered line, after the message, arguments, extra fields and any
traceback are put together, so nothing can slip past it: every configured secret (bot token, API
keys, webhook and signing secrets, S3 and YooKassa keys) and anything shaped like a Bot API token
(httpx logs request URLs, and the Bot API URL carries the token) becomes ``***``. Payment bodies
are never logged by our code; the provider SDKs' body logging stays off (YooKassa logs only when a
logger is configured on its global ``Configuration``, which we never do).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import IO, Any, Literal

REDACTED = "***"
# "<bot id>:<secret>" wherever it appears, including inside https://api.telegram.org/bot<token>/...
BOT_TOKEN_SHAPE = re.compile(r"(?<![0-9])\d{5,20}:[A-Za-z0-9_-]{30,100}")
# Secrets this short would redact ordinary words; real ones are far longer.
MIN_SECRET_LENGTH = 6

# Attributes every LogRecord has; anything else on a record came in through ``extra``.
_STANDARD_ATTRIBUTES = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}
_BARE_VALUE = re.compile(r"^[A-Za-z0-9_.:/@+-]+$")
# aiohttp's access log repeats its whole line as extras (request headers among them): the line is enough.
_EXTRAS_IGNORED_FROM = ("aiohttp.access",)


class Redactor:
    """Replaces configured secrets and token-shaped strings in rendered text."""

    def __init__(self, secrets: Iterable[str]) -> None:
        # Longest first, so a secret that contains another is replaced whole.
        self.secrets = sorted({s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return BOT_TOKEN_SHAPE.sub(REDACTED, text)


def context_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The record's ``extra`` context (``fields`` flattened), in the order it was given."""
    fields: dict[str, Any] = {}
    if record.name.startswith(_EXTRAS_IGNORED_FROM):
        return fields
    for key, value in record.__dict__.items():
        if key in _STANDARD_ATTRIBUTES or key.startswith("_"):
            continue
        if key == "fields" and isinstance(value, dict):
            fields.update(value)
        else:
            fields[key] = value
    return fields


def _timestamp(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _StructuredFormatter(logging.Formatter):
    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        error = None
        if record.exc_info:
            error = self.formatException(record.exc_info)
        elif record.exc_text:
            error = record.exc_text
        if record.stack_info:
            error = f"{error}\n{self.formatStack(record.stack_info)}" if error else self.formatStack(record.stack_info)
        return self.redactor(self.render(record, message, error))

    def render(self, record: logging.LogRecord, message: str, error: str | None) -> str:
        raise NotImplementedError


class LogfmtFormatter(_StructuredFormatter):
    """``ts=… level=INFO logger=… msg="…" job_id=3``: greppable, one line even with a traceback."""

    def render(self, record: logging.LogRecord, message: str, error: str | None) -> str:
        parts = [
            f"ts={_timestamp(record)}",
            f"level={record.levelname}",
            f"logger={record.name}",
            f"msg={_logfmt_value(message)}",
        ]
        parts.extend(f"{key}={_logfmt_value(value)}" for key, value in context_fields(record).items())
        if error:
            parts.append(f"error={_logfmt_value(error)}")
        return " ".join(parts)


class JsonFormatter(_StructuredFormatter):
    """One JSON object per line, for log shippers."""

    def render(self, record: logging.LogRecord, message: str, error: str | None) -> str:
        body: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "msg": message,
        }
        for key, value in context_fields(record).items():
            body.setdefault(key, value)
        if error:
            body["error"] = error
        return json.dumps(body, ensure_ascii=False, default=str)


def _logfmt_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    if text and _BARE_VALUE.match(text):
        return text
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'"{escaped}"'


def build_formatter(kind: Literal["text", "json"], secrets: Iterable[str]) -> logging.Formatter:
    redactor = Redactor(secrets)
    return JsonFormatter(redactor) if kind == "json" else LogfmtFormatter(redactor)


class PinGlassLogHandler(logging.StreamHandler):  # type: ignore[type-arg]  # generic in typeshed only
    """Marks the handler we installed, so configuring again replaces it instead of doubling lines."""


def configure_logging(
    level: str,
    *,
    log_format: Literal["text", "json"] = "text",
    secrets: Iterable[str] = (),
    stream: IO[str] | None = None,
) -> logging.Handler:
    """Install the one root handler (structured, redacted) and quiet the chatty libraries."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, PinGlassLogHandler):
            root.removeHandler(handler)
            handler.close()
    handler = PinGlassLogHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(build_formatter(log_format, secrets))
    root.addHandler(handler)
    root.setLevel(level.upper())
    # aiogram logs every handled update at INFO: noise at our scale. httpx's one INFO line per request
    # stays (it shows which process called which provider); its Bot API URLs are redacted like the rest.
    for name in ("aiogram.event", "apscheduler"):
        logging.getLogger(name).setLevel(logging.WARNING)
    handler.addFilter(_skipped_tick_filter)
    return handler


def _skipped_tick_filter(record: logging.LogRecord) -> bool:
    """Every job runs one instance at a time: a tick that falls due while its job still runs (a burst of
    creates paced for a minute) is skipped by design, not a warning every tick."""
    return not (record.name == "apscheduler.scheduler" and "maximum number of running instances" in str(record.msg))
