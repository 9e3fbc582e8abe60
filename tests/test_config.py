"""Settings from the environment and `.env`, and what `python -m bot run` says when they are wrong."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.config import ConfigError, RedactToken, Settings, knowledge_dir_from_env, load_settings
from tests.conftest import REPO

TOKEN = "123456789:AAHfakefakefakefakefakefake_-12"


def test_defaults_with_only_a_token(tmp_path: Path) -> None:
    settings = load_settings({"TELEGRAM_BOT_TOKEN": TOKEN}, env_file=None)
    assert settings.token == TOKEN
    assert settings.knowledge_dir == Path("knowledge")
    assert settings.database_path == Path("data/bot.sqlite3")
    assert settings.admin_ids == frozenset()
    assert settings.base_url is None and settings.webhook_url is None
    assert settings.user_rate_limit > 0


def test_every_variable_is_read() -> None:
    settings = load_settings({
        "TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_BASE_URL": "http://localhost:8081/bot", "KNOWLEDGE_DIR": "/kb",
        "DATABASE_PATH": "/data/x.sqlite3", "ADMIN_IDS": " 42, 7 ,", "WEBHOOK_URL": "https://bot.example.org/hook",
        "WEBHOOK_SECRET": "s3cret_-", "WEBHOOK_LISTEN": "127.0.0.1", "WEBHOOK_PORT": "8080", "LOG_LEVEL": "debug",
        "USER_RATE_LIMIT": "0",
    }, env_file=None)
    assert settings == Settings(
        token=TOKEN, base_url="http://localhost:8081/bot", knowledge_dir=Path("/kb"),
        database_path=Path("/data/x.sqlite3"), admin_ids=frozenset({42, 7}), webhook_url="https://bot.example.org/hook",
        webhook_secret="s3cret_-", webhook_listen="127.0.0.1", webhook_port=8080, log_level="DEBUG", user_rate_limit=0,
    )


def test_missing_token_says_what_to_do() -> None:
    with pytest.raises(ConfigError) as error:
        load_settings({"TELEGRAM_BOT_TOKEN": "  "}, env_file=None)
    message = str(error.value)
    assert "TELEGRAM_BOT_TOKEN" in message and "@BotFather" in message and "python -m bot shell" in message


@pytest.mark.parametrize(("name", "value", "hint"), [
    ("ADMIN_IDS", "42,@alice", "numeric"),
    ("WEBHOOK_PORT", "eighty", "whole number"),
    ("WEBHOOK_PORT", "70000", "1-65535"),
    ("WEBHOOK_URL", "bot.example.org", "https://"),
    ("WEBHOOK_SECRET", "has spaces", "A-Z"),
    ("LOG_LEVEL", "loud", "INFO"),
    ("USER_RATE_LIMIT", "-1", "at least 0"),
])
def test_bad_values_are_named(name: str, value: str, hint: str) -> None:
    with pytest.raises(ConfigError, match=name) as error:
        load_settings({"TELEGRAM_BOT_TOKEN": TOKEN, name: value}, env_file=None)
    assert hint in str(error.value)


def test_a_malformed_token_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigError) as error:
        load_settings({"TELEGRAM_BOT_TOKEN": "secret-but-wrong"}, env_file=None)
    assert "secret-but-wrong" not in str(error.value)


def test_dotenv_is_read_and_the_environment_wins(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(f"TELEGRAM_BOT_TOKEN={TOKEN}\nKNOWLEDGE_DIR=from-dotenv\nADMIN_IDS=5\n", encoding="utf-8")
    settings = load_settings({"ADMIN_IDS": "6"}, env_file=env_file)
    assert settings.token == TOKEN
    assert settings.knowledge_dir == Path("from-dotenv")
    assert settings.admin_ids == {6}
    assert knowledge_dir_from_env({}, env_file=env_file) == Path("from-dotenv")
    assert knowledge_dir_from_env({"KNOWLEDGE_DIR": "env"}, env_file=env_file) == Path("env")
    assert knowledge_dir_from_env({}, env_file=None) == Path("knowledge")


def test_the_token_is_not_in_the_repr() -> None:
    assert TOKEN not in repr(load_settings({"TELEGRAM_BOT_TOKEN": TOKEN}, env_file=None))


def test_run_without_a_token_explains_instead_of_a_traceback(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TELEGRAM_BOT_TOKEN"}
    env["PYTHONPATH"] = str(REPO)
    result = subprocess.run([sys.executable, "-m", "bot", "run"], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "TELEGRAM_BOT_TOKEN" in result.stderr and "@BotFather" in result.stderr
    assert "python -m bot shell" in result.stderr


@contextlib.contextmanager
def redacted_log(name: str) -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger whose one handler carries the bot's redaction filter, and what it wrote."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactToken(TOKEN))
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield logger, stream
    finally:
        logger.removeHandler(handler)


def test_the_token_never_reaches_the_log() -> None:
    with redacted_log("test_config.redaction") as (logger, stream):
        logger.warning("HTTP Request: POST https://api.telegram.org/bot%s/getUpdates", TOKEN)
        try:
            raise RuntimeError(f"connection to https://api.telegram.org/bot{TOKEN}/sendMessage failed")
        except RuntimeError:
            logger.exception("request failed")
    output = stream.getvalue()
    assert "getUpdates" in output and "sendMessage failed" in output and "RuntimeError" in output
    assert TOKEN not in output
    assert TOKEN.split(":")[1] not in output


def test_the_token_is_redacted_whatever_its_case() -> None:
    """python-telegram-bot lower-cases messages that begin "Bad Request: "; the redaction must not care."""
    with redacted_log("test_config.redaction_case") as (logger, stream):
        logger.error("bad request: chat not found for bot%s", TOKEN.lower())
        logger.error("%s", TOKEN.split(":")[1].upper())
    output = stream.getvalue().lower()
    assert "chat not found" in output and output.count("<token>") == 2
    assert TOKEN.split(":")[1].lower() not in output


def test_an_uncaught_error_is_printed_without_the_token(tmp_path: Path) -> None:
    """What escapes `python -m bot run` is printed by Python's traceback printer, which no log filter sees."""
    program = f"""
import threading
from bot.config import Settings, configure_logging

def fail_in_a_thread() -> None:
    raise RuntimeError("thread saw " + {TOKEN!r})

configure_logging(Settings(token={TOKEN!r}))
worker = threading.Thread(target=fail_in_a_thread)
worker.start()
worker.join()
raise RuntimeError("409 Conflict for bot" + {TOKEN.lower()!r})
"""
    result = subprocess.run([sys.executable, "-c", program], cwd=tmp_path, capture_output=True, text=True,
                            timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 1
    assert "409 Conflict" in result.stderr and "thread saw" in result.stderr and "Traceback" in result.stderr
    assert TOKEN.split(":")[1].lower() not in result.stderr.lower()
