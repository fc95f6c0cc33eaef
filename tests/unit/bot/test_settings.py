"""Settings: the configuration contract, validated at start, with one clear line on errors."""

from __future__ import annotations

import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from bot.settings import SettingsError, load_settings, parse_limit
from studio.credits import Currency

ROOT = Path(__file__).resolve().parents[3]
GOOD_TOKEN = "123456:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.isupper() or k in {"PATH", "HOME", "LANG"}}
    env.update(extra)
    return env


@pytest.fixture(autouse=True)
def _no_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env is read
    for name in ("BOT_TOKEN", "ADMIN_IDS", "YOOKASSA_TRUSTED_IPS", "WEBHOOK_SECRET", "TELEGRAM_PROXY"):
        monkeypatch.delenv(name, raising=False)


def test_defaults_follow_the_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOT_TOKEN", GOOD_TOKEN)
    settings = load_settings()
    assert settings.DATABASE_URL == "sqlite+aiosqlite:///./data/pinglass.db"
    assert settings.TELEGRAM_API_URL == "https://api.telegram.org"
    assert settings.WEB_PORT == 8080
    assert settings.STORAGE_BACKEND == "local"
    assert settings.KIE_MODEL == "nano-banana-2"
    assert settings.REPLICATE_MODEL == "google/nano-banana-pro"
    assert settings.POLL_INTERVAL_SECONDS == 60
    assert settings.STARS_ENABLED is True
    assert "185.71.76.0/27" in settings.YOOKASSA_TRUSTED_IPS
    # Derived from the token: every process of a deploy, started with the same token, agrees on it.
    assert len(settings.webhook_secret) >= 32
    assert settings.webhook_secret == load_settings().webhook_secret
    assert settings.webhook_secret != GOOD_TOKEN and settings.FSM_RETENTION_DAYS == 30
    assert not settings.yookassa_enabled


def test_admin_ids_are_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOT_TOKEN", GOOD_TOKEN)
    monkeypatch.setenv("ADMIN_IDS", "1, 22,333")
    assert load_settings().ADMIN_IDS == [1, 22, 333]


def test_what_can_be_paid_in_follows_the_configured_providers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOT_TOKEN", GOOD_TOKEN)
    assert load_settings().payable_currencies == (Currency.STARS,)  # Stars need no setup
    card = {"YOOKASSA_SHOP_ID": "shop", "YOOKASSA_SECRET_KEY": "secret"}
    assert load_settings(**card).payable_currencies == (Currency.RUB, Currency.STARS)
    assert load_settings(**card, STARS_ENABLED=False).payable_currencies == (Currency.RUB,)
    assert load_settings(STARS_ENABLED=False).payable_currencies == ()


