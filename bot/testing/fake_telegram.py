"""A fake Telegram Bot API server on 127.0.0.1, for end-to-end tests and benchmarks.

It speaks the real wire protocol (python-telegram-bot posts form-encoded or
multipart bodies where non-string values are JSON strings, and expects
``{"ok": ..., "result": ...}`` back), so the real ``Application`` runs against
it unchanged. Pushed updates are handed out by getUpdates, or, once setWebhook
is called, POSTed to the webhook's URL with its secret-token header and tried
again until answered 200, as Telegram does. It checks what the real server checks and our code could get
wrong: HTML entities, message length, button data, and flood limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import random
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

import aiohttp
from aiohttp import web
from telegram.constants import InlineKeyboardButtonLimit, InlineQueryLimit, InlineQueryResultLimit, MessageLimit

BOT_ID = 123456
BOT_USERNAME = "civic_test_bot"
MAX_MESSAGE_LENGTH = MessageLimit.MAX_TEXT_LENGTH
MAX_CALLBACK_DATA_BYTES = InlineKeyboardButtonLimit.MAX_CALLBACK_DATA

# Parameters the Bot API takes as plain strings: PTB sends them unquoted, so
# they must not be JSON-decoded ("42" as text stays the string "42").
_STRING_PARAMS = frozenset({
    "text", "parse_mode", "callback_query_id", "inline_query_id", "url", "secret_token", "next_offset",
    "inline_message_id", "business_connection_id", "action", "ip_address", "description", "short_description",
    "name", "message_effect_id", "language_code", "caption", "query", "switch_pm_text", "switch_pm_parameter",
    "custom_title",
})
# Methods that post a message into a chat, and so count against flood limits.
_SENDING = frozenset({"sendMessage", "editMessageText", "editMessageReplyMarkup"})
_TELEGRAM_TAGS = frozenset({
    "b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span", "tg-spoiler", "a", "code", "pre",
    "blockquote", "tg-emoji",
})
_ENTITY = re.compile(r"&(lt|gt|amp|quot|#\d+|#x[0-9a-fA-F]+);")
_TAG = re.compile(r"</?([a-zA-Z][a-zA-Z0-9-]*)(\s[^<>]*)?>")
_BUTTON_KINDS = (
    "url", "callback_data", "switch_inline_query", "switch_inline_query_current_chat",
    "switch_inline_query_chosen_chat", "copy_text", "login_url", "web_app", "pay", "callback_game",
)


class ApiError(Exception):
    """An error answer of the Bot API: HTTP status plus Telegram's description."""

    def __init__(
        self, status: int, description: str, retry_after: int | None = None, migrate_to_chat_id: int | None = None
    ) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.retry_after = retry_after
        self.migrate_to_chat_id = migrate_to_chat_id

    def payload(self) -> dict[str, Any]:
        body: dict[str, Any] = {"ok": False, "error_code": self.status, "description": self.description}
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
        if self.migrate_to_chat_id is not None:
            body["parameters"] = {"migrate_to_chat_id": self.migrate_to_chat_id}
        return body


@dataclass(slots=True)
class Call:
    """One request as the server saw it; `status` and `result` say how it was answered."""

    method: str
    params: dict[str, Any]
    at: float
    status: int = 200
    result: Any = None


@dataclass(slots=True)
class _Fault:
    method: str
    count: int
    status: int = 0
    description: str = ""
    retry_after: int | None = None
    chat_id: int | None = None
    migrate_to_chat_id: int | None = None
    hang: float = 0.0
    reset: bool = False


@dataclass(slots=True)
class _Bucket:
    """Token bucket: `rate` tokens a second, at most `capacity` saved up."""

    rate: float
    capacity: float
    tokens: float = 0.0
    stamp: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.tokens = self.capacity

    def take(self, now: float) -> float:
        """0 when a token was taken, else the seconds until one is available."""
        self.tokens = min(self.capacity, self.tokens + max(0.0, now - self.stamp) * self.rate)
        self.stamp = max(now, self.stamp)
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


