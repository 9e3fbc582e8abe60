"""Every setting the bot reads from its environment, in one typed, frozen object.

Values come from the process environment first, then from a `.env` file in
the working directory (python-dotenv), then from the defaults below.
`.env.example` documents each variable. Logging is configured here too, because
the one secret in these settings, the token, must never reach a log line.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import sys
import threading
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from dotenv import dotenv_values

ENV_FILE = Path(".env")
DEFAULT_KNOWLEDGE_DIR = Path("knowledge")
DEFAULT_DATABASE_PATH = Path("data/bot.sqlite3")

_TOKEN = re.compile(r"\d+:[A-Za-z0-9_-]{20,}")
_SECRET = re.compile(r"[A-Za-z0-9_-]{1,256}")  # what Telegram accepts as a webhook secret_token
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

MISSING_TOKEN_HELP = """\
TELEGRAM_BOT_TOKEN is not set.
Set it in the environment or in a .env file in the current directory (see .env.example), e.g.
    TELEGRAM_BOT_TOKEN=123456789:AAH...
Get a token from @BotFather in Telegram (send it /newbot).
To try the knowledge base without Telegram, run: python -m bot shell"""


REPLICA_SECRET_HELP = """\
WEBHOOK_SECRET is not set, and DATABASE_URL says this bot may run as several replicas behind one WEBHOOK_URL.
Every replica registers the webhook with its secret, so they must all share one: a random secret per start would
make each new replica lock the others out. Set the same WEBHOOK_SECRET (A-Z a-z 0-9 _ -, e.g. from
`python -c "import secrets; print(secrets.token_urlsafe(32))"`) for every replica."""


class ConfigError(Exception):
    """A setting is missing or malformed; the message says what to set and how."""


@dataclass(frozen=True, slots=True)
class Settings:
    token: str = field(default="", repr=False)    # never shown, even in a traceback's locals
    base_url: str | None = None                  # a self-hosted Bot API server, e.g. http://localhost:8081/bot
    knowledge_dir: Path = DEFAULT_KNOWLEDGE_DIR
    database_path: Path = DEFAULT_DATABASE_PATH
    database_url: str | None = field(default=None, repr=False)   # PostgreSQL (may hold a password); None: SQLite
    admin_ids: frozenset[int] = frozenset()
    webhook_url: str | None = None                # set: webhook mode; unset: long polling
    webhook_secret: str | None = field(default=None, repr=False)   # webhook mode: WEBHOOK_SECRET or a random one
    webhook_listen: str = "0.0.0.0"
    webhook_port: int = 8443
    log_level: str = "INFO"
    user_rate_limit: int = 20                     # requests per user per minute; 0 turns the limit off
    retention_days: int = 90                      # delivered deliveries and statistics older go; 0 keeps them

    allow_private_sources: bool = False           # sources may be on private, loopback and link-local addresses


def environment(environ: Mapping[str, str] | None = None, env_file: Path | None = ENV_FILE) -> dict[str, str]:
    """The process environment over the `.env` file: a deployment's variables always win."""
    merged: dict[str, str] = {}
    if env_file is not None and env_file.is_file():
        merged.update((k, v) for k, v in dotenv_values(env_file).items() if v is not None)
    merged.update(os.environ if environ is None else environ)
    return merged