def test_secrets_do_not_print(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOT_TOKEN", GOOD_TOKEN)
    assert GOOD_TOKEN not in repr(load_settings())


@pytest.mark.parametrize(("value", "word"), [(None, "is not set"), ("not-a-token", "is malformed")])
def test_bad_token_is_one_clear_error(monkeypatch: pytest.MonkeyPatch, value: str | None, word: str) -> None:
    if value is not None:
        monkeypatch.setenv("BOT_TOKEN", value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    message = str(info.value)
    assert message.startswith(f"BOT_TOKEN {word}")
    assert "@BotFather" in message
    assert "\n" not in message


def test_bad_trusted_ip_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOT_TOKEN", GOOD_TOKEN)
    monkeypatch.setenv("YOOKASSA_TRUSTED_IPS", "10.0.0.0/8,not-an-ip")
    with pytest.raises(SettingsError, match="YOOKASSA_TRUSTED_IPS"):
        load_settings()


def test_status_budgets_default_to_the_documented_limits_and_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOT_TOKEN", GOOD_TOKEN)
    settings = load_settings()
    assert parse_limit(settings.KIE_STATUS_LIMIT) == (10, 1.0)  # recordInfo: 10/s per key (kie.md §3.3)
    assert parse_limit(settings.REPLICATE_STATUS_LIMIT) == (50, 1.0)  # 3000/min (replicate.md §7), smoothly
    monkeypatch.setenv("KIE_STATUS_LIMIT", "ten per second")
    with pytest.raises(SettingsError, match="KIE_STATUS_LIMIT"):
        load_settings()


@pytest.mark.parametrize("module", ["bot", "scheduler"])
def test_process_without_token_prints_one_line_and_exits(tmp_path: Path, module: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", module],
        cwd=tmp_path,
        env=_clean_env(PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "BOT_TOKEN" in lines[0] and "@BotFather" in lines[0]
    assert "Traceback" not in result.stderr


def test_env_example_lists_every_setting_and_readme_documents_them() -> None:
    from bot.settings import Settings

    example = (ROOT / ".env.example").read_text()
    readme = (ROOT / "README.md").read_text()
    for name in Settings.model_fields:
        assert f"{name}=" in example, f"{name} missing from .env.example"
        assert f"`{name}`" in readme, f"{name} missing from the README's configuration table"


def test_a_configured_webhook_secret_wins_and_a_proxy_must_be_a_proxy_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOT_TOKEN", GOOD_TOKEN)
    monkeypatch.setenv("WEBHOOK_SECRET", "shared-secret")
    assert load_settings().webhook_secret == "shared-secret"
    monkeypatch.setenv("TELEGRAM_PROXY", "socks5://user:pass@127.0.0.1:1080")
    assert load_settings().TELEGRAM_PROXY.get_secret_value().startswith("socks5://")
    monkeypatch.setenv("TELEGRAM_PROXY", "ftp://proxy:21")
    with pytest.raises(SettingsError, match="TELEGRAM_PROXY is invalid"):
        load_settings()


def test_an_unknown_model_stops_the_start_with_one_line_naming_the_known_ones(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bot"],
        cwd=tmp_path,
        env=_clean_env(PYTHONPATH=str(ROOT), BOT_TOKEN=GOOD_TOKEN, KIE_API_KEY="key", KIE_MODEL="nano-banana-9"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "KIE_MODEL" in lines[0] and "'nano-banana-9'" in lines[0]
    assert "nano-banana-2" in lines[0] and "nano-banana-pro" in lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("REPLICATE_MODEL", "someone/unknown", ("unknown Replicate model", "google/nano-banana-pro")),
        ("REPLICATE_MODEL", "zsxkib/flux-pulid", ("community model",)),
        ("KIE_PRICE_PER_IMAGE", "-1", ("greater than or equal to 0",)),
        ("RUB_PER_USD", "lots", ("decimal",)),
    ],
)
def test_models_and_prices_are_checked(monkeypatch: pytest.MonkeyPatch, name: str, value: str, words: tuple) -> None:
    monkeypatch.setenv("BOT_TOKEN", GOOD_TOKEN)
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as error:
        load_settings()
    assert str(error.value).startswith(f"{name} is invalid: ")
    assert "Value error" not in str(error.value)
    for word in words:
        assert word in str(error.value)


def test_prices_default_to_the_model_table_and_an_empty_override_means_the_table(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BOT_TOKEN", GOOD_TOKEN)
    monkeypatch.setenv("KIE_PRICE_PER_IMAGE", "")
    monkeypatch.setenv("REPLICATE_PRICE_PER_IMAGE", "0.12")
    settings = load_settings()
    assert settings.KIE_PRICE_PER_IMAGE is None
    assert settings.REPLICATE_PRICE_PER_IMAGE == Decimal("0.12")
    assert settings.usd_rates == {Currency.RUB: Decimal(0), Currency.STARS: Decimal(0)}


def test_the_generator_needs_its_token_and_an_address_for_its_reference_links(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOT_TOKEN", GOOD_TOKEN)
    monkeypatch.setenv("GENERATOR_URL", "http://10.0.0.5:8000/")
    with pytest.raises(SettingsError, match="GENERATOR_TOKEN is required"):
        load_settings()
    monkeypatch.setenv("GENERATOR_TOKEN", "token")
    with pytest.raises(SettingsError, match="GENERATOR_FILES_URL"):
        load_settings()
    monkeypatch.setenv("PUBLIC_URL", "https://bot.example.com")
    settings = load_settings()
    assert settings.GENERATOR_URL == "http://10.0.0.5:8000"
    assert settings.generator_files_url == "https://bot.example.com"
    monkeypatch.setenv("GENERATOR_FILES_URL", "http://10.0.0.2:8080/")
    assert load_settings().generator_files_url == "http://10.0.0.2:8080"
    monkeypatch.setenv("GENERATOR_FILES_URL", "ftp://10.0.0.2")
    with pytest.raises(SettingsError, match="GENERATOR_FILES_URL is invalid"):
        load_settings()


def test_fallback_policy_is_checked_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOT_TOKEN", GOOD_TOKEN)
    monkeypatch.setenv("FALLBACK_POLICY", "selfhosted,kie,replicate")
    assert load_settings().FALLBACK_POLICY == "selfhosted,kie,replicate"
    monkeypatch.setenv("FALLBACK_POLICY", "kie,midjourney")
    with pytest.raises(SettingsError, match=r"FALLBACK_POLICY is invalid: .*unknown providers"):
        load_settings()
