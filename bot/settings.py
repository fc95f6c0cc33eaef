"""Configuration contract of PinGlass (names are fixed by DESIGN.md; tests and tools use them)."""

from __future__ import annotations

import hashlib
import hmac
import re
from decimal import Decimal
from ipaddress import ip_network
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from providers.kie import check_kie_model
from providers.replicate import check_replicate_model
from studio.credits import Currency
from studio.policy import PolicyError, parse_fallback_policy

# A Bot API token is "<bot id>:<35 url-safe characters>"; we accept any reasonable length.
BOT_TOKEN_PATTERN = re.compile(r"^\d{1,20}:[A-Za-z0-9_-]{20,100}$")
WEBHOOK_SECRET_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
PROXY_SCHEMES = ("http", "https", "socks4", "socks5")

# YooKassa's published notification sources (mid-2026, see docs/yookassa.md §2.4).
YOOKASSA_PUBLISHED_RANGES = (
    "185.71.76.0/27,185.71.77.0/27,77.75.153.0/25,77.75.156.11/32,77.75.156.35/32,77.75.154.128/25,2a02:5180::/32"
)


def _split_csv(value: object) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=True)

    BOT_TOKEN: SecretStr
    ADMIN_IDS: Annotated[list[int], NoDecode] = Field(default_factory=list)
    DATABASE_URL: str = "sqlite+aiosqlite:///./data/pinglass.db"
    REDIS_URL: str = ""
    TELEGRAM_API_URL: str = "https://api.telegram.org"
    PUBLIC_URL: str = ""
    WEB_HOST: str = "0.0.0.0"
    WEB_PORT: int = 8080
    # Empty: derived from BOT_TOKEN (see webhook_secret), so every process of a deploy agrees on it.
    WEBHOOK_SECRET: SecretStr = SecretStr("")
    # http://, https://, socks4:// or socks5:// proxy for every Bot API call (user:password@ allowed).
    TELEGRAM_PROXY: SecretStr = SecretStr("")
    # Conversations nobody continued for this long are forgotten by housekeeping.
    FSM_RETENTION_DAYS: int = Field(default=30, ge=1)
    AUTO_MIGRATE: bool = True
    LOG_LEVEL: str = "INFO"
    # "text": logfmt key=value lines; "json": one JSON object per line. Both are redacted.
    LOG_FORMAT: Literal["text", "json"] = "text"

    STORAGE_BACKEND: Literal["local", "s3"] = "local"
    LOCAL_STORAGE_DIR: str = "./data/files"
    S3_BUCKET: str = ""
    S3_ENDPOINT_URL: str = ""
    S3_REGION: str = "us-east-1"
    S3_ACCESS_KEY: SecretStr = SecretStr("")
    S3_SECRET_KEY: SecretStr = SecretStr("")

    KIE_API_KEY: SecretStr = SecretStr("")
    KIE_API_URL: str = "https://api.kie.ai"
    KIE_UPLOAD_URL: str = "https://kieai.redpandaai.co"
    KIE_MODEL: str = "nano-banana-2"
    KIE_WEBHOOK_HMAC_KEY: SecretStr = SecretStr("")

    REPLICATE_API_TOKEN: SecretStr = SecretStr("")
    REPLICATE_API_URL: str = "https://api.replicate.com"
    REPLICATE_MODEL: str = "google/nano-banana-pro"
    REPLICATE_WEBHOOK_SECRET: SecretStr = SecretStr("")
    # Provider prices are in USD per image (the unit of the model tables in providers/); empty: the
    # table's price for the configured model. /stats converts revenue to USD with the rates below
    # (how many roubles / Stars one USD is worth); 0: unknown, and no margin is shown in that currency.
    KIE_PRICE_PER_IMAGE: Decimal | None = Field(default=None, ge=0)
    REPLICATE_PRICE_PER_IMAGE: Decimal | None = Field(default=None, ge=0)
    RUB_PER_USD: Decimal = Field(default=Decimal(0), ge=0)
    STARS_PER_USD: Decimal = Field(default=Decimal(0), ge=0)

    # Our own generator (docs/generator.md): a provider only when GENERATOR_URL is set.
    GENERATOR_URL: str = ""
    GENERATOR_TOKEN: SecretStr = SecretStr("")
    # Signs the generator's webhooks; empty: the generator is polled and never asked to call back.
    GENERATOR_WEBHOOK_SECRET: SecretStr = SecretStr("")
    # This app as the generator reaches it, for the signed /files links to the selfies (often a
    # private address beside the GPU box); empty: PUBLIC_URL.
    GENERATOR_FILES_URL: str = ""

    YOOKASSA_SHOP_ID: str = ""
    YOOKASSA_SECRET_KEY: SecretStr = SecretStr("")
    YOOKASSA_API_URL: str = "https://api.yookassa.ru/v3"
    YOOKASSA_RETURN_URL: str = ""
    YOOKASSA_TRUSTED_IPS: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: _split_csv(YOOKASSA_PUBLISHED_RANGES)
    )
    # Behind a reverse proxy: the header carrying the client address, trusted only from these peers.
    YOOKASSA_TRUSTED_PROXY_HEADER: str = ""
    YOOKASSA_TRUSTED_PROXIES: Annotated[list[str], NoDecode] = Field(default_factory=list)
    YOOKASSA_RECEIPTS: bool = False
    YOOKASSA_VAT_CODE: int = 1
    STARS_ENABLED: bool = True

    POLL_INTERVAL_SECONDS: float = 60.0
    # Account-wide create budgets as "<calls>/<seconds>" (Kie drops, not queues, what exceeds it).
    KIE_CREATE_LIMIT: str = "20/10"
    REPLICATE_CREATE_LIMIT: str = "600/60"
    GENERATOR_CREATE_LIMIT: str = "10/1"
    # Status-call budgets (polls and callback re-fetches), same format: Kie allows 10 recordInfo/s per
    # key; Replicate 3000 requests/min for everything but creates, admitted smoothly as 50/s.
    KIE_STATUS_LIMIT: str = "10/1"
    REPLICATE_STATUS_LIMIT: str = "50/1"
    GENERATOR_STATUS_LIMIT: str = "50/1"
    # The retry/fallback policy as JSON (studio.policy.FallbackPolicy.to_dict()); empty: defaults.
    FALLBACK_POLICY: str = ""
    DISPATCH_TICK_SECONDS: float = 2.0
    # A process that claimed a task and died holds it at most this long; also how long a reported
    # result may stay undownloaded before another process fetches it.
    TASK_LEASE_SECONDS: float = 90.0
    RECOVER_INTERVAL_SECONDS: float = 15.0
    THROTTLE_UPDATES_PER_SECOND: float = 3.0
    MAX_PHOTO_BYTES: int = 20 * 1024 * 1024
    MIN_PHOTO_SIDE: int = 512
    # Face checks (dlib): selfies at upload, the set as a whole, every generated portrait.
    FACE_CHECKS: bool = True
    FACE_MIN_SIZE_PX: int = Field(default=120, ge=1)
    FACE_MIN_SIZE_RATIO: float = Field(default=0.2, ge=0, le=1)
    FACE_BLUR_MIN: float = Field(default=15.0, ge=0)
    FACE_MATCH_MAX_DISTANCE: float = Field(default=0.55, gt=0, le=2)
    IDENTITY_MIN_SCORE: float = Field(default=0.4, ge=0, le=1)
    # Redo by reply: free new takes per pack; after them one credit each (studio/redo.py).
    FREE_REDOS_PER_PACK: int = Field(default=3, ge=0, le=100)
    # The likeness guarantee: this share of a pack's portraits (rounded up) passes the identity check,
    # or the missing ones are redone free and what still fails is credited back; 0 turns it off.
    LIKENESS_GUARANTEE: float = Field(default=0.65, ge=0, le=1)
    REFERENCE_RETENTION_DAYS: int = 30
    RESULT_RETENTION_DAYS: int = 90
    # Credits for the inviter when an invited user's first paid pack is delivered (0: no bonus).
    REFERRAL_BONUS_PHOTOS: int = Field(default=3, ge=0, le=100)
    # Rejected selfies a user may send per hour; beyond it nothing more is downloaded or checked.
    INTAKE_REJECTS_PER_HOUR: int = Field(default=20, ge=1)
    # Bearer token for /metrics and the detail of /healthz; empty: both open (bind WEB_HOST privately).
    METRICS_TOKEN: SecretStr = SecretStr("")
    # Kie credits below which the admins are alerted (once per crossing; 0: never). 1 credit ≈ $0.005.
    KIE_BALANCE_ALERT_BELOW: float = Field(default=1000.0, ge=0)
    # Result downloads: https only, from the provider's own hosts plus these (a leading dot: any
    # subdomain), never to private or link-local addresses; loopback over http only for local fakes.
    DOWNLOAD_ALLOWED_HOSTS: Annotated[list[str], NoDecode] = Field(default_factory=list)
    DOWNLOAD_ALLOW_LOOPBACK: bool = False
    DOWNLOAD_MAX_REDIRECTS: int = Field(default=3, ge=0, le=10)
    TELEGRAM_GLOBAL_RATE: float = 25.0
    TELEGRAM_CHAT_RATE: float = Field(default=1.0, gt=0)
    # A lone ready portrait waits this long for company before it goes alone (delivery streams albums).
    ALBUM_WINDOW_SECONDS: float = Field(default=3.0, ge=0)

    @field_validator("BOT_TOKEN")
    @classmethod
    def _token_shape(cls, value: SecretStr) -> SecretStr:
        if not BOT_TOKEN_PATTERN.match(value.get_secret_value()):
            raise ValueError("malformed")
        return value

    @field_validator("WEBHOOK_SECRET")
    @classmethod
    def _webhook_secret_shape(cls, value: SecretStr) -> SecretStr:
        if value.get_secret_value() and not WEBHOOK_SECRET_PATTERN.match(value.get_secret_value()):
            raise ValueError("must be 1-256 characters of A-Z a-z 0-9 _ -")
        return value

    @field_validator("TELEGRAM_PROXY")
    @classmethod
    def _proxy_shape(cls, value: SecretStr) -> SecretStr:
        url = value.get_secret_value()
        if url and (urlsplit(url).scheme not in PROXY_SCHEMES or not urlsplit(url).hostname):
            raise ValueError("must be a URL like http://host:port or socks5://user:password@host:port")
        return value

    @field_validator(
        "ADMIN_IDS", "YOOKASSA_TRUSTED_IPS", "YOOKASSA_TRUSTED_PROXIES", "DOWNLOAD_ALLOWED_HOSTS", mode="before"
    )
    @classmethod
    def _csv(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("KIE_PRICE_PER_IMAGE", "REPLICATE_PRICE_PER_IMAGE", mode="before")
    @classmethod
    def _empty_price(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("KIE_MODEL")
    @classmethod
    def _kie_model(cls, value: str) -> str:
        check_kie_model(value)
        return value

    @field_validator("REPLICATE_MODEL")
    @classmethod
    def _replicate_model(cls, value: str) -> str:
        check_replicate_model(value)
        return value

    @field_validator("YOOKASSA_TRUSTED_IPS", "YOOKASSA_TRUSTED_PROXIES")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for item in value:
            ip_network(item, strict=False)
        return value

    @field_validator(
        "PUBLIC_URL",
        "TELEGRAM_API_URL",
        "KIE_API_URL",
        "KIE_UPLOAD_URL",
        "REPLICATE_API_URL",
        "GENERATOR_URL",
        "GENERATOR_FILES_URL",
    )
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @property
    def yookassa_enabled(self) -> bool:
        return bool(self.YOOKASSA_SHOP_ID and self.YOOKASSA_SECRET_KEY.get_secret_value())

    @property
    def payable_currencies(self) -> tuple[Currency, ...]:
        """What a user can pay in: roubles by card when YooKassa is set up, and Telegram Stars."""
        return tuple(
            currency
            for currency, enabled in ((Currency.RUB, self.yookassa_enabled), (Currency.STARS, self.STARS_ENABLED))
            if enabled
        )

    @property
    def usd_rates(self) -> dict[Currency, Decimal]:
        """Units of each revenue currency one USD is worth, for the margin /stats shows (0: unknown)."""
        return {Currency.RUB: self.RUB_PER_USD, Currency.STARS: self.STARS_PER_USD}

    @property
    def callbacks_enabled(self) -> bool:
        return bool(self.PUBLIC_URL)

    @field_validator(
        "KIE_CREATE_LIMIT",
        "REPLICATE_CREATE_LIMIT",
        "GENERATOR_CREATE_LIMIT",
        "KIE_STATUS_LIMIT",
        "REPLICATE_STATUS_LIMIT",
        "GENERATOR_STATUS_LIMIT",
    )
    @classmethod
    def _limit_shape(cls, value: str) -> str:
        parse_limit(value)
        return value

    @field_validator("GENERATOR_URL", "GENERATOR_FILES_URL")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if value and (urlsplit(value).scheme not in ("http", "https") or not urlsplit(value).hostname):
            raise ValueError("must be an http(s) URL like http://10.0.0.5:8000")
        return value

    @field_validator("FALLBACK_POLICY")
    @classmethod
    def _policy_shape(cls, value: str) -> str:
        try:
            parse_fallback_policy(value)
        except PolicyError as error:
            raise ValueError(str(error)) from None
        return value

    @model_validator(mode="after")
    def _generator_complete(self) -> Settings:
        if self.GENERATOR_URL and not self.GENERATOR_TOKEN.get_secret_value():
            raise ValueError("GENERATOR_TOKEN is required when GENERATOR_URL is set")
        if self.GENERATOR_URL and not self.generator_files_url:
            raise ValueError("GENERATOR_FILES_URL (or PUBLIC_URL) is required when GENERATOR_URL is set")
        return self

    @property
    def generator_files_url(self) -> str:
        """Where the generator fetches the selfies' signed /files links from."""
        return self.GENERATOR_FILES_URL or self.PUBLIC_URL

    def secret_values(self) -> list[str]:
        """Every configured secret as text: the log redactor replaces each wherever it appears."""
        values = [value.get_secret_value() for value in self.__dict__.values() if isinstance(value, SecretStr)]
        return [value for value in values if value] + [self.file_url_secret.hex(), self.webhook_secret]

    @property
    def webhook_secret(self) -> str:
        """Telegram's ``secret_token``: WEBHOOK_SECRET, or derived from the token so every process agrees."""
        configured = self.WEBHOOK_SECRET.get_secret_value()
        if configured:
            return configured
        return hmac.new(
            self.BOT_TOKEN.get_secret_value().encode(), b"pinglass-telegram-webhook", hashlib.sha256
        ).hexdigest()

    @property
    def file_url_secret(self) -> bytes:
        """Signs our own file URLs; derived from the token so every process agrees on it."""
        return hmac.new(self.BOT_TOKEN.get_secret_value().encode(), b"pinglass-file-urls", hashlib.sha256).digest()


def parse_limit(value: str) -> tuple[int, float]:
    """ "20/10" → (20, 10.0): at most 20 calls in any 10 seconds."""
    calls, _, seconds = value.partition("/")
    try:
        parsed = int(calls), float(seconds)
    except ValueError:
        raise ValueError("must look like <calls>/<seconds>, e.g. 20/10") from None
    if parsed[0] < 1 or parsed[1] <= 0:
        raise ValueError("must look like <calls>/<seconds>, e.g. 20/10")
    return parsed


class SettingsError(Exception):
    """A configuration problem, explained in one line for the operator."""


_HINTS = {
    "BOT_TOKEN": "set BOT_TOKEN to your bot's token from @BotFather in Telegram "
    "(in the environment or in .env; see .env.example)",
}


def load_settings(**overrides: object) -> Settings:
    """Build settings, turning validation errors into one clear line."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]  # any field by keyword: pydantic validates each
    except ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0]) if first["loc"] else "configuration"
        if name in _HINTS:
            state = "is not set" if first["type"] == "missing" else "is malformed"
            raise SettingsError(f"{name} {state}: {_HINTS[name]}") from None
        # pydantic prefixes a validator's own message with "Value error, ": the message says it all.
        message = str(first["msg"]).removeprefix("Value error, ")
        raise SettingsError(f"{name} is invalid: {message} (see .env.example)") from None
