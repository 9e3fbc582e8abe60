"""sources.yaml: the feeds and pages the bot follows, validated with file:line problems like every other file."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot import cli
from bot.sources import DEFAULT_EVERY, Source, parse_duration, read_sources


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sources.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_sources_with_defaults_and_durations(tmp_path: Path) -> None:
    write(tmp_path, """\
- url: https://news.example.org/feed.xml
  name: Example News
  every: 30m
  language: ru
  topics: [civil society, grants]
- url: https://example.kz/page.html
- https://bare.example.net/rss
- url: http://10.1.2.3/intranet.xml
  every: 5
""")
    sources, problems = read_sources(tmp_path)
    assert problems == []
    assert sources == [
        Source("https://news.example.org/feed.xml", "Example News", 1800.0, "ru", ("civil society", "grants")),
        Source("https://example.kz/page.html", None, DEFAULT_EVERY),
        Source("https://bare.example.net/rss"),
        Source("http://10.1.2.3/intranet.xml", every=5.0),  # private hosts are the fetcher's decision
    ]
    assert DEFAULT_EVERY == 15 * 60


@pytest.mark.parametrize(("value", "seconds"), [
    ("30s", 30.0), ("15m", 900.0), ("2h", 7200.0), ("1d", 86400.0), (45, 45.0), ("45", 45.0), (2.5, 2.5),
    (" 10 M ", 600.0), ("0s", None), (0, None), (-5, None), ("fast", None), ("15 minutes", None), (True, None),
    (None, None), ([1], None),
])
def test_parse_duration(value: object, seconds: float | None) -> None:
    assert parse_duration(value) == seconds


def test_every_problem_is_reported_with_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, """\
- url: https://ok.example.org/feed
- name: No link
- url: javascript:alert(1)
- url: https://a.example.org/
  every: soon
  language: English
  topics: {a: 1}
  colour: red
- url: https://ok.example.org/feed
- 42
""")
    sources, problems = read_sources(tmp_path)
    assert [s.url for s in sources] == ["https://ok.example.org/feed"]
    assert [str(p) for p in problems] == [
        f"{path}:2: missing field 'url'",
        f"{path}:3: field 'url' must be an http(s) link, not 'javascript:alert(1)'",
        f"{path}:5: field 'every' must be a duration such as 30s, 15m or 2h, not 'soon'",
        f"{path}:6: field 'language' must be a code such as 'en' or 'ru', not 'English'",
        f"{path}:7: field 'topics' must be a list of words",
        f"{path}:8: unknown field 'colour'",
        f"{path}:9: duplicate source https://ok.example.org/feed (also line 1)",
        f"{path}:10: a source must be a mapping of fields (url, name, every, language, topics) or a URL",
    ]


def test_not_a_list_bad_yaml_and_no_file(tmp_path: Path) -> None:
    assert read_sources(tmp_path) == ([], [])
    path = write(tmp_path, "url: https://example.org/feed\n")
    assert [str(p) for p in read_sources(tmp_path)[1]] == [
        f"{path}:1: sources.yaml must be a list of sources, each with a 'url'"]
    write(tmp_path, "- url: https://example.org/feed\n  every: [\n")
    (problem,) = read_sources(tmp_path)[1]
    assert str(problem).startswith(f"{path}:3: bad YAML")
    write(tmp_path, "- url: !!python/object/apply:os.system ['true']\n")
    (problem,) = read_sources(tmp_path)[1]
    assert str(problem).startswith(f"{path}:1: bad YAML")


def test_check_reports_sources_problems(knowledge_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check", "--knowledge", str(knowledge_dir)]) == 0
    capsys.readouterr()
    path = write(knowledge_dir, "- url: https://example.org/feed\n  every: often\n")
    assert cli.main(["check", "--knowledge", str(knowledge_dir)]) == 1
    assert capsys.readouterr().out == (
        f"{path}:2: field 'every' must be a duration such as 30s, 15m or 2h, not 'often'\n")
