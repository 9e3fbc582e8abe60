"""Operations: retention, /forget, `python -m bot health`, and the supply chain (declared imports, the lock file,
the image). The bot's parts run for real: the Application against the fake Bot API server, a SQLite file, a
subprocess for the health check."""

from __future__ import annotations

import ast
import dataclasses
import importlib.metadata
import os
import re
import sqlite3
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from telegram.ext import Application

from bot import i18n
from bot.config import ConfigError, Settings, load_settings
from bot.store import Store, core
from bot.testing.fake_telegram import FakeTelegram
from tests.driver import REAL_LOOKING_TOKEN, REPO, USER, reply, running, say, service, until

EN = i18n.translator("en")
DAY = 24 * 3600


# --- retention -----------------------------------------------------------------------------------


def test_retention_days_defaults_to_90_and_0_keeps_everything() -> None:
    env = {"TELEGRAM_BOT_TOKEN": REAL_LOOKING_TOKEN}
    assert load_settings(env, env_file=None).retention_days == 90
    assert load_settings({**env, "RETENTION_DAYS": "0"}, env_file=None).retention_days == 0
    assert load_settings({**env, "RETENTION_DAYS": "7"}, env_file=None).retention_days == 7
    for bad in ("-1", "ninety"):
        with pytest.raises(ConfigError, match="RETENTION_DAYS"):
            load_settings({**env, "RETENTION_DAYS": bad}, env_file=None)


class Clock:
    """Stands in for the store's `time` module while the test writes rows dated in the past."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now


def _history(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before the bot starts: rows from 100 days ago (delivered, never delivered, statistics) and from today."""
    clock = Clock(time.time() - 100 * DAY)
    monkeypatch.setattr(core, "time", clock)
    store = Store(path)
    store.unannounced([])
    store.announce(["old"], [(1, "old"), (2, "old")])
    store.mark_delivered(1, ["old"])
    store.record_question("an old question", answered=False)
    store.record_feedback("an old question", "old", helpful=False)
    clock.now = time.time()
    store.announce(["new"], [(1, "new")])
    store.mark_delivered(1, ["new"])
    store.record_question("a recent question", answered=True)
    store.close()
    monkeypatch.undo()


def _deliveries(path: Path) -> list[tuple[int, str, bool]]:
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT chat_id, article_id, delivered IS NOT NULL FROM deliveries ORDER BY 1, 2")
        return [(chat, article, bool(sent)) for chat, article, sent in rows]


def _retention_job(app: Application) -> Any:  # type: ignore[type-arg]
    assert app.job_queue is not None
    (job,) = app.job_queue.get_jobs_by_name("retention")
    return job


async def _ran_once(app: Application) -> None:  # type: ignore[type-arg]
    """The job ran at start: its next run is about a day away."""
    job = _retention_job(app)
    await until(lambda: job.next_t is not None and job.next_t.timestamp() > time.time() + DAY - 600)


async def test_the_running_bot_prunes_old_rows_at_start_and_keeps_recent_ones(
    tg: FakeTelegram, settings: Settings, monkeypatch: pytest.MonkeyPatch,
) -> None:
    _history(settings.database_path, monkeypatch)
    assert len(_deliveries(settings.database_path)) == 3
    async with running(settings) as app:
        await until(lambda: len(_deliveries(settings.database_path)) == 2)
        await _ran_once(app)
        store = service(app).store
        assert _deliveries(settings.database_path) == [(1, "new", True), (2, "old", False)]   # unsent: kept
        stats = store.stats()
        assert (stats.answered, stats.unanswered, stats.unhelpful) == (1, 0, 0)
        assert [q for q, _ in stats.top_unanswered] == []
        assert store.unannounced(["old", "new"]) == []   # a pruned delivery is not news again