@dataclass(slots=True)
class _SlidingLimits:
    """Telegram's limits as sliding windows: at most `per_second` sends in ANY second (not per calendar second,
    not a bucket that refills), `per_chat` in any second to one chat, `per_group` in any minute to one group."""

    per_second: int
    per_chat: int
    per_group: int
    overall: deque[float] = field(default_factory=deque)
    chats: dict[int, deque[float]] = field(default_factory=dict)
    groups: dict[int, deque[float]] = field(default_factory=dict)

    @staticmethod
    def _wait(window: deque[float], limit: int, span: float, now: float) -> float:
        while window and window[0] <= now - span:
            window.popleft()
        return window[0] + span - now if len(window) >= limit else 0.0

    def take(self, chat_id: object, now: float) -> float:
        """0 when the send is allowed (and counted), else the seconds until it would be."""
        windows = [(self.overall, self.per_second, 1.0)]
        if isinstance(chat_id, int):
            windows.append((self.chats.setdefault(chat_id, deque()), self.per_chat, 1.0))
            if chat_id < 0:
                windows.append((self.groups.setdefault(chat_id, deque()), self.per_group, 60.0))
        wait = max(self._wait(window, limit, span, now) for window, limit, span in windows)
        if not wait:
            for window, _limit, _span in windows:
                window.append(now)
        return wait


class _HtmlChecker(HTMLParser):
    """Telegram's HTML parse mode: a few tags, properly nested; the visible text is collected."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _TELEGRAM_TAGS:
            raise ApiError(400, f"Bad Request: can't parse entities: unsupported start tag \"{tag}\"")
        if tag == "a" and not dict(attrs).get("href"):
            raise ApiError(400, "Bad Request: can't parse entities: tag \"a\" must have an href")
        self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            raise ApiError(400, f"Bad Request: can't parse entities: unmatched end tag \"{tag}\"")
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def visible_text(text: str, parse_mode: str | None) -> str:
    """The text a reader sees, or ApiError exactly where Telegram would refuse the message."""
    if not parse_mode:
        return text
    if parse_mode.upper() != "HTML":
        return text
    position = 0
    while (lt := text.find("<", position)) >= 0:
        if not _TAG.match(text, lt):
            raise ApiError(400, f"Bad Request: can't parse entities: unexpected '<' at offset {lt}")
        position = lt + 1
    position = 0
    while (amp := text.find("&", position)) >= 0:
        if not _ENTITY.match(text, amp):
            raise ApiError(400, f"Bad Request: can't parse entities: unsupported HTML entity at offset {amp}")
        position = amp + 1
    checker = _HtmlChecker()
    checker.feed(text)
    checker.close()
    if checker.stack:
        tag = checker.stack[-1]
        raise ApiError(400, f"Bad Request: can't parse entities: can't find end tag corresponding to \"{tag}\"")
    return "".join(checker.text)


def utf16_length(text: str) -> int:
    """Telegram counts lengths and entity offsets in UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


def _check_keyboard(markup: Any) -> None:
    if markup is None or not isinstance(markup, dict) or "inline_keyboard" not in markup:
        return
    for row in markup["inline_keyboard"]:
        for button in row:
            if not button.get("text"):
                raise ApiError(400, "Bad Request: inline keyboard button text must be non-empty")
            kinds = [kind for kind in _BUTTON_KINDS if kind in button]
            if len(kinds) != 1:
                raise ApiError(400, "Bad Request: inline keyboard button must have exactly one action")
            data = button.get("callback_data")
            if data is not None and not 1 <= len(str(data).encode("utf-8")) <= MAX_CALLBACK_DATA_BYTES:
                raise ApiError(400, "Bad Request: BUTTON_DATA_INVALID")
            url = button.get("url")
            if url is not None and not re.match(r"(https?|tg)://\S+$", url):
                raise ApiError(400, f"Bad Request: inline keyboard button URL '{url}' is invalid: Wrong HTTP URL")


_FILE = {"file_id": "file-1", "file_unique_id": "unique-1"}
_MEDIA: dict[str, Any] = {   # what a user may send instead of text, as Telegram describes each
    "photo": [{**_FILE, "width": 640, "height": 480}],
    "document": {**_FILE, "file_name": "report.pdf", "mime_type": "application/pdf"},
    "video": {**_FILE, "width": 640, "height": 480, "duration": 5},
    "voice": {**_FILE, "duration": 3, "mime_type": "audio/ogg"},
    "sticker": {**_FILE, "type": "regular", "width": 512, "height": 512, "is_animated": False, "is_video": False},
}


