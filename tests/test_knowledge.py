"""The YAML knowledge base: loading, every problem reported as file:line, safe loading, atomic writes."""

from __future__ import annotations

import datetime as dt
import os
import textwrap
from pathlib import Path

import pytest

from bot import cli, knowledge
from bot.knowledge import Article, KnowledgeBase

GOOD = """\
id: good-1
title: Park reopens
published: 2024-03-01
source: Test Gazette
url: https://example.org/park
language: en
summary: The park reopened on Monday.
body: |-
  The park reopened on Monday.

  Children played all day.
topics: [parks]
"""

FAQ = """\
- id: subscribe
  questions: [How do I subscribe?, How do I get news?]
  answer: Send /subscribe.
  links: [https://example.org/help]
"""


def write(kb: Path, name: str, text: str) -> Path:
    path = kb / "articles" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def messages(kb: Path) -> list[str]:
    return [str(p) for p in knowledge.scan(kb)[1]]


def test_load_reads_articles_and_faq(tmp_path: Path) -> None:
    write(tmp_path, "good-1.yaml", GOOD)
    (tmp_path / "faq.yaml").write_text(FAQ)
    kb = knowledge.load(tmp_path)
    article = kb.articles["good-1"]
    assert article.published == dt.date(2024, 3, 1)
    assert article.body == "The park reopened on Monday.\n\nChildren played all day."
    assert article.topics == ("parks",)
    (entry,) = kb.faq
    assert entry.questions == ("How do I subscribe?", "How do I get news?")
    assert entry.links == ("https://example.org/help",)


def test_bad_yaml_is_reported_at_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "broken.yaml", "id: b\ntitle: [not closed\nbody: text\n")
    (message,) = messages(tmp_path)
    assert message.startswith(f"{path}:3: bad YAML")


@pytest.mark.parametrize(
    ("replace", "with_", "line", "message"),
    [
        ("title: Park reopens\n", "", 1, "missing field 'title'"),
        ("summary: The park reopened on Monday.", "summary: 42", 7, "field 'summary' must be non-empty text"),
        ("published: 2024-03-01", "published: next Tuesday", 3, "field 'published' is not a date"),
        ("published: 2024-03-01", "published: 2024-13-45", 1, "bad value"),
        ("url: https://example.org/park", "url: [a, b]", 5, "field 'url' must be text or null"),
        ("topics: [parks]", "topics: {a: b}", 12, "field 'topics' must be a list of words"),
        ("topics: [parks]", "topcis: [parks]", 12, "unknown field 'topcis'"),
    ],
)
def test_each_field_problem_names_file_and_line(
    tmp_path: Path, replace: str, with_: str, line: int, message: str
) -> None:
    path = write(tmp_path, "good-1.yaml", GOOD.replace(replace, with_))
    (problem,) = messages(tmp_path)
    assert problem.startswith(f"{path}:{line}: {message}")


def test_every_problem_is_reported_not_just_the_first(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", GOOD)
    duplicate = write(tmp_path, "b.yaml", GOOD)
    broken = write(tmp_path, "c.yaml", "id: c\ntitle: [\n")
    (tmp_path / "faq.yaml").write_text("- questions: []\n  answer: ''\n")
    found = messages(tmp_path)
    assert f"{duplicate}:1: duplicate id 'good-1' (also in {tmp_path / 'articles' / 'a.yaml'})" in found
    assert any(m.startswith(f"{broken}:") for m in found)
    assert f"{tmp_path / 'faq.yaml'}:1: 'questions' must be a non-empty list of phrasings" in found
    assert f"{tmp_path / 'faq.yaml'}:2: 'answer' must be non-empty text" in found
    with pytest.raises(knowledge.KnowledgeError) as error:
        knowledge.load(tmp_path)
    assert len(error.value.problems) == len(found) == 4


def test_not_an_article_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "list.yaml", "- just\n- a list\n")
    assert messages(tmp_path) == [f"{path}:1: an article must be a mapping of fields (id, title, body, ...)"]


def test_yaml_that_would_build_objects_is_refused_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    write(tmp_path, "evil.yaml", f"id: !!python/object/apply:os.system ['touch {marker}']\ntitle: t\n")
    (problem,) = messages(tmp_path)
    assert ":1: bad YAML" in problem
    assert not marker.exists()