def _value(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = _value(env, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, not {value}")
    return value


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = (_value(env, name) or "0").lower()
    if raw not in ("0", "1", "true", "false", "yes", "no"):
        raise ConfigError(f"{name} must be 1 (on) or 0 (off), not {raw!r}")
    return raw in ("1", "true", "yes")


def _admin_ids(raw: str | None) -> frozenset[int]:
    """Numeric ids only: usernames can be changed or taken over, ids cannot."""
    ids = set()
    for part in (raw or "").replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        if not re.fullmatch(r"-?\d+", part):
            raise ConfigError(
                f"ADMIN_IDS must be comma-separated numeric Telegram user ids, not {part!r} "
                "(usernames are not accepted; @userinfobot tells a user their id)"
            )
        ids.add(int(part))
    return frozenset(ids)


def load_settings(environ: Mapping[str, str] | None = None, env_file: Path | None = ENV_FILE) -> Settings:
    """Read and validate everything `python -m bot run` needs; ConfigError says what is wrong."""
    env = environment(environ, env_file)
    token = _value(env, "TELEGRAM_BOT_TOKEN")
    if token is None:
        raise ConfigError(MISSING_TOKEN_HELP)
    if not _TOKEN.fullmatch(token):
        raise ConfigError("TELEGRAM_BOT_TOKEN does not look like a bot token (digits, a colon, then letters); "
                          "copy it again from @BotFather")
    webhook_url = _value(env, "WEBHOOK_URL")
    if webhook_url is not None and not webhook_url.startswith(("https://", "http://")):
        raise ConfigError(f"WEBHOOK_URL must be a full URL starting with https://, not {webhook_url!r}")
    secret = _value(env, "WEBHOOK_SECRET")
    if secret is not None and not _SECRET.fullmatch(secret):
        raise ConfigError("WEBHOOK_SECRET may only contain A-Z, a-z, 0-9, _ and - (1 to 256 characters)")
    log_level = (_value(env, "LOG_LEVEL") or "INFO").upper()
    if log_level not in _LOG_LEVELS:
        raise ConfigError(f"LOG_LEVEL must be one of {', '.join(_LOG_LEVELS)}, not {log_level!r}")
    database_url = database_url_from(env)
    if webhook_url is not None and secret is None:
        if database_url is not None:
            raise ConfigError(REPLICA_SECRET_HELP)
        secret = secrets.token_urlsafe(32)   # a new one each start; made here so that the log can redact it
    port = _int(env, "WEBHOOK_PORT", 8443, minimum=1)
    if port > 65535:
        raise ConfigError(f"WEBHOOK_PORT must be a TCP port (1-65535), not {port}")
    return Settings(
        token=token,
        base_url=_value(env, "TELEGRAM_BASE_URL"),
        knowledge_dir=Path(_value(env, "KNOWLEDGE_DIR") or DEFAULT_KNOWLEDGE_DIR),
        database_path=Path(_value(env, "DATABASE_PATH") or DEFAULT_DATABASE_PATH),
        database_url=database_url,
        admin_ids=_admin_ids(_value(env, "ADMIN_IDS")),
        webhook_url=webhook_url,
        webhook_secret=secret,
        webhook_listen=_value(env, "WEBHOOK_LISTEN") or "0.0.0.0",
        webhook_port=port,
        log_level=log_level,
        user_rate_limit=_int(env, "USER_RATE_LIMIT", 20),
        retention_days=_int(env, "RETENTION_DAYS", 90),

        allow_private_sources=_flag(env, "ALLOW_PRIVATE_SOURCES"),
    )


def local_settings(environ: Mapping[str, str] | None = None, env_file: Path | None = ENV_FILE) -> Settings:
    """The settings of commands that need no token (`python -m bot poll`): where things are, what may be fetched."""
    env = environment(environ, env_file)
    return Settings(
        knowledge_dir=Path(_value(env, "KNOWLEDGE_DIR") or DEFAULT_KNOWLEDGE_DIR),
        database_path=Path(_value(env, "DATABASE_PATH") or DEFAULT_DATABASE_PATH),
        database_url=database_url_from(env),
        allow_private_sources=_flag(env, "ALLOW_PRIVATE_SOURCES"),
    )


def database_url_from(env: Mapping[str, str]) -> str | None:
    """DATABASE_URL, checked: only PostgreSQL URLs are accepted, and the message never echoes one (a password)."""
    url = _value(env, "DATABASE_URL")
    if url is not None and not url.startswith(("postgresql://", "postgres://")):
        raise ConfigError("DATABASE_URL must be a PostgreSQL URL (postgresql://user:password@host:5432/dbname); "
                          "unset it to keep the SQLite file at DATABASE_PATH")
    return url


def knowledge_dir_from_env(environ: Mapping[str, str] | None = None, env_file: Path | None = ENV_FILE) -> Path:
    """KNOWLEDGE_DIR alone, for commands that need no token (build, check, ask, shell)."""
    return Path(_value(environment(environ, env_file), "KNOWLEDGE_DIR") or DEFAULT_KNOWLEDGE_DIR)


class Redactor:
    """Replaces the bot token (and its secret half alone) and the webhook secret in any text, whatever the case:
    python-telegram-bot lower-cases error messages that begin "Bad Request: "."""

    def __init__(self, token: str, webhook_secret: str | None = None) -> None:
        secrets_ = [(token, "<token>"), (token.partition(":")[2], "<token>"), (webhook_secret, "<secret>")]
        self._patterns = [(re.compile(re.escape(value), re.IGNORECASE), label)
                          for value, label in secrets_ if value]   # literal patterns: linear in the text

    def __call__(self, text: str) -> str:
        for pattern, label in self._patterns:
            text = pattern.sub(label, text)
        return text


class RedactToken(logging.Filter):
    """Remove the bot token, and the webhook secret, from every record, traceback included.

    httpx logs URLs that contain the token; python-telegram-bot logs setWebhook's parameters at DEBUG.
    """

    def __init__(self, token: str, webhook_secret: str | None = None) -> None:
        super().__init__()
        self._redact = Redactor(token, webhook_secret)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self._redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self._redact(record.exc_text)
        return True


def redact_uncaught(redact: Redactor) -> None:
    """Errors that escape everything are printed by Python's own traceback printer, which no logging filter sees:
    print them redacted instead (main thread and worker threads)."""

    def excepthook(kind: type[BaseException], error: BaseException, trace: TracebackType | None) -> None:
        sys.stderr.write(redact("".join(traceback.format_exception(kind, error, trace))))

    def thread_excepthook(args: threading.ExceptHookArgs) -> None:
        if args.exc_value is not None:
            excepthook(args.exc_type, args.exc_value, args.exc_traceback)

    sys.excepthook = excepthook
    threading.excepthook = thread_excepthook


def configure_logging(settings: Settings) -> Redactor:
    """Once, at start: our level, the HTTP client's chatter turned down, the token redacted everywhere."""
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=settings.log_level)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    redact = RedactToken(settings.token, settings.webhook_secret)
    for handler in logging.getLogger().handlers:
        handler.addFilter(redact)
    redactor = Redactor(settings.token, settings.webhook_secret)
    redact_uncaught(redactor)
    return redactor