def _auto_entities(text: str) -> list[dict[str, Any]]:
    """The entities Telegram's clients attach: a leading /command and @mentions."""
    entities: list[dict[str, Any]] = []
    for match in re.finditer(r"(?:^/[A-Za-z0-9_]+(?:@[A-Za-z0-9_]+)?)|(?<!\w)@[A-Za-z0-9_]{5,32}", text):
        kind = "bot_command" if match.group().startswith("/") else "mention"
        entities.append({
            "type": kind,
            "offset": utf16_length(text[: match.start()]),
            "length": utf16_length(match.group()),
        })
    return entities


class FakeTelegram:
    """A real HTTP server answering the Bot API methods our bot uses; see module docstring."""

    def __init__(self, token: str = f"{BOT_ID}:TEST") -> None:
        self.token = token
        self.base_url = ""
        self.base_file_url = ""
        self.calls: list[Call] = []
        self.chat_admins: dict[int, set[int]] = {}
        self.commands: dict[str, list[dict[str, Any]]] = {}
        self.webhook: dict[str, Any] | None = None
        self.rate_limited = 0  # 429 answers sent by the flood limiter
        self.latency = 0.0  # seconds every request takes, as over a real network; the request still succeeds
        self.jitter = 0.0  # up to this many seconds more, drawn for each request, as over a congested network
        self._random = random.Random(0)
        self._updates: deque[dict[str, Any]] = deque()
        self._update_ids = itertools.count(1)
        self._message_ids = itertools.count(1)
        self._callback_ids = itertools.count(1)
        self._messages: dict[tuple[int, int], dict[str, Any]] = {}
        self._last_bot_message: dict[int, int] = {}
        self._chats: dict[int, dict[str, Any]] = {}
        self._blocked: set[int] = set()
        self._faults: list[_Fault] = []
        self._sent: list[dict[str, Any]] = []
        self._overall: _Bucket | None = None
        self._per_chat_rate: float | None = None
        self._per_chat: dict[int, _Bucket] = {}
        self._retry_after = 1
        self._sliding: _SlidingLimits | None = None
        self._consumed: set[int] = set()
        self._changed = asyncio.Event()
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.webhook_posts: list[tuple[int, int]] = []   # (update_id, HTTP status; 0: no answer) per webhook POST
        self._hook_session: aiohttp.ClientSession | None = None
        self._hook_slots = asyncio.Semaphore(40)
        self._deliveries: set[asyncio.Task[None]] = set()

    # --- lifecycle -------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{bot:bot[^/]*}/{method}", self._handle)
        app.router.add_route("*", "/file/{bot:bot[^/]*}/{path:.*}", self._handle_file)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        port = server.sockets[0].getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}/bot"
        self.base_file_url = f"http://127.0.0.1:{port}/file/bot"

    async def stop(self) -> None:
        self._closing.set()
        self._notify()
        for task in list(self._deliveries):
            task.cancel()
        await asyncio.gather(*self._deliveries, return_exceptions=True)
        if self._hook_session is not None:
            await self._hook_session.close()
            self._hook_session = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeTelegram:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- what tests drive ------------------------------------------------

    @property
    def bot_user(self) -> dict[str, Any]:
        return {"id": BOT_ID, "is_bot": True, "first_name": "Civic Test Bot", "username": BOT_USERNAME}

    @staticmethod
    def user(user_id: int, language: str = "en") -> dict[str, Any]:
        """A user whose Telegram app is set to `language` (its `language_code`)."""
        return {"id": user_id, "is_bot": False, "first_name": f"User {user_id}", "username": f"user{user_id}",
                "language_code": language}

    def chat(self, chat_id: int, chat_type: str | None = None) -> dict[str, Any]:
        """The chat object for `chat_id`; a negative id is a group unless said otherwise."""
        known = self._chats.get(chat_id)
        if known is not None and (chat_type is None or known["type"] == chat_type):
            return known
        chat_type = chat_type or ("private" if chat_id > 0 else "supergroup" if chat_id < -10**12 else "group")
        if chat_type == "private":
            chat = {"id": chat_id, "type": "private", "first_name": f"User {chat_id}", "username": f"user{chat_id}"}
        else:
            chat = {"id": chat_id, "type": chat_type, "title": f"Group {chat_id}"}
        self._chats[chat_id] = chat
        return chat

    def _push(self, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        update = {"update_id": next(self._update_ids), kind: payload}
        if self.webhook is not None:
            self._post_to_webhook(update)
        else:
            self._updates.append(update)
        self._notify()
        return update

    def _post_to_webhook(self, update: dict[str, Any]) -> None:
        task = asyncio.get_running_loop().create_task(self._deliver(update))
        self._deliveries.add(task)
        task.add_done_callback(self._deliveries.discard)

    async def _deliver(self, update: dict[str, Any]) -> None:
        """POST one update until the webhook answers 200 (backing off up to a second), as Telegram does."""
        delay = 0.05
        async with self._hook_slots:
            while True:
                hook = self.webhook
                if hook is None:   # the webhook was deleted meanwhile: getUpdates hands it out
                    self._updates.append(update)
                    self._notify()
                    return
                secret = hook.get("secret_token")
                headers = {"X-Telegram-Bot-Api-Secret-Token": secret} if secret else {}
                if self._hook_session is None:
                    self._hook_session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
                try:
                    async with self._hook_session.post(hook["url"], json=update, headers=headers) as response:
                        status = response.status
                except (aiohttp.ClientError, TimeoutError):
                    status = 0
                self.webhook_posts.append((update["update_id"], status))
                self._notify()
                if status == 200:
                    return
                await asyncio.sleep(delay)
                delay = min(2 * delay, 1.0)

    def push_message(
        self,
        text: str,
        *,
        chat_id: int = 1001,
        user_id: int = 1001,
        chat_type: str = "private",
        reply_to_bot: bool = False,
        entities: list[dict[str, Any]] | None = None,
        language: str = "en",
        thread_id: int | None = None,
        media: str | None = None,
    ) -> dict[str, Any]:
        """Queue a user's text message for getUpdates; commands and @mentions get entities as in Telegram.

        `thread_id`: the message was written in that topic of a forum supergroup. With `media` ("photo",
        "document", "video", "voice", "sticker") the message carries that instead, and `text` is its caption
        (none when empty).
        """
        if chat_type == "private" and chat_id < 0:
            chat_type = "supergroup" if chat_id < -10**12 else "group"
        message: dict[str, Any] = {
            "message_id": next(self._message_ids),
            "date": int(time.time()),
            "chat": self.chat(chat_id, chat_type),
            "from": self.user(user_id, language),
        }
        if thread_id is not None:  # written in a forum topic
            message.update(message_thread_id=thread_id, is_topic_message=True)
        field = "text" if media is None else "caption"
        if media is not None:
            message[media] = _MEDIA[media]
        if text or media is None:
            message[field] = text
        found = _auto_entities(text) if entities is None else entities
        if found:
            message["entities" if media is None else "caption_entities"] = found
        if reply_to_bot:
            message["reply_to_message"] = self._bot_message_in(chat_id)
        self._messages[(chat_id, message["message_id"])] = message
        return self._push("message", message)

    def push_callback(
        self, data: str, *, chat_id: int = 1001, user_id: int = 1001, message_id: int | None = None,
        language: str = "en",
    ) -> dict[str, Any]:
        """Queue a button press on one of the bot's messages (by default its latest in the chat)."""
        if message_id is None:
            message = self._bot_message_in(chat_id)
        else:
            message = self._messages.get((chat_id, message_id)) or self._synthetic_bot_message(chat_id, message_id)
        query = {
            "id": str(next(self._callback_ids)),
            "from": self.user(user_id, language),
            "message": message,
            "chat_instance": str(chat_id),
            "data": data,
        }
        return self._push("callback_query", query)

    def push_inline_query(self, query: str, *, user_id: int = 1001, language: str = "en") -> dict[str, Any]:
        inline = {"id": str(next(self._callback_ids)), "from": self.user(user_id, language), "query": query,
                  "offset": "", "chat_type": "sender"}
        return self._push("inline_query", inline)

    async def wait_for(
        self, method: str, predicate: Callable[[dict[str, Any]], bool] = lambda p: True, timeout: float = 30,
        *, ok: bool | None = True,
    ) -> dict[str, Any]:
        """Params of the first call of `method` matching `predicate` not returned by an earlier wait_for.

        Each call is handed out once, so a test can wait for replies in turn.
        `ok=True` (default) matches successful calls only, `False` failed ones, `None` both.
        """
        deadline = time.monotonic() + timeout
        while True:
            for index, call in enumerate(self.calls):
                if (
                    index not in self._consumed
                    and call.method == method
                    and (ok is None or (call.status == 200) == ok)
                    and predicate(call.params)
                ):
                    self._consumed.add(index)
                    return call.params
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                seen = [c.method for c in self.calls[-10:]]
                raise TimeoutError(f"no {method} call matched within {timeout}s; last calls: {seen}")
            changed = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), remaining)

    def sent(self, chat_id: int | None = None) -> list[dict[str, Any]]:
        """Params of successful sendMessage calls, oldest first."""
        return [p for p in self._sent if chat_id is None or p.get("chat_id") == chat_id]

    def message(self, chat_id: int, message_id: int) -> dict[str, Any] | None:
        """A message as it now stands (after edits), or None."""
        return self._messages.get((chat_id, message_id))

    def block_chat(self, chat_id: int) -> None:
        self._blocked.add(chat_id)

    def fail_next(
        self, method: str, status: int, description: str, retry_after: int | None = None, count: int = 1,
        *, chat_id: int | None = None, migrate_to_chat_id: int | None = None,
    ) -> None:
        """Answer the next `count` calls of `method` (optionally to one chat) with this error."""
        self._faults.append(_Fault(method, count, status, description, retry_after, chat_id, migrate_to_chat_id))

    def hang_next(self, method: str, seconds: float, count: int = 1, *, chat_id: int | None = None) -> None:
        """Sit on the next calls for `seconds`, then answer 504 without acting: a timeout that lost the request."""
        self._faults.append(_Fault(method, count, 504, "Gateway Timeout", chat_id=chat_id, hang=seconds))

    def reset_next(self, method: str, count: int = 1, *, chat_id: int | None = None) -> None:
        """Drop the connection on the next calls without answering or acting (a connection reset)."""
        self._faults.append(_Fault(method, count, chat_id=chat_id, reset=True))

    def set_rate_limit(
        self, per_second: float | None, per_chat_per_second: float | None = 1.0, retry_after: int = 1
    ) -> None:
        """Enforce flood limits on messages sent: overall and per chat, as Telegram does (None: no limit)."""
        self._overall = _Bucket(per_second, max(1.0, per_second)) if per_second else None
        self._per_chat_rate = per_chat_per_second
        self._per_chat = {}
        self._retry_after = retry_after

    def enforce_telegram_limits(
        self, per_second: int = 30, per_chat_per_second: int = 1, per_group_per_minute: int = 20, retry_after: int = 1
    ) -> None:
        """Refuse (429, `retry_after`) any message beyond these counts in any sliding second (minute for groups)."""
        self._sliding = _SlidingLimits(per_second, per_chat_per_second, per_group_per_minute)
        self._retry_after = retry_after

    # --- the server ------------------------------------------------------

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _synthetic_bot_message(self, chat_id: int, message_id: int) -> dict[str, Any]:
        message = {"message_id": message_id, "date": int(time.time()), "chat": self.chat(chat_id),
                   "from": self.bot_user, "text": "…"}
        self._messages[(chat_id, message_id)] = message
        return message

    def _bot_message_in(self, chat_id: int) -> dict[str, Any]:
        last = self._last_bot_message.get(chat_id)
        if last is not None:
            return self._messages[(chat_id, last)]
        return self._synthetic_bot_message(chat_id, next(self._message_ids))

    @staticmethod
    async def _params(request: web.Request) -> dict[str, Any]:
        raw: dict[str, Any] = dict(request.query)
        if request.can_read_body:
            if request.content_type == "application/json":
                raw.update(await request.json())
                return raw
            form = await request.post()
            for key, value in form.items():
                raw[key] = value if isinstance(value, str) else f"<file {getattr(value, 'filename', '')}>"
        params: dict[str, Any] = {}
        for key, value in raw.items():
            if key in _STRING_PARAMS or not isinstance(value, str):
                params[key] = value
            else:
                try:
                    params[key] = json.loads(value)
                except ValueError:
                    params[key] = value
        return params

    def _take_fault(self, method: str, params: dict[str, Any]) -> _Fault | None:
        for fault in self._faults:
            if fault.method == method and fault.count > 0 and fault.chat_id in (None, params.get("chat_id")):
                fault.count -= 1
                if fault.count == 0:
                    self._faults.remove(fault)
                return fault
        return None

    def _flood_check(self, method: str, params: dict[str, Any]) -> None:
        if method not in _SENDING:
            return
        now = time.monotonic()
        if self._sliding is not None:
            wait = self._sliding.take(params.get("chat_id"), now)
            if wait:
                self.rate_limited += 1
                retry_after = max(self._retry_after, math.ceil(wait))
                raise ApiError(429, f"Too Many Requests: retry after {retry_after}", retry_after=retry_after)
        waits = []
        chat_id = params.get("chat_id")
        bucket = None
        if self._per_chat_rate and isinstance(chat_id, int):
            bucket = self._per_chat.get(chat_id)
            if bucket is None:
                bucket = self._per_chat[chat_id] = _Bucket(self._per_chat_rate, max(1.0, self._per_chat_rate))
            waits.append(bucket.take(now))
        if self._overall is not None:
            waits.append(self._overall.take(now))
        if any(waits):
            # A refused request spends nothing: give back what the other bucket granted.
            if bucket is not None and waits[0] == 0:
                bucket.tokens += 1
            if self._overall is not None and waits[-1] == 0:
                self._overall.tokens += 1
            self.rate_limited += 1
            retry_after = max(self._retry_after, math.ceil(max(waits)))
            raise ApiError(429, f"Too Many Requests: retry after {retry_after}", retry_after=retry_after)

    async def _handle_file(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": False, "error_code": 404, "description": "Not Found"}, status=404)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        params = await self._params(request)
        call = Call(method, params, time.monotonic())
        self.calls.append(call)
        try:
            if request.match_info["bot"] != f"bot{self.token}":
                raise ApiError(401, "Unauthorized")
            fault = self._take_fault(method, params)
            if fault is not None:
                if fault.reset:
                    call.status = 0
                    self._notify()
                    assert request.transport is not None
                    request.transport.abort()
                    return web.Response(status=500)
                if fault.hang:
                    call.status = fault.status
                    await asyncio.sleep(fault.hang)
                raise ApiError(fault.status, fault.description, fault.retry_after, fault.migrate_to_chat_id)
            if (self.latency or self.jitter) and method != "getUpdates":
                await asyncio.sleep(self.latency + self._random.uniform(0, self.jitter))
            try:
                call.result = await self._dispatch(method, params)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:  # malformed parameters
                raise ApiError(400, f"Bad Request: invalid parameters: {exc!r}") from exc
        except ApiError as error:
            call.status = error.status
            self._notify()
            return web.json_response(error.payload(), status=error.status)
        if method == "sendMessage":
            self._sent.append(params)
        self._notify()
        return web.json_response({"ok": True, "result": call.result})

    async def _dispatch(self, method: str, params: dict[str, Any]) -> Any:
        handler = getattr(self, f"_api_{method}", None)
        if handler is None:
            raise ApiError(404, "Not Found")
        return await handler(params)

    # --- Bot API methods -------------------------------------------------

    async def _api_getMe(self, params: dict[str, Any]) -> Any:
        return {**self.bot_user, "can_join_groups": True, "can_read_all_group_messages": False,
                "supports_inline_queries": True, "can_connect_to_business": False, "has_main_web_app": False}

    async def _api_getUpdates(self, params: dict[str, Any]) -> Any:
        if self.webhook is not None:
            raise ApiError(409, "Conflict: can't use getUpdates method while webhook is active; "
                                "use deleteWebhook to delete the webhook first")
        offset = int(params.get("offset") or 0)
        limit = int(params.get("limit") or 100)
        deadline = time.monotonic() + float(params.get("timeout") or 0)
        while self._updates and self._updates[0]["update_id"] < offset:
            self._updates.popleft()  # confirmed by the offset, as in Telegram
        while not self._updates and not self._closing.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            changed = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), remaining)
        return list(itertools.islice(self._updates, limit))

    async def _api_deleteWebhook(self, params: dict[str, Any]) -> Any:
        self.webhook = None
        if params.get("drop_pending_updates"):
            self._updates.clear()
        return True

    async def _api_setWebhook(self, params: dict[str, Any]) -> Any:
        if not str(params.get("url") or "").startswith(("https://", "http://")):
            raise ApiError(400, "Bad Request: bad webhook: an HTTPS URL must be provided for webhook")
        if self.webhook is None or self.webhook.get("max_connections") != params.get("max_connections"):
            self._hook_slots = asyncio.Semaphore(int(params.get("max_connections") or 40))
        self.webhook = params
        if params.get("drop_pending_updates"):
            self._updates.clear()
        while self._updates:   # what getUpdates had not handed out goes to the webhook
            self._post_to_webhook(self._updates.popleft())
        return True

    async def _api_getWebhookInfo(self, params: dict[str, Any]) -> Any:
        return {"url": (self.webhook or {}).get("url", ""), "has_custom_certificate": False,
                "pending_update_count": len(self._updates)}

    @staticmethod
    def _scope_key(params: dict[str, Any]) -> str:
        scope = params.get("scope") or {"type": "default"}
        return json.dumps([scope, params.get("language_code") or ""], sort_keys=True)

    async def _api_setMyCommands(self, params: dict[str, Any]) -> Any:
        commands = params.get("commands") or []
        for command in commands:
            if not re.fullmatch(r"[a-z0-9_]{1,32}", command.get("command", "")) or not command.get("description"):
                raise ApiError(400, "Bad Request: BOT_COMMAND_INVALID")
        self.commands[self._scope_key(params)] = commands
        return True

    async def _api_deleteMyCommands(self, params: dict[str, Any]) -> Any:
        self.commands.pop(self._scope_key(params), None)
        return True

    async def _api_getMyCommands(self, params: dict[str, Any]) -> Any:
        return self.commands.get(self._scope_key(params), [])

    def _target_chat(self, params: dict[str, Any]) -> int:
        chat_id = params.get("chat_id")
        if not isinstance(chat_id, int) or chat_id == 0:
            raise ApiError(400, "Bad Request: chat not found")
        if chat_id in self._blocked:
            if chat_id > 0:
                raise ApiError(403, "Forbidden: bot was blocked by the user")
            raise ApiError(403, "Forbidden: bot was kicked from the group chat")
        return chat_id

    def _checked_text(self, params: dict[str, Any]) -> str:
        text = params.get("text")
        if not isinstance(text, str) or not text.strip():
            raise ApiError(400, "Bad Request: message text is empty")
        shown = visible_text(text, params.get("parse_mode"))
        if not shown.strip():
            raise ApiError(400, "Bad Request: message text is empty")
        if utf16_length(shown) > MAX_MESSAGE_LENGTH:
            raise ApiError(400, "Bad Request: message is too long")
        _check_keyboard(params.get("reply_markup"))
        return shown

    async def _api_sendMessage(self, params: dict[str, Any]) -> Any:
        chat_id = self._target_chat(params)
        shown = self._checked_text(params)
        self._flood_check("sendMessage", params)
        message: dict[str, Any] = {
            "message_id": next(self._message_ids),
            "date": int(time.time()),
            "chat": self.chat(chat_id),
            "from": self.bot_user,
            "text": shown,
        }
        if isinstance(params.get("reply_markup"), dict) and "inline_keyboard" in params["reply_markup"]:
            message["reply_markup"] = params["reply_markup"]
        if params.get("message_thread_id"):
            message.update(message_thread_id=params["message_thread_id"], is_topic_message=True)
        reply = params.get("reply_parameters") or {}
        replied = self._messages.get((chat_id, reply.get("message_id") or params.get("reply_to_message_id") or 0))
        if replied is not None:
            message["reply_to_message"] = replied
        self._messages[(chat_id, message["message_id"])] = message
        self._last_bot_message[chat_id] = message["message_id"]
        return message

    def _editable(self, params: dict[str, Any]) -> dict[str, Any] | None:
        if params.get("inline_message_id"):
            return None
        chat_id = self._target_chat(params)
        message = self._messages.get((chat_id, params.get("message_id") or 0))
        if message is None or message.get("from", {}).get("id") != BOT_ID:
            raise ApiError(400, "Bad Request: message to edit not found")
        return message

    async def _api_editMessageText(self, params: dict[str, Any]) -> Any:
        message = self._editable(params)
        shown = self._checked_text(params)
        if message is None:
            return True
        markup = params.get("reply_markup")
        if message["text"] == shown and message.get("reply_markup") == markup:
            raise ApiError(400, "Bad Request: message is not modified: specified new message content and reply "
                                "markup are exactly the same as a current content and reply markup of the message")
        self._flood_check("editMessageText", params)
        message.update({"text": shown, "edit_date": int(time.time())})
        message.pop("reply_markup", None)
        if isinstance(markup, dict) and "inline_keyboard" in markup:
            message["reply_markup"] = markup
        return message

    async def _api_editMessageReplyMarkup(self, params: dict[str, Any]) -> Any:
        message = self._editable(params)
        markup = params.get("reply_markup")
        _check_keyboard(markup)
        if message is None:
            return True
        if message.get("reply_markup") == markup:
            raise ApiError(400, "Bad Request: message is not modified")
        self._flood_check("editMessageReplyMarkup", params)
        message.pop("reply_markup", None)
        if isinstance(markup, dict) and markup.get("inline_keyboard"):
            message["reply_markup"] = markup
        message["edit_date"] = int(time.time())
        return message

    async def _api_answerCallbackQuery(self, params: dict[str, Any]) -> Any:
        if len(params.get("text") or "") > 200:
            raise ApiError(400, "Bad Request: MESSAGE_TOO_LONG")
        return True

    async def _api_answerInlineQuery(self, params: dict[str, Any]) -> Any:
        results = params.get("results") or []
        ids = [str(r.get("id", "")) for r in results]
        if (len(results) > InlineQueryLimit.RESULTS or len(set(ids)) != len(ids)
                or not all(0 < len(i.encode()) <= InlineQueryResultLimit.MAX_ID_LENGTH for i in ids)):
            raise ApiError(400, "Bad Request: RESULT_ID_INVALID")
        for result in results:
            content = result.get("input_message_content") or {}
            if "message_text" in content:
                self._checked_text({"text": content["message_text"], "parse_mode": content.get("parse_mode")})
            _check_keyboard(result.get("reply_markup"))
        return True

    def _member(self, chat_id: int, user_id: int) -> dict[str, Any]:
        user = self.user(user_id)
        if user_id in self.chat_admins.get(chat_id, set()):
            rights = dict.fromkeys((
                "can_manage_chat", "can_delete_messages", "can_manage_video_chats", "can_restrict_members",
                "can_change_info", "can_invite_users", "can_post_stories", "can_edit_stories",
                "can_delete_stories", "can_pin_messages",
            ), True)
            return {"status": "administrator", "user": user, "can_be_edited": False, "is_anonymous": False,
                    "can_promote_members": False, **rights}
        return {"status": "member", "user": user}

    async def _api_getChatMember(self, params: dict[str, Any]) -> Any:
        chat_id = self._target_chat(params)
        return self._member(chat_id, int(params.get("user_id") or 0))

    async def _api_getChatAdministrators(self, params: dict[str, Any]) -> Any:
        chat_id = self._target_chat(params)
        if chat_id > 0:
            raise ApiError(400, "Bad Request: there are no administrators in the private chat")
        return [self._member(chat_id, user_id) for user_id in sorted(self.chat_admins.get(chat_id, set()))]

    async def _api_getChat(self, params: dict[str, Any]) -> Any:
        chat_id = self._target_chat(params)
        gifts = dict.fromkeys(
            ("unlimited_gifts", "limited_gifts", "unique_gifts", "premium_subscription", "gifts_from_channels"), False
        )
        return {**self.chat(chat_id), "accent_color_id": 0, "max_reaction_count": 11, "accepted_gift_types": gifts}

    async def _api_sendChatAction(self, params: dict[str, Any]) -> Any:
        self._target_chat(params)
        return True

    async def _api_close(self, params: dict[str, Any]) -> Any:
        return True

    async def _api_logOut(self, params: dict[str, Any]) -> Any:
        return True
