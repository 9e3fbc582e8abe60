"""`python -m bot shell`: the registry's commands in the terminal, in the language asked for."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot import i18n
from bot.service import Service
from bot.shell import reply
from bot.store import Store
from tests.conftest import OFF_TOPIC_QUESTION, REPO, SEED_QUESTION, SEED_SENTENCE

EN = i18n.translator("en")


@pytest.fixture
def service(knowledge_dir: Path, store: Store) -> Service:
    return Service(knowledge_dir, store)


def shell_reply(service: Service, line: str) -> str | None:
    return reply(service, line, EN)


def test_shell_replies(service: Service) -> None:
    assert SEED_SENTENCE in (shell_reply(service, SEED_QUESTION) or "")
    assert SEED_SENTENCE in (shell_reply(service, "/ask " + SEED_QUESTION) or "")
    latest = shell_reply(service, "/latest 3") or ""
    assert next(iter(service.kb.articles.values())).title in latest
    assert "/search" in (shell_reply(service, "/search") or "")
    assert "No article matches “zzzqqq”" in (shell_reply(service, "/search zzzqqq") or "")
    unknown = shell_reply(service, "/frobnicate") or ""
    assert EN("refusal.unknown_command") in unknown and "/latest" in unknown and "/subscribe" not in unknown
    assert shell_reply(service, "   ") == ""
    assert shell_reply(service, "/quit") is None


def test_the_shell_command_reads_questions_from_stdin(knowledge_dir: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-m", "bot", "shell", "--knowledge", str(knowledge_dir)],
        input=f"{SEED_QUESTION}\n{OFF_TOPIC_QUESTION}\n/latest\n", capture_output=True, text=True, env=env,
        timeout=120, cwd=knowledge_dir.parent,
    )
    assert result.returncode == 0, result.stderr
    assert SEED_SENTENCE in result.stdout
    assert result.stdout.count(SEED_SENTENCE) == 1   # the off-topic question is not answered with the seed
    assert "Latest articles" in result.stdout


def test_the_shell_lists_problems_instead_of_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "kb" / "articles").mkdir(parents=True)
    (tmp_path / "kb" / "articles" / "x.yaml").write_text("title: no id\n", "utf-8")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-m", "bot", "shell", "--knowledge", str(tmp_path / "kb")],
                            input="", capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 1
    assert "x.yaml:1" in result.stderr and "Traceback" not in result.stderr


def test_the_shell_speaks_the_language_asked_for(knowledge_dir: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    ru = i18n.translator("ru")
    result = subprocess.run(
        [sys.executable, "-m", "bot", "shell", "--knowledge", str(knowledge_dir), "--language", "ru"],
        input=f"{OFF_TOPIC_QUESTION}\n/latest\n/help\n/search\n", capture_output=True, text=True, env=env,
        timeout=120, cwd=knowledge_dir.parent,
    )
    assert result.returncode == 0, result.stderr
    for text in (ru("answer.dont_know"), ru("latest.title"), ru("command.search"), ru("search.usage")):
        assert text in result.stdout
    wrong = subprocess.run([sys.executable, "-m", "bot", "shell", "--knowledge", str(knowledge_dir), "--language",
                            "xx"], input="", capture_output=True, text=True, env=env, timeout=120)
    assert wrong.returncode == 2 and "--language" in wrong.stderr