async def test_retention_0_keeps_everything(tg: FakeTelegram, settings: Settings,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    _history(settings.database_path, monkeypatch)
    async with running(dataclasses.replace(settings, retention_days=0)) as app:
        await _ran_once(app)
        assert len(_deliveries(settings.database_path)) == 3
        assert service(app).store.stats().unanswered == 1


# --- /forget -------------------------------------------------------------------------------------


def _buttons(message: dict[str, Any]) -> list[str]:
    return [b["callback_data"] for row in (message.get("reply_markup") or {}).get("inline_keyboard", []) for b in row]


def _message_id(tg: FakeTelegram, sent: dict[str, Any]) -> int:
    return next(int(c.result["message_id"]) for c in tg.calls if c.method == "sendMessage" and c.params is sent)


async def test_forget_after_confirming_deletes_everything_about_the_chat_only(tg: FakeTelegram,
                                                                              app: Application) -> None:
    store = service(app).store
    other = 2002
    await say(tg, "/subscribe")
    await say(tg, "/subscribe water")
    await say(tg, "/subscribe", chat_id=other)
    tg.push_message("/language")
    tg.push_callback("g:ru", message_id=_message_id(tg, await reply(tg)))
    await tg.wait_for("editMessageText")
    store.enqueue([(USER, "sent"), (USER, "queued"), (other, "queued")])
    store.mark_delivered(USER, ["sent"])
    ru = i18n.translator("ru")

    confirm = await say(tg, "/forget")
    assert confirm["text"] == ru("forget.confirm")
    assert _buttons(confirm) == ["x:1", "x:0"]
    assert len(store.subscriptions(USER)) == 2   # nothing goes before the confirmation
    tg.push_callback("x:1", message_id=_message_id(tg, confirm))
    done = await tg.wait_for("editMessageText", lambda p: p["text"] == ru("forget.done"))
    assert not _buttons(done)

    assert store.subscriptions(USER) == []
    assert store.pending() == {other: ["queued"]}
    assert store.chat_language(USER) is None
    assert store.enqueue([(USER, "sent")]) == 1   # no trace of the delivered row either
    assert [s.chat_id for s in store.all_subscriptions()] == [other]
    assert (await say(tg, "/forget"))["text"] == EN("forget.confirm")   # the user's own language again


async def test_forget_cancelled_keeps_everything(tg: FakeTelegram, app: Application) -> None:
    await say(tg, "/subscribe")
    confirm = await say(tg, "/forget")
    tg.push_callback("x:0", message_id=_message_id(tg, confirm))
    await tg.wait_for("editMessageText", lambda p: p["text"] == EN("forget.cancelled"))
    assert len(service(app).store.subscriptions(USER)) == 1


async def test_in_groups_only_admins_may_forget_and_replies_are_in_the_readers_language(
    tg: FakeTelegram, app: Application,
) -> None:
    group, admin = -800, 42
    tg.chat_admins[group] = {admin}
    store = service(app).store
    kk = i18n.translator("kk")
    tg.push_message("/subscribe", chat_id=group, user_id=admin, language="kk")   # the group's language: Kazakh
    await reply(tg, group)
    assert (await say(tg, "/forget", chat_id=group, user_id=USER))["text"] == kk("refusal.chat_admins")

    confirm = await say(tg, "/forget", chat_id=group, user_id=admin)
    assert confirm["text"] == kk("forget.confirm")
    tg.push_callback("x:1", chat_id=group, user_id=USER, message_id=_message_id(tg, confirm))
    refused = await tg.wait_for("answerCallbackQuery")
    assert refused["text"] == kk("refusal.chat_admins") and refused["show_alert"]
    assert len(store.subscriptions(group)) == 1

    tg.push_callback("x:1", chat_id=group, user_id=admin, message_id=_message_id(tg, confirm), language="kk")
    await tg.wait_for("editMessageText", lambda p: p["text"] == kk("forget.done"))
    assert store.subscriptions(group) == []


# --- python -m bot health ------------------------------------------------------------------------

_OURS = ("TELEGRAM_", "KNOWLEDGE_DIR", "DATABASE_", "ADMIN_IDS", "WEBHOOK_", "LOG_LEVEL", "USER_RATE_LIMIT",
         "RETENTION_DAYS")


def _health(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m bot health` as Docker's HEALTHCHECK runs it, in a directory with no .env file."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(_OURS)}
    return subprocess.run([sys.executable, "-m", "bot", "health"], cwd=tmp_path, capture_output=True, text=True,
                          env={**base, "PYTHONPATH": str(REPO), **env}, timeout=120, check=False)


@pytest.fixture
def healthy_env(knowledge_dir: Path, tmp_path: Path) -> dict[str, str]:
    return {"TELEGRAM_BOT_TOKEN": REAL_LOOKING_TOKEN, "KNOWLEDGE_DIR": str(knowledge_dir),
            "DATABASE_PATH": str(tmp_path / "data" / "bot.sqlite3")}


def _one_line_failure(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("unhealthy: ")
    return lines[0]


def test_health_is_0_when_configuration_database_and_knowledge_are_usable(tmp_path: Path,
                                                                           healthy_env: dict[str, str]) -> None:
    result = _health(tmp_path, **healthy_env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("healthy: articles: 1,") and result.stderr == ""
    assert Path(healthy_env["DATABASE_PATH"]).is_file()


def test_health_without_a_token_says_so(tmp_path: Path, healthy_env: dict[str, str]) -> None:
    del healthy_env["TELEGRAM_BOT_TOKEN"]
    assert "TELEGRAM_BOT_TOKEN is not set" in _one_line_failure(_health(tmp_path, **healthy_env))


def test_health_with_an_unusable_database_says_which(tmp_path: Path, healthy_env: dict[str, str]) -> None:
    database = Path(healthy_env["DATABASE_PATH"])
    database.parent.mkdir()
    database.write_bytes(b"this is no database, " * 100)
    line = _one_line_failure(_health(tmp_path, **healthy_env))
    assert "database" in line and str(database) in line


def test_health_with_a_broken_knowledge_base_names_the_file(tmp_path: Path, healthy_env: dict[str, str],
                                                            knowledge_dir: Path) -> None:
    (knowledge_dir / "articles" / "broken.yaml").write_text("id: broken\ntitle: [unclosed\n", encoding="utf-8")
    line = _one_line_failure(_health(tmp_path, **healthy_env))
    assert "broken.yaml" in line and "python -m bot check" in line


# --- the supply chain --------------------------------------------------------------------------------

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
LOCK = (REPO / "requirements.lock").read_text(encoding="utf-8")


def _names(requirements: list[str]) -> set[str]:
    return {canonicalize_name(Requirement(r).name) for r in requirements}


def imported_modules(paths: list[Path]) -> set[str]:
    """Top-level names of the absolute imports in these files, the standard library's left out."""
    found = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {alias.name.partition(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.partition(".")[0])
    return found - set(sys.stdlib_module_names)


def undeclared(modules: set[str], declared: set[str]) -> list[str]:
    """The modules that no declared distribution provides (by the installed distributions' own file lists)."""
    provides = importlib.metadata.packages_distributions()
    return sorted(m for m in modules if not declared & {canonicalize_name(d) for d in provides.get(m, [])})


def test_every_module_bot_imports_is_a_declared_dependency() -> None:
    """The bot's own code needs only `dependencies`; bot/testing (the fake Bot API server) may use the test extra."""
    core_ = _names(PYPROJECT["dependencies"])
    testing = REPO / "bot" / "testing"
    code = [p for p in (REPO / "bot").rglob("*.py") if testing not in p.parents]
    assert undeclared(imported_modules(code) - {"bot"}, core_) == []
    tools = core_ | _names(PYPROJECT["optional-dependencies"]["test"])
    assert undeclared(imported_modules(list(testing.rglob("*.py"))) - {"bot"}, tools) == []


def test_the_import_check_catches_an_undeclared_import(tmp_path: Path) -> None:
    module = tmp_path / "module.py"
    module.write_text("import json\nfrom aiolimiter import AsyncLimiter\nimport yaml\nfrom . import sibling\n")
    modules = imported_modules([module])
    assert modules == {"aiolimiter", "yaml"}
    assert undeclared(modules, {"pyyaml"}) == ["aiolimiter"]
    assert undeclared(modules, {"pyyaml", "aiolimiter"}) == []


def _locked() -> dict[str, str]:
    """name -> version of every pin in requirements.lock, each of which must carry hashes."""
    pins = re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)((?: \\\n\s+--hash=sha256:[0-9a-f]{64})+)", LOCK, re.M)
    assert len(pins) == len(re.findall(r"^[A-Za-z0-9]", LOCK, re.M)), "a pin without hashes"
    return {canonicalize_name(name): version for name, version, _ in pins}


def test_the_lock_pins_every_declared_dependency_with_hashes_within_its_range() -> None:
    """Fails when a dependency is added or narrowed without regenerating the lock (the command is in its header)."""
    assert "uv pip compile pyproject.toml --extra test --generate-hashes --python-version 3.11 -o requirements.lock" \
        in LOCK
    locked = _locked()
    for text in PYPROJECT["dependencies"] + PYPROJECT["optional-dependencies"]["test"]:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{name} is declared but not in requirements.lock"
        assert requirement.specifier.contains(locked[name], prereleases=True), f"{name}=={locked[name]}"


def test_the_readme_installs_from_the_lock_and_ci_runs_its_commands() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    first, second = (line.partition("  #")[0].strip() for line in readme.split("```sh\n", 1)[1].splitlines()[:2])
    install = "pip install --require-hashes -r requirements.lock && pip install --no-deps -e ."
    assert first.startswith(install) and second.startswith(install)
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert first.removesuffix(" && python -m bot run") in ci and second in ci


def test_the_image_is_pinned_installs_from_the_lock_and_checks_its_health() -> None:
    dockerfile = (REPO / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.11-\S+@sha256:[0-9a-f]{64}$", dockerfile, re.M)
    assert "pip install --require-hashes -r requirements.lock" in dockerfile
    assert re.search(r'^HEALTHCHECK .*CMD \["python", "-m", "bot", "health"\]$', dockerfile, re.M)
    assert "requirements.lock" not in (REPO / ".dockerignore").read_text(encoding="utf-8")

