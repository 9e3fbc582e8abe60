"""Bad input, fuzzed: any message text, any callback data, hostile files for `build`.

Whatever users type and whatever the articles hold, a reply must be valid for Telegram: HTML it can parse,
at most 4,096 UTF-16 units. The checks are the fake Bot API server's, which refuses what Telegram refuses.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import datetime as dt
import json
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from bot import ingest, knowledge
from bot.config import Settings
from bot.knowledge import Article, FaqEntry
from bot.render import render_html
from bot.service import Service
from bot.store import Store
from bot.telegram.keyboards import answer_keyboard
from bot.testing.fake_telegram import BOT_USERNAME, FakeTelegram, _check_keyboard, utf16_length, visible_text
from tests.conftest import REPO
from tests.driver import ADMIN, EN, GONE, SORRY, running

# --- a knowledge base that tries everything a Telegram message can choke on ---------------------

_LOOKALIKES = '<b>bold</b> <i>unclosed & <script>alert("x")</script> &amp; &#0; &bogus; </blockquote> <a href="x">'
_MARKDOWN = "*stars* _underscores_ [link](javascript:alert(1)) `code` ~~strike~~ ||spoiler|| # heading"
_RTL = "\u202eevil\u202c مرحبا بالعالم שלום עולם \u200f"
_EMOJI = "🏛️👩🏽‍⚖️🇰🇿 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 "
_CONTROL = "bell\x07 escape\x1b[31m nul-free tab\t zero\u200bwidth joiner\u200d"
_MIXED = "Парламент принял закон. Мәжіліс заңды қабылдады. 议会通过了法律. Le parlement a voté."

HOSTILE_ARTICLES = (
    Article("markup", f"Budget {_LOOKALIKES}", dt.date(2024, 1, 5), f"Source {_LOOKALIKES}", 'javascript:alert("x")',
            "en", f"The budget vote {_LOOKALIKES}.", f"The budget vote passed. {_LOOKALIKES}. {_MARKDOWN}. "
            f"Deputies argued about the budget for hours."),
    Article("river-" + "x" * 120, "River " * 300, None, None, 'https://example.org/?q="><script>', "en",
            "A very long river sentence.", "The river flooded the valley " * 400 + "."),
    Article("astral", _EMOJI * 200, dt.date(2023, 7, 1), _EMOJI, "https://example.org/astral", "en",
            _EMOJI * 100, f"The festival drew crowds. {_EMOJI * 300}. The festival ended at night."),
    Article("rtl", f"Court {_RTL}", dt.date(2022, 2, 2), None, None, "en", f"The court {_RTL}.",
            f"The court ruled on the appeal. {_RTL}. {_CONTROL}. The court adjourned."),
    Article("mixed", f"Law {_MIXED}", dt.date(2021, 3, 3), "Газета", "https://example.org/mixed", "ru",
            _MIXED, f"{_MIXED} " * 20),
)
HOSTILE_FAQ = (FaqEntry("hostile", ("How do I subscribe?",), f"Send /subscribe {_LOOKALIKES} {_MARKDOWN} {_RTL}",
                        ("https://example.org/faq?a=1&b=<2>", "javascript:alert(1)", "tg://resolve?domain=x")),)
VOCABULARY = sorted({w for a in HOSTILE_ARTICLES for w in (a.title + " " + a.body).split()} | {"subscribe"})


def _write_kb(directory: Path) -> Path:
    for article in HOSTILE_ARTICLES:
        knowledge.write_article(directory, article)
    faq = [{"id": e.id, "questions": list(e.questions), "answer": e.answer, "links": list(e.links)}
           for e in HOSTILE_FAQ]
    knowledge.write_atomic(directory / knowledge.FAQ_FILE, knowledge.dump_yaml(faq))
    return directory


@pytest.fixture(scope="module")
def hostile_kb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = _write_kb(tmp_path_factory.mktemp("hostile") / "knowledge")
    shutil.copytree(REPO / "knowledge" / "articles", directory / "articles", dirs_exist_ok=True)
    return directory


@pytest.fixture(scope="module")
def service(hostile_kb: Path) -> Iterator[Service]:
    store = Store(":memory:")
    yield Service(hostile_kb, store)
    store.close()


# --- any message text ----------------------------------------------------------------------------

_any_char = st.characters(blacklist_categories=("Cs",))   # Telegram text is always valid Unicode
MESSAGES = st.one_of(
    st.text(_any_char, max_size=300),
    st.text(st.sampled_from(_EMOJI + "🙂🔥❤️‍🔥"), min_size=1, max_size=40),
    st.text(st.characters(whitelist_categories=("Cc", "Cf", "Zl", "Zp", "Zs")), max_size=60),
    st.text(st.sampled_from('<>&"\'/;#*_`[]()~|!'), max_size=80),
    st.lists(st.sampled_from([*VOCABULARY, _LOOKALIKES, _MARKDOWN, _RTL, _EMOJI, _MIXED]), max_size=25).map(" ".join),
    st.lists(st.sampled_from(VOCABULARY), min_size=1, max_size=20).map(lambda w: (" ".join(w) + " ") * 700)
    .map(lambda text: text[:4096]),
    st.text(_any_char, min_size=4096, max_size=4096),
)


def assert_valid_reply(html: str) -> None:
    shown = visible_text(html, "HTML")   # raises ApiError where Telegram would refuse the HTML
    assert shown.strip()
    assert utf16_length(shown) <= 4096


@hypothesis_settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                             HealthCheck.data_too_large])
@given(text=MESSAGES)
def test_any_message_gets_a_valid_reply_whatever_the_articles_hold(service: Service, text: str) -> None:
    answer = service.ask(text)
    assert_valid_reply(render_html(answer))
    _check_keyboard(answer_keyboard(answer, EN).to_dict())   # button texts, data of at most 64 bytes, URLs


# --- end to end through the fake server ------------------------------------------------------------

@pytest.fixture
def hostile_copy(hostile_kb: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(hostile_kb, tmp_path / "knowledge"))


def _settings(tg: FakeTelegram, knowledge_dir: Path, database: Path) -> Settings:
    return Settings(token=tg.token, base_url=tg.base_url, knowledge_dir=knowledge_dir, database_path=database,
                    admin_ids=frozenset({ADMIN}), user_rate_limit=0)


async def _session(knowledge_dir: Path, database: Path, messages: list[tuple[str, int]]) -> list[Any]:
    """Send each (text, chat) from a user of its own; return the calls the bot made."""
    async with FakeTelegram() as tg, running(_settings(tg, knowledge_dir, database)):
        for number, (text, chat) in enumerate(messages):
            tg.push_message(text, chat_id=chat, user_id=10_000 + number)
        for _, chat in messages:
            await tg.wait_for("sendMessage", lambda p, c=chat: p["chat_id"] == c, timeout=20)
        await asyncio.sleep(0.3)   # a second reply would come now
        return list(tg.calls)


_PREFIXES = st.sampled_from(["", "", "", "/ask ", "/search ", "/subscribe ", "/latest ", "/no_such_command ",
                             f"@{BOT_USERNAME} "])


@hypothesis_settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                           HealthCheck.data_too_large,
                                                                           HealthCheck.function_scoped_fixture])
@given(texts=st.lists(st.tuples(_PREFIXES, MESSAGES.filter(bool)).map("".join), min_size=12, max_size=12))
def test_any_message_end_to_end_gets_exactly_one_valid_reply(hostile_copy: Path, tmp_path: Path,
                                                             texts: list[str]) -> None:
    database = tmp_path / f"{time.monotonic_ns()}.sqlite3"
    # each in its own chat: private, or a group when the bot is mentioned
    messages = [(text, -(5000 + n) if text.startswith("@") else 5000 + n) for n, text in enumerate(texts)]
    calls = asyncio.run(_session(hostile_copy, database, messages))
    sends = [c for c in calls if c.method == "sendMessage"]
    assert all(c.status == 200 for c in sends), [(c.status, c.result) for c in sends if c.status != 200]
    for _, chat in messages:
        (reply,) = [c.params for c in sends if c.params["chat_id"] == chat]
        assert reply["text"] != SORRY
        if reply.get("parse_mode") == "HTML":
            assert_valid_reply(reply["text"])


# --- forged callback data -------------------------------------------------------------------------

_touched: list[list[str]] = []   # the lists of the `files_touched` blocks now open


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _touched and event in ("open", "os.listdir", "os.scandir"):
        for paths in _touched:
            paths.append(str(args[0]))


sys.addaudithook(_audit)   # hooks cannot be removed: this one records only inside `files_touched`


def not_code(paths: list[str]) -> list[str]:
    """The paths that are not Python's or the bot's own code and data (which a lazy import opens)."""
    roots = [Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve(), (REPO / "bot").resolve()]
    return [p for p in paths if not any(Path(p).resolve().is_relative_to(root) for root in roots)]


@contextlib.contextmanager
def files_touched() -> Iterator[list[str]]:
    """Every file opened and folder listed by this process's Python code inside the block."""
    paths: list[str] = []
    _touched.append(paths)
    try:
        yield paths
    finally:
        _touched.remove(paths)


