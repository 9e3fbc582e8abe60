"""Load: 50 users at once, 10,000 messages, through the fake Bot API server on loopback; no error, no lost reply.

The bot runs in a process of its own, as `python -m bot run` does (the fake server and the simulated users share
this one), with two settings changed, and said so: the per-user question limit is off (each simulated user asks
200 questions), and the overall cap of 30 messages a second is lifted (it stands for Telegram's limit, which
the fake server does not have; with it the run would take over five minutes by design): each answer still takes
its turn in the shared line, which then never makes it wait. Deselect with
`-m "not load"`.
"""

from __future__ import annotations

import asyncio
import signal
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from bot.testing.fake_telegram import FakeTelegram
from tests.conftest import OFF_TOPIC_QUESTION, SEED_QUESTION, SEED_SENTENCE
from tests.driver import ADMIN, REAL_LOOKING_TOKEN, SORRY, run_env

pytestmark = pytest.mark.load

USERS = 50
PER_USER = 200   # 10,000 messages in all
BOUND = 300      # seconds: a guard so the test stops by itself if the bot hangs, not a speed goal
QUESTIONS = (SEED_QUESTION, OFF_TOPIC_QUESTION, "what did the civil forum recommend?", "volunteers road map",
             "how many plan items were executed", "state social contracts doubled?", "/latest 3", "hello")


# `python -m bot run`, with Telegram's overall cap lifted from the answers' pacing (see the module docstring).
_BOT = """
from bot import notify
from bot.telegram import app
from bot.config import configure_logging, load_settings

class Unlimited(notify.AnswerPacing):
    def __init__(self):
        super().__init__(notify.Pacing(per_second=10**6))

notify.AnswerPacing = Unlimited
settings = load_settings()
configure_logging(settings)
app.run(settings)
"""


class _Timed(FakeTelegram):
    """Hands each reply to the user waiting in that chat, with the time it arrived."""

    def __init__(self, token: str) -> None:
        super().__init__(token)
        self.replies: defaultdict[int, asyncio.Queue[tuple[float, dict[str, Any]]]] = defaultdict(asyncio.Queue)

    async def _api_sendMessage(self, params: dict[str, Any]) -> Any:
        message = await super()._api_sendMessage(params)
        self.replies[params["chat_id"]].put_nowait((time.monotonic(), params))
        return message


async def _user(tg: _Timed, user: int, latencies: list[float]) -> None:
    """Ask, wait for the reply to this very message, ask again: one message in flight per user."""
    for n in range(PER_USER):
        text = QUESTIONS[(user + n) % len(QUESTIONS)]
        asked = time.monotonic()
        update = tg.push_message(text, chat_id=user, user_id=user)
        arrived, reply = await tg.replies[user].get()
        if text.startswith("/latest"):
            assert "Latest articles" in reply["text"]
        else:
            assert reply["reply_parameters"]["message_id"] == update["message"]["message_id"]
        assert reply["text"] != SORRY
        latencies.append(arrived - asked)


async def test_fifty_users_ten_thousand_messages_no_error_no_lost_reply(
    knowledge_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    latencies: list[float] = []
    async with _Timed(REAL_LOOKING_TOKEN) as tg:
        env = {**run_env(tg, knowledge_dir, tmp_path, tg.token), "USER_RATE_LIMIT": "0", "LOG_LEVEL": "INFO"}
        bot = await asyncio.create_subprocess_exec(sys.executable, "-c", _BOT, cwd=tmp_path, env=env,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            async with asyncio.timeout(BOUND):
                tg.push_message(SEED_QUESTION, chat_id=ADMIN, user_id=ADMIN)   # started, models loaded
                assert SEED_SENTENCE in (await tg.replies[ADMIN].get())[1]["text"]
                started = time.monotonic()
                await asyncio.gather(*(_user(tg, 100_000 + n, latencies) for n in range(USERS)))
                seconds = time.monotonic() - started
                await asyncio.sleep(0.3)   # a duplicate reply would arrive now
        finally:
            bot.send_signal(signal.SIGTERM)
            _, stderr = await asyncio.wait_for(bot.communicate(), 60)
        calls = list(tg.calls)
    log = stderr.decode()
    assert bot.returncode == 0, log
    assert len(latencies) == USERS * PER_USER   # every message answered: none lost
    assert all(queue.empty() for queue in tg.replies.values())   # and none answered twice
    assert [(c.method, c.status) for c in calls if c.status != 200] == []
    assert [line for line in log.splitlines() if " WARNING " in line or " ERROR " in line or "Traceback" in line] == []
    latencies.sort()
    p50, p99 = latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.99)]
    with capsys.disabled():
        print(f"\nload: {USERS} users, {len(latencies)} messages in {seconds:.1f} s = {len(latencies) / seconds:.0f} "
              f"msg/s; latency p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, "
              f"mean {statistics.fmean(latencies) * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms")
