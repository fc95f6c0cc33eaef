"""Structured log lines (logfmt and JSON) and the redaction of secrets in everything a line carries."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from bot.logging_setup import REDACTED, LogfmtFormatter, Redactor, build_formatter, configure_logging
from bot.settings import Settings

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
KIE_KEY = "kie-live-key-0123456789abcdef"
YOOKASSA_KEY = "live_Zyx987654321secret"


def _record(message: str, *args: object, exc: BaseException | None = None, **extra: object) -> logging.LogRecord:
    record = logging.getLogger("pinglass.test").makeRecord(
        "pinglass.test",
        logging.WARNING,
        __file__,
        1,
        message,
        args,
        (type(exc), exc, exc.__traceback__) if exc else None,
        extra=extra,
    )
    return record


def test_redactor_replaces_secrets_and_any_bot_token_shape() -> None:
    redact = Redactor([KIE_KEY, "", "abc"])  # empty and too-short values are ignored, not matched everywhere
    assert redact(f"Bearer {KIE_KEY}!") == f"Bearer {REDACTED}!"
    # httpx logs the Bot API URL, which carries a token even if it is not one we configured.
    url = f"POST https://api.telegram.org/bot{TOKEN}/sendMessage"
    assert redact(url) == f"POST https://api.telegram.org/bot{REDACTED}/sendMessage"
    assert redact("abc def") == "abc def"


def test_logfmt_line_has_ids_and_is_one_line_even_with_a_traceback() -> None:
    formatter = build_formatter("text", [TOKEN, KIE_KEY])
    try:
        raise RuntimeError(f"call with key {KIE_KEY}\nsecond line")
    except RuntimeError as error:
        record = _record("task %s failed: %s", 9, f"token {TOKEN}", exc=error, job_id=3, task_id=9, user_id=7)
    line = formatter.format(record)
    assert "\n" not in line
    assert line.startswith("ts=") and " level=WARNING logger=pinglass.test " in line
    assert "job_id=3 task_id=9 user_id=7" in line
    assert 'msg="task 9 failed: token ***"' in line
    assert TOKEN not in line and KIE_KEY not in line
    assert "RuntimeError" in line and "error=" in line


def test_json_line_flattens_event_fields_and_redacts_values() -> None:
    formatter = build_formatter("json", [YOOKASSA_KEY])
    record = _record("event %s", "payment_succeeded", fields={"event": "payment_succeeded", "note": YOOKASSA_KEY})
    body = json.loads(formatter.format(record))
    assert body["msg"] == "event payment_succeeded"
    assert body["event"] == "payment_succeeded" and body["note"] == REDACTED
    assert body["level"] == "WARNING" and body["ts"].endswith("Z")


def test_logfmt_quotes_values_that_need_it() -> None:
    line = LogfmtFormatter(Redactor([])).format(_record("x", reason='a "quoted" value', empty=None, flag=True))
    assert 'reason="a \\"quoted\\" value"' in line and "empty=null" in line and "flag=true" in line


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    try:
        yield root
    finally:
        for handler in list(root.handlers):
            if handler not in handlers:
                root.removeHandler(handler)
        root.setLevel(level)


def test_configure_logging_from_settings_redacts_every_secret_and_replaces_itself(
    root_logger: logging.Logger,
) -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        BOT_TOKEN=TOKEN,
        KIE_API_KEY=KIE_KEY,
        YOOKASSA_SHOP_ID="123",
        YOOKASSA_SECRET_KEY=YOOKASSA_KEY,
        REPLICATE_API_TOKEN="r8_replicate_token_value",
        S3_SECRET_KEY="s3-secret-value",
        WEBHOOK_SECRET="webhook-secret-value",
        LOG_FORMAT="json",
    )
    stream = io.StringIO()
    from bot.app import configure_logging as configure_from_settings

    configure_from_settings(settings, stream=io.StringIO())
    configure_from_settings(settings, stream=stream)  # again: replaces the first handler, no doubled lines
    logging.getLogger("httpx").warning("HTTP Request: GET https://api.telegram.org/bot%s/getMe", TOKEN)
    logging.getLogger("pinglass.test").error(
        "secrets %s %s %s %s", KIE_KEY, YOOKASSA_KEY, "r8_replicate_token_value", "s3-secret-value"
    )
    logging.getLogger("pinglass.test").error("hook %s", settings.WEBHOOK_SECRET.get_secret_value())
    text = stream.getvalue()
    # Only the three records above count: the root handler also catches whatever else logs meanwhile
    # (e.g. the garbage collector reporting an earlier test's unclosed session).
    records = [json.loads(line) for line in text.splitlines()]
    ours = [record for record in records if record["logger"] in {"httpx", "pinglass.test"}]
    assert len(ours) == 3
    for secret in settings.secret_values():
        assert secret not in text
    assert text.count(REDACTED) == 6
    handlers = [handler for handler in root_logger.handlers if getattr(handler, "stream", None) is stream]
    ours = [h for h in root_logger.handlers if type(h).__name__ == "PinGlassLogHandler"]
    assert len(handlers) == 1 and len(ours) == 1


def test_configure_logging_levels(root_logger: logging.Logger) -> None:
    stream = io.StringIO()
    configure_logging("warning", stream=stream)
    logging.getLogger("pinglass.test").info("not shown")
    logging.getLogger("pinglass.test").warning("shown", extra={"job_id": 1})
    assert stream.getvalue().count("\n") == 1 and "job_id=1" in stream.getvalue()


def test_access_log_extras_are_not_repeated() -> None:
    record = logging.getLogger("aiohttp.access").makeRecord(
        "aiohttp.access", logging.INFO, __file__, 1, "GET /healthz 200", (), None, extra={"request_header": {"A": "b"}}
    )
    line = build_formatter("text", []).format(record)
    assert "request_header" not in line and 'msg="GET /healthz 200"' in line


def test_a_tick_skipped_while_its_job_runs_is_not_logged(root_logger: logging.Logger) -> None:
    stream = io.StringIO()
    configure_logging("warning", stream=stream)
    scheduler_log = logging.getLogger("apscheduler.scheduler")
    job = "engine-submit (trigger: interval[0:00:02], next run at: 2026-12-08 00:00:02 UTC)"
    scheduler_log.warning('Execution of job "%s" skipped: maximum number of running instances reached (%d)', job, 1)
    scheduler_log.warning('Run time of job "%s" was missed by %s', job, "0:00:05")
    assert "maximum number" not in stream.getvalue() and "was missed by" in stream.getvalue()