_forged = st.one_of(
    st.binary(min_size=1, max_size=64).map(lambda b: b.decode("utf-8", "replace")),
    st.text(_any_char, min_size=1, max_size=64),
    st.tuples(st.sampled_from(["a:", "f:1:", "f:0:", "u:", "l:", "a:#", "a:../", "f:2:", "u:-"]),
              st.text(_any_char, max_size=40)).map("".join),
    st.sampled_from(["a:../../etc/passwd", "a:/etc/passwd", "a:knowledge/articles/markup.yaml", "a:markup.yaml",
                     "u:1", "u:99999999999999999999", "f:1:../../", "a:%2e%2e%2fetc", "a:\x00", "l"]),
).filter(lambda data: 1 <= len(data.encode()) <= 64)


async def _press(knowledge_dir: Path, database: Path, forged: list[str]) -> tuple[list[Any], list[str], set[str]]:
    """Ask one question, then press each forged button on its answer; return calls, files touched, data offered."""
    async with FakeTelegram() as tg, running(_settings(tg, knowledge_dir, database)):
        tg.push_message("the budget vote", chat_id=7001, user_id=7001)
        answer = await tg.wait_for("sendMessage", lambda p: p["chat_id"] == 7001)
        message_id = next(c.result["message_id"] for c in tg.calls if c.params is answer)
        offered = {b.get("callback_data") for row in answer["reply_markup"]["inline_keyboard"] for b in row}
        with files_touched() as touched:
            for data in forged:
                tg.push_callback(data, chat_id=7001, user_id=7001, message_id=message_id)
            for _ in forged:
                await tg.wait_for("answerCallbackQuery", timeout=20)
            await asyncio.sleep(0.3)
        return list(tg.calls), touched, offered


