"""Nobody gets powers they should not have: admins by numeric id, a per-user limit, no token leaks, the webhook's
secret token checked, and no file touched because of what a chat message says."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from telegram.ext import Application

from bot.testing.fake_telegram import BOT_USERNAME, FakeTelegram
from tests.conftest import SEED_QUESTION, SEED_SENTENCE
from tests.driver import ADMIN, EN, RATE_LIMIT, REAL_LOOKING_TOKEN, USER, reply, run_env, say, service
from tests.test_fuzz import files_touched, not_code

ADMINS_ONLY, SLOW_DOWN, SORRY = EN("refusal.bot_admins"), EN("refusal.slow_down"), EN("refusal.sorry")

ANONYMOUS_ADMIN_BOT = 1087968824   # the user Telegram puts in `from` when a group admin posts as the group


# --- admins are numeric ids from ADMIN_IDS, in private chats and in groups ------------------------

def _push_as(tg: FakeTelegram, text: str, chat_id: int, user_id: int, **changes: Any) -> None:
    """A message whose sender, chat or origin say what an impostor would like them to say."""
    message = tg.push_message(text, chat_id=chat_id, user_id=user_id)["message"]
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(message.get(key), dict):
            message[key] = {**message[key], **value}
        else:
            message[key] = value


@pytest.mark.parametrize("command", ["/stats", "/reload"])
async def test_admin_commands_go_by_numeric_user_id_only(tg: FakeTelegram, app: Application, command: str) -> None:
    group = -4242
    impostors = [
        ({"from": {"username": "admin", "first_name": str(ADMIN)}}, USER, USER),          # a name, not the id
        ({"from": {"username": f"user{ADMIN}", "last_name": "(admin)"}}, USER, USER),
        ({"chat": {"title": f"Admins {ADMIN}"}}, group, USER),                            # a chat title
        ({"forward_origin": {"type": "user", "date": 0, "sender_user": FakeTelegram.user(ADMIN)}}, USER, USER),
        ({"from": FakeTelegram.user(ANONYMOUS_ADMIN_BOT),                                  # posted as the group
          "sender_chat": {"id": group, "type": "group", "title": "Group"}}, group, ANONYMOUS_ADMIN_BOT),
        ({"sender_chat": {"id": -100777, "type": "channel", "title": str(ADMIN)}}, group, USER),
    ]
    for changes, chat, user in impostors:
        _push_as(tg, command, chat, user, **changes)
        assert (await reply(tg, chat))["text"] == ADMINS_ONLY, changes
    for chat in (ADMIN, group):   # the admin's id works anywhere, whatever the chat is called
        _push_as(tg, command, chat, ADMIN, **({"chat": {"title": "Not the admins"}} if chat < 0 else {}))
        assert (await reply(tg, chat))["text"] != ADMINS_ONLY
    await asyncio.sleep(0.2)
    assert len(tg.sent()) == len(impostors) + 2


# --- one user flooding cannot slow down the others ---------------------------------------------

async def test_hundreds_of_questions_from_one_user_get_one_polite_reply_and_others_are_answered(
    tg: FakeTelegram, app: Application,
) -> None:
    flooder, group, others = 666, -9090, range(2001, 2011)
    pushed: dict[int, float] = {}
    for n in range(300):   # questions, searches, unknown commands, in private and in a group
        text = (SEED_QUESTION, "/search plan items", "/no_such_command", f"@{BOT_USERNAME} {SEED_QUESTION}")[n % 4]
        tg.push_message(text, chat_id=group if text.startswith("@") else flooder, user_id=flooder)
        if n % 30 == 0:
            user = others[n // 30]
            tg.push_message(SEED_QUESTION, chat_id=user, user_id=user)
            pushed[user] = time.monotonic()
    for user in others:
        assert SEED_SENTENCE in (await reply(tg, user))["text"]
    await asyncio.sleep(0.5)
    to_flooder = [m["text"] for m in tg.sent() if m["chat_id"] in (flooder, group)]
    assert len(to_flooder) == RATE_LIMIT + 1
    assert to_flooder.count(SLOW_DOWN) == 1
    assert all(len(tg.sent(user)) == 1 for user in others)
    answered = {c.params["chat_id"]: c.at for c in tg.calls if c.method == "sendMessage"}
    slowest = max(answered[user] - pushed[user] for user in others)
    print(f"others answered within {slowest * 1000:.0f} ms while one user sent 300 messages")
    stats = service(app).store.stats()
    assert stats.answered <= RATE_LIMIT + len(others)   # refused questions cost no ranking and no write


async def test_every_path_a_user_triggers_counts_against_the_one_limit(tg: FakeTelegram, app: Application) -> None:
    """/latest, inline queries, article and "latest" buttons, and refusals (each a getChatMember in a group)."""
    flooder, group = 667, -9191
    tg.chat_admins[group] = {42}
    latest = await say(tg, "/latest", chat_id=flooder)
    latest_id = next(int(c.result["message_id"]) for c in tg.calls if c.params is latest)
    article = next(b["callback_data"] for row in latest["reply_markup"]["inline_keyboard"] for b in row)
    for n in range(60):
        match n % 4:
            case 0:
                tg.push_message("/latest 3", chat_id=flooder, user_id=flooder)
            case 1:
                tg.push_inline_query("plan", user_id=flooder)
            case 2:
                tg.push_callback(article, chat_id=flooder, user_id=flooder, message_id=latest_id)
            case _:
                tg.push_message("/subscribe", chat_id=group, user_id=flooder)
    await asyncio.sleep(1.5)
    sent = [c.params["text"] for c in tg.calls if c.method == "sendMessage"]
    shared = [c for c in tg.calls if c.method == "answerInlineQuery" and c.params["results"]]
    members = [c for c in tg.calls if c.method == "getChatMember"]
    alerts = [c.params.get("text") for c in tg.calls if c.method == "answerCallbackQuery"]
    assert len(sent) - sent.count(SLOW_DOWN) + len(shared) <= RATE_LIMIT
    assert len(members) <= RATE_LIMIT
    assert sent.count(SLOW_DOWN) + alerts.count(SLOW_DOWN) == 1
    assert SEED_SENTENCE in (await say(tg, SEED_QUESTION, chat_id=2020))["text"]   # others are not limited


@contextlib.asynccontextmanager
async def _bot(tmp_path: Path, env: dict[str, str]) -> AsyncIterator[Path]:
    """`python -m bot run` until the block ends, then SIGTERM: a clean stop; yields its log file."""
    log = tmp_path / "bot.log"
    with log.open("wb") as output:
        process = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", "run", cwd=tmp_path, env=env,
                                                       stdout=output, stderr=output)
        try:
            yield log
        finally:
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), 60)
    assert process.returncode == 0, log.read_text()


# --- the token never leaks --------------------------------------------------------------------

async def test_the_token_never_appears_in_logs_errors_or_replies(knowledge_dir: Path, tmp_path: Path) -> None:
    token, secret = REAL_LOOKING_TOKEN, REAL_LOOKING_TOKEN.split(":")[1]
    async with FakeTelegram(token=token) as tg, _bot(tmp_path, run_env(tg, knowledge_dir, tmp_path, token)) as log:
        tg.push_message(SEED_QUESTION)
        await reply(tg, timeout=60)
        # Errors raised inside handlers whose messages carry the token, and Telegram unreachable meanwhile.
        tg.fail_next("sendMessage", 400, f"Bad Request: chat {token} not found (bot{token})", chat_id=USER)
        tg.push_message(SEED_QUESTION)
        assert (await reply(tg))["text"] == SORRY
        tg.fail_next("getChatMember", 400, f"Bad Request: https://api.telegram.org/bot{token}/getChatMember")
        tg.push_message("/subscribe", chat_id=-77, user_id=USER)
        assert (await reply(tg, -77))["text"] == SORRY
        tg.fail_next("getUpdates", 502, f"Bad Gateway at /bot{token}/getUpdates")
        tg.reset_next("getUpdates")
        tg.push_message(SEED_QUESTION)
        assert SEED_SENTENCE in (await reply(tg, timeout=30))["text"]
    text = log.read_text()
    assert text.count("error while handling") == 2 and "<token>" in text   # the errors were logged, redacted
    assert token not in text and secret not in text
    sent = json.dumps([c.params for c in tg.calls], default=str)
    assert secret not in sent


# --- webhook mode checks Telegram's secret token --------------------------------------------------

def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _post(url: str, update: dict[str, Any], secret: str | None) -> int:
    headers = {} if secret is None else {"X-Telegram-Bot-Api-Secret-Token": secret}
    async with aiohttp.ClientSession() as session, session.post(url, json=update, headers=headers) as response:
        return response.status


def _update(update_id: int, text: str, chat: int) -> dict[str, Any]:
    return {"update_id": update_id, "message": {
        "message_id": update_id, "date": int(time.time()), "text": text,
        "chat": {"id": chat, "type": "private", "first_name": "U"}, "from": FakeTelegram.user(chat)}}


@pytest.mark.parametrize("configured", ["s3cret_Token-123", None])
async def test_webhook_mode_rejects_updates_without_the_secret_token(
    knowledge_dir: Path, tmp_path: Path, configured: str | None,
) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}/telegram/hook"
    async with FakeTelegram(token=REAL_LOOKING_TOKEN) as tg:
        env = {**run_env(tg, knowledge_dir, tmp_path, tg.token), "WEBHOOK_URL": url,
               "WEBHOOK_LISTEN": "127.0.0.1", "WEBHOOK_PORT": str(port)}
        if configured:
            env["WEBHOOK_SECRET"] = configured
        async with _bot(tmp_path, env) as log:
            registered = await tg.wait_for("setWebhook", timeout=60)
            secret = registered["secret_token"]
            assert registered["url"] == url
            assert secret == configured if configured else len(secret) >= 32
            deadline = time.monotonic() + 30
            while True:   # the webhook server starts listening right after setWebhook
                try:
                    status = await _post(url, _update(1, SEED_QUESTION, 3001), None)
                    break
                except aiohttp.ClientConnectionError:
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.1)
            assert status == 403
            assert await _post(url, _update(2, SEED_QUESTION, 3002), secret[:-1] + "x") == 403
            assert await _post(url, _update(3, SEED_QUESTION, 3003), "") == 403
            assert await _post(url, _update(4, SEED_QUESTION, 3004), secret) == 200
            assert SEED_SENTENCE in (await reply(tg, 3004, timeout=30))["text"]
            await asyncio.sleep(0.3)
            assert [m["chat_id"] for m in tg.sent()] == [3004]   # the rejected updates were never handled
    assert secret not in log.read_text() and REAL_LOOKING_TOKEN.split(":")[1] not in log.read_text()


# --- no path or file name comes from a chat message -----------------------------------------------

PATHS = ["../../../../etc/passwd", "/etc/passwd", "knowledge/articles/x.yaml", "file:///etc/shadow",
         r"C:\Windows\win.ini", "~/.ssh/id_rsa", "%2e%2e%2f%2e%2e%2fetc%2fpasswd", "/proc/self/environ", "\x00/etc"]


async def test_no_message_makes_the_bot_touch_a_file_it_names(
    tg: FakeTelegram, app: Application, knowledge_dir: Path,
) -> None:
    texts = [f"{prefix}{path}" for path in PATHS
             for prefix in ("", "/ask ", "/search ", "/latest ", "/subscribe ", "/unsubscribe ", "/subscriptions ")]
    with files_touched() as touched:
        for number, text in enumerate(texts):
            tg.push_message(text, chat_id=8000 + number, user_id=8000 + number)
        for number in range(len(texts)):
            await reply(tg, 8000 + number)
        for path in PATHS:   # an admin's /reload takes no arguments: it rereads the configured folder only
            await say(tg, f"/reload {path}", chat_id=ADMIN)
    # Only the knowledge base (and the code a lazy import opens)
    assert [p for p in not_code(touched) if not Path(p).resolve().is_relative_to(knowledge_dir.resolve())] == []
    assert not [p for p in touched if any(name in p for name in ("passwd", "shadow", "win.ini", "id_rsa", "environ"))]
    replies = " ".join(m["text"] for m in tg.sent())
    assert "root:" not in replies and "PATH=" not in replies