def test_not_utf8_and_too_big(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    latin = tmp_path / "articles" / "latin.yaml"
    latin.parent.mkdir(parents=True)
    latin.write_bytes(GOOD.replace("Park", "Caf\xe9").encode("latin-1"))
    assert messages(tmp_path)[0].startswith(f"{latin}:1: not UTF-8 text")
    monkeypatch.setattr(knowledge, "MAX_FILE_BYTES", 100)
    assert f"{latin}:1: file is larger than 0 MB" in messages(tmp_path)


def test_missing_directory(tmp_path: Path) -> None:
    assert messages(tmp_path / "nowhere") == [f"{tmp_path / 'nowhere'}:1: knowledge directory does not exist"]


def test_write_then_read_round_trip(tmp_path: Path) -> None:
    article = Article(
        id="r1", title="Кеңес: «жаңа» бюджет", published=None, source=None, url=None, language="kk",
        summary="Бір сөйлем.", body="Бір сөйлем.\n\nЕкінші абзац: 'тырнақша' және \"басқа\".", topics=("a b",),
    )
    path = knowledge.write_article(tmp_path, article)
    assert path == knowledge.article_path(tmp_path, "r1")
    assert "body: |-\n" in path.read_text(encoding="utf-8")  # multi-line text stays a readable block
    assert knowledge.load(tmp_path).articles == {"r1": article}


def test_article_path_is_always_inside_the_articles_folder(tmp_path: Path) -> None:
    for hostile in ("../../etc/passwd", "/abs/path", "..", "a/b\\c"):
        path = knowledge.article_path(tmp_path, hostile)
        assert path.parent == tmp_path / "articles"


def test_atomic_write_keeps_the_old_file_when_interrupted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "articles" / "x.yaml"
    knowledge.write_atomic(target, "old: content\n")

    def crash(*_args: object) -> None:
        raise KeyboardInterrupt  # the moment between writing the temporary file and renaming it

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        knowledge.write_atomic(target, "new: content\n", fsync=False)
    assert target.read_text() == "old: content\n"
    assert list(target.parent.iterdir()) == [target]  # no temporary file left behind


def test_diff_and_latest() -> None:
    def art(article_id: str, published: dt.date | None, body: str = "Text.") -> Article:
        return Article(article_id, article_id, published, None, None, "en", body, body)

    old = KnowledgeBase({"a": art("a", None), "b": art("b", dt.date(2024, 1, 1))})
    new = KnowledgeBase({"b": art("b", dt.date(2024, 1, 1), "Changed."), "c": art("c", dt.date(2023, 1, 1))})
    changes = knowledge.diff(old, new)
    assert (changes.added, changes.updated, changes.removed) == (("c",), ("b",), ("a",))
    assert not knowledge.diff(new, new)
    both = KnowledgeBase({**old.articles, **new.articles})
    assert [a.id for a in both.latest(3)] == ["b", "c", "a"]  # undated last


def test_cli_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path, "good-1.yaml", GOOD)
    (tmp_path / "faq.yaml").write_text(FAQ)
    assert cli.main(["check", "--knowledge", str(tmp_path)]) == 0
    assert capsys.readouterr().out == "OK: 1 articles, 1 FAQ entries\n"
    bad = write(tmp_path, "bad.yaml", GOOD.replace("id: good-1", "id: bad-1").replace("2024-03-01", "soon"))
    assert cli.main(["check", "--knowledge", str(tmp_path)]) == 1
    assert capsys.readouterr().out.startswith(f"{bad}:3: field 'published' is not a date: 'soon'")


@pytest.mark.parametrize("link", [
    "https://example.org/a?b=c#d", "http://news.example.kz:8080/path", "https://пример.рф/статья",
    "https://[2a00:1450:4001:80b::200e]/x", "https://93.184.216.34/",
])
def test_web_url_keeps_ordinary_links(link: str) -> None:
    assert knowledge.web_url(link) == link


@pytest.mark.parametrize("link", [
    "https://a@b@c/", "https://user:pass@example.org/", "https://example.org@evil.example/",  # userinfo misleads
    "https://example.org/\u202egpj.exe", "https://exa\u200bmple.org/", "https://example.org/\u2066x\u2069",
    "https://example.org/\ufeff", "https://example.org/\u00ad", "https://example.org/\x07",  # invisible or control
    "https://evil.example\\@example.org/",  # browsers read a backslash as a slash
    "http://localhost/", "http://LOCALHOST:8080/", "http://app.localhost/", "http://127.0.0.1/", "http://127.1/",
    "http://2130706433/", "http://0x7f.0.0.1/", "http://[::1]/", "http://[::ffff:127.0.0.1]/", "http://10.0.0.5/",
    "http://192.168.1.1/", "http://169.254.169.254/latest/meta-data", "http://0.0.0.0/", "http://intranet/",
    "javascript:alert(1)", "tg://resolve?domain=x", "/relative", "https://",
])
def test_web_url_refuses_links_that_mislead_or_point_inside(link: str) -> None:
    assert knowledge.web_url(link) is None


def test_an_intranet_link_is_kept_as_the_articles_link_but_never_shown_as_a_button() -> None:
    assert knowledge.http_url("http://10.0.0.5/news/1") == "http://10.0.0.5/news/1"
    assert knowledge.web_url("http://10.0.0.5/news/1") is None
    for hostile in ("https://a@b@c/", "https://example.org/\u202egpj.exe", "ftp://example.org/"):
        assert knowledge.http_url(hostile) is None