@hypothesis_settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                           HealthCheck.function_scoped_fixture])
@given(forged=st.lists(_forged, min_size=25, max_size=25))
def test_forged_callback_data_is_refused_and_never_reads_a_file(hostile_copy: Path, tmp_path: Path,
                                                                forged: list[str]) -> None:
    database = tmp_path / f"{time.monotonic_ns()}.sqlite3"
    calls, touched, offered = asyncio.run(_press(hostile_copy, database, forged))
    assert not_code(touched) == []
    answers = [c.params.get("text") for c in calls if c.method == "answerCallbackQuery"]
    assert len(answers) == len(forged)
    refused = [data for data in forged if data not in offered]
    assert answers.count(GONE) == len(refused)
    assert SORRY not in answers
    sent_after_answer = [c for c in calls if c.method in ("sendMessage", "editMessageText", "editMessageReplyMarkup")]
    assert len(sent_after_answer) == 1 + (len(forged) - len(refused))   # only buttons really offered do anything
    assert all(c.status == 200 for c in calls if c.method != "getUpdates")


# --- hostile files for `build` (the fixtures in tests/fixtures/ingest/bad are covered in test_ingest) ---

def _one(name: str, data: bytes, suffix: str) -> ingest.Draft | ingest.Failure:
    (item,) = ingest.parse(name, data, suffix)
    return item


def test_html_with_scripts_and_a_huge_page_keeps_only_the_text(tmp_path: Path) -> None:
    script = "<script>stealCookies(); document.write('INJECTED');</script><style>body{display:none}</style>"
    paragraphs = "".join(f"<p>The council debated item {n} of the water budget for the eastern district.</p>{script}"
                         for n in range(7_000))
    page = (f"<html><head><title>Water budget debate</title>{script * 100}</head><body><nav>Menu Home</nav>"
            f"<article><h1>Water budget debate</h1>{paragraphs}</article><footer>Cookies</footer></body></html>")
    path = tmp_path / "page.html"
    path.write_text(page, "utf-8")
    assert path.stat().st_size > 1024 * 1024
    report = ingest.build([str(path)], tmp_path / "kb")
    assert not report.failed and len(report.added) == 1
    (article,) = knowledge.load(tmp_path / "kb").articles.values()
    assert "item 6999 of the water budget" in article.body
    everything = json.dumps(article.to_yaml_dict(), default=str)
    assert "stealCookies" not in everything and "INJECTED" not in everything and "display:none" not in everything


def test_deeply_nested_markup_and_json_fail_alone_with_a_reason(tmp_path: Path) -> None:
    deep_html = "<html><body>" + "<div>" * 100_000 + "Lost text." + "</div>" * 100_000 + "</body></html>"
    (tmp_path / "deep.html").write_text(deep_html, "utf-8")
    deep_json = json.dumps({"title": "x", "text": "y"}).replace('"y"', "[" * 100_000 + "]" * 100_000)
    good = json.dumps({"id": "fine", "title": "Fine", "text": "A fine article. It has two sentences."})
    (tmp_path / "deep.jsonl").write_text(f"{deep_json}\n{good}\n", "utf-8")
    report = ingest.build([str(tmp_path / "deep.html"), str(tmp_path / "deep.jsonl")], tmp_path / "kb")
    reasons = {f.origin.removeprefix(str(tmp_path) + "/"): f.reason for f in report.failed}
    assert reasons["deep.html"] == "no article text found in the HTML page"
    assert "RecursionError" in reasons["deep.jsonl:1"]
    assert report.added == ["fine"]


_BOMB_ENTITIES = """<?xml version="1.0" encoding="UTF-16"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY xxe SYSTEM "file:///etc/passwd">
]>
<rss version="2.0"><channel><title>&lol7;</title>
<item><title>Item &lol7;</title><description>Hello &lol7; &xxe; world.</description></item>
</channel></rss>
"""


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be", "utf-32-le"])
def test_an_entity_bomb_in_another_encoding_is_not_expanded(tmp_path: Path, encoding: str) -> None:
    """The byte check for <!ENTITY sees UTF-8 only; the parser underneath must still not expand or fetch."""
    bom = {"utf-16-le": codecs.BOM_UTF16_LE, "utf-16-be": codecs.BOM_UTF16_BE, "utf-32-le": codecs.BOM_UTF32_LE}
    path = tmp_path / "feed.xml"
    path.write_bytes(bom[encoding] + _BOMB_ENTITIES.encode(encoding))
    report = ingest.build([str(path)], tmp_path / "kb")
    written = "".join(p.read_text("utf-8") for p in (tmp_path / "kb").rglob("*.yaml"))
    assert "lollol" not in written and "root:" not in written
    assert report.failed or report.added


def test_a_yaml_alias_bomb_in_front_matter_is_a_clear_error(tmp_path: Path) -> None:
    levels = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    levels += [f"l{n}: &l{n} [{', '.join([f'*l{n - 1}'] * 10)}]" for n in range(1, 9)]
    for field in ("published", "title", "topics", "id"):
        text = "---\n" + "\n".join(levels) + f"\n{field}: *l8\n---\nThe council met. It voted.\n"
        item = _one(f"bomb-{field}.md", text.encode(), ".md")
        if isinstance(item, ingest.Failure):
            assert len(item.reason) < 1000
        else:   # topics are read as a list of words: the nested lists are simply not words
            assert field == "topics" and item.topics == ()


def test_a_nul_byte_escaped_in_json_and_other_controls_never_reach_the_knowledge_base(tmp_path: Path) -> None:
    record = {"id": "ctl", "title": "Ti\u0000tle \u0007bell", "text": "Body with NUL \u0000, ESC \u001b[31m, "
              "DEL \u007f and a bell \u0007. Second sentence here."}
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps(record) + "\n", "utf-8")
    report = ingest.build([str(source)], tmp_path / "kb")
    assert report.added == ["ctl"]
    article = knowledge.load(tmp_path / "kb").articles["ctl"]
    for text in (article.title, article.body, article.summary):
        assert not any(ch in text for ch in "\x00\x07\x1b\x7f"), repr(text)


def test_an_article_too_big_for_the_knowledge_base_is_refused_and_the_rest_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(knowledge, "MAX_FILE_BYTES", 4096)
    long_text = " ".join(f"Sentence {n} of a long report on the river." for n in range(200))
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"id": "long", "title": "Long", "text": long_text}) + "\n"
                      + json.dumps({"id": "short", "title": "Short", "text": "A short one. Two sentences."}) + "\n")
    report = ingest.build([str(source)], tmp_path / "kb")
    (failure,) = report.failed
    assert failure.origin == f"{source}:1"
    assert "limit of one knowledge-base file" in failure.reason
    assert report.added == ["short"]
    assert set(knowledge.load(tmp_path / "kb").articles) == {"short"}   # what was written loads
