"""The builder: every input format in, a clean YAML knowledge base out; bad inputs reported, nothing lost."""

from __future__ import annotations

import datetime as dt
import io
import json
import shutil
import time
from pathlib import Path

import feedparser
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot import cli, ingest, knowledge
from bot.knowledge import Article
from bot.summarise import summarise
from bot.text import split_sentences

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "ingest"
BAD = FIXTURES / "bad"
BOILERPLATE = ("Skip to Content", "Menu", "Share", "Source:", "by March", "Tuesday, March 14th", "V??")


def build_one(source: Path, knowledge_dir: Path) -> list[Article]:
    report = ingest.build([str(source)], knowledge_dir)
    assert not report.failed, report.failed
    return list(knowledge.load(knowledge_dir).articles.values())


def assert_real_summary(article: Article) -> None:
    sentences = split_sentences(article.body, article.language)
    chosen = split_sentences(article.summary, article.language)
    assert 1 <= len(chosen) <= 3
    assert all(s in sentences for s in chosen)


# --- the seed article, as shipped, and a page of the same shape from another site ---

def test_shipped_seed_article() -> None:
    kb = knowledge.load(REPO / "knowledge")
    (seed,) = kb.articles.values()
    assert seed.title == (
        "D. Kaletayev: In the course of implementing the recommendations of the VII Civil Forum, "
        "the volume of state social contracts has more than doubled"
    )
    assert seed.published == dt.date(2018, 6, 5)
    assert seed.source == "Government of the Republic of Kazakhstan"
    assert seed.url is None
    assert seed.language == "en"
    for junk in ("Skip to Content", "September 26th, 2021", "by June 5, 2018", "Source:", "V??"):
        assert junk not in seed.body
        assert junk not in seed.summary
    assert "recommendations of the VII Civil Forum and instructed" in seed.body
    assert_real_summary(seed)
    assert knowledge.article_path(REPO / "knowledge", seed.id).exists()


def test_scraped_page_of_the_seed_shape(tmp_path: Path) -> None:
    (article,) = build_one(FIXTURES / "scraped_page.txt", tmp_path)
    assert article.title == (
        "River Volunteers: The Lakeside cleanup drew four hundred residents in the VII Spring Week"
    )
    assert article.published == dt.date(2023, 3, 3)  # the byline, not the day the page was saved
    assert article.source == "Lakeside City Volunteer Council"
    assert article.url is None
    assert article.topics == ("Environment",)
    assert article.language == "en"
    for junk in BOILERPLATE:
        assert junk not in article.body
    assert article.body.startswith("Four hundred residents of Lakeside joined")
    assert article.body.endswith("to hold a workshop on sorting waste.")
    assert "the main event of the VII Spring Week" in article.body
    assert "According to council chair M. Ostrova, the volunteers" in article.body  # initials kept in a sentence
    assert_real_summary(article)
    assert len(split_sentences(article.summary, "en")) >= 2


def test_plain_text_without_site_furniture(tmp_path: Path) -> None:
    source = tmp_path / "note.txt"
    source.write_text(
        "Tenants' union meets the mayor\n\n"
        "By the end of 2019, the union had two thousand members.\n\n"
        "On Monday its leaders met the mayor to talk about rents.\n"
    )
    (article,) = build_one(source, tmp_path / "kb")
    assert article.title == "Tenants' union meets the mayor"
    assert article.body.startswith("By the end of 2019, the union had")  # a sentence, not a byline
    assert article.published is None
    assert article.source is None


def test_text_without_a_title_gets_its_first_sentence(tmp_path: Path) -> None:
    source = tmp_path / "untitled.txt"
    source.write_text("The choir of Elm Street won the regional prize. It sang three songs.")
    (article,) = build_one(source, tmp_path / "kb")
    assert article.title == "The choir of Elm Street won the regional prize."


# --- the other formats ---

def test_html_page(tmp_path: Path) -> None:
    (article,) = build_one(FIXTURES / "page.html", tmp_path)
    assert article.title == "Library opens a repair café"
    assert article.published == dt.date(2024, 5, 18)
    assert article.url == "https://news.example.org/2024/05/library-repair-cafe"
    assert article.source == "Northbridge Civic News"
    assert article.body.startswith("The central library of Northbridge opened a repair café")
    for junk in ("About us", "Donate", "tracking", "All rights reserved"):
        assert junk not in article.body
    assert "\n\n" in article.body  # paragraphs kept
    assert_real_summary(article)


def test_markdown_with_front_matter(tmp_path: Path) -> None:
    (article,) = build_one(FIXTURES / "note.md", tmp_path)
    assert article.title == "Youth council elects its first chair"
    assert article.published == dt.date(2024, 2, 9)
    assert article.source == "Riverside Youth Forum"
    assert article.url == "https://youth.example.net/news/first-chair"
    assert article.topics == ("youth", "elections")
    assert article.body.startswith("The new youth council of Riverside elected")
    assert "longer opening hours for the sports hall." in article.body
    for markup in ("**", "*safe", "](", "# Youth", "- The council"):
        assert markup not in article.body


def test_rss_feed_every_item_becomes_an_article(tmp_path: Path) -> None:
    articles = {a.title: a for a in build_one(FIXTURES / "feed.rss", tmp_path)}
    assert set(articles) == {"Night bus route saved after petition", "Community garden looks for helpers"}
    bus = articles["Night bus route saved after petition"]
    assert bus.url == "https://harbour.example.com/news/night-bus-saved"
    assert bus.published == dt.date(2024, 4, 8)
    assert bus.source == "Harbour Town Association"
    assert bus.topics == ("Transport",)
    assert bus.body == (
        "The city will keep the N4 night bus after 2,300 residents signed the association's petition.\n\n"
        "The route had been due to close in May. The transport office said the signatures showed the route was needed."
    )


def test_atom_feed_without_links(tmp_path: Path) -> None:
    (article,) = build_one(FIXTURES / "feed.atom", tmp_path)
    assert article.title == "Court upholds right to peaceful assembly"
    assert article.url is None  # never invented from the entry's urn id
    assert article.published == dt.date(2024, 6, 1)
    assert article.source == "Valley Rights Watch"
    assert article.topics == ("Courts",)
    assert "<p>" not in article.body


def test_json_lines_keep_ids_and_understand_export_spellings(tmp_path: Path) -> None:
    articles = {a.id: a for a in build_one(FIXTURES / "articles.jsonl", tmp_path)}
    assert set(articles) == {"demo-1", "demo-2", "demo-3"}
    first = articles["demo-1"]
    assert (first.title, first.published, first.source, first.url) == (
        "Food bank opens second branch", dt.date(2024, 1, 15), "Eastfield Food Bank",
        "https://food.example.org/second-branch",
    )
    second = articles["demo-2"]  # {date, outlet, a link in source, no title}: the shape of a real export
    assert second.published == dt.date(2024, 3, 10)
    assert second.source == "Green Eastfield"
    assert second.url == "https://trees.example.org/ring-road"
    assert second.title == "Volunteers planted two hundred trees along the ring road on Sunday."
    assert articles["demo-3"].language == "ru"
    assert knowledge.article_path(tmp_path, "demo-1").exists()


def test_standard_input(tmp_path: Path) -> None:
    record = {"id": "from-stdin", "title": "Piped in", "text": "This article came through a pipe. It is short."}
    report = ingest.build(["-"], tmp_path, stdin=io.BytesIO(json.dumps(record).encode()))
    assert report.added == ["from-stdin"]


def test_folder_is_walked_recursively_skipping_hidden_files_and_the_knowledge_base(tmp_path: Path) -> None:
    inputs = tmp_path / "inputs"
    shutil.copytree(FIXTURES, inputs, ignore=shutil.ignore_patterns("bad"))
    (inputs / ".hidden.txt").write_text("A hidden draft that must not be imported. It has two sentences.")
    kb = inputs / "knowledge"
    first = ingest.build([str(inputs)], kb)
    second = ingest.build([str(inputs)], kb)  # the knowledge base inside the folder is not read as input
    assert not first.failed and not second.failed
    assert len(first.added) == 9
    assert len(second.unchanged) == 9 and not second.added


# --- rebuilding ---

def test_rebuild_changes_nothing(tmp_path: Path) -> None:
    sources = [str(FIXTURES / name) for name in ("scraped_page.txt", "feed.rss", "articles.jsonl", "note.md")]
    first = ingest.build(sources, tmp_path)
    files = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in knowledge.article_paths(tmp_path)}
    second = ingest.build(sources, tmp_path)
    assert len(first.added) == 7
    assert (second.added, second.updated, sorted(second.unchanged)) == ([], [], sorted(first.added))
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in knowledge.article_paths(tmp_path)} == files


def test_changed_article_is_updated_in_place(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    record = {"id": "n1", "title": "Park reopens", "text": "The park reopened on Monday. Children played all day."}
    source.write_text(json.dumps(record))
    ingest.build([str(source)], tmp_path / "kb")
    source.write_text(json.dumps({**record, "text": "The park reopened on Tuesday. Children played all day."}))
    report = ingest.build([str(source)], tmp_path / "kb")
    assert report.updated == ["n1"]
    assert knowledge.article_paths(tmp_path / "kb") == [knowledge.article_path(tmp_path / "kb", "n1")]
    assert "Tuesday" in knowledge.load(tmp_path / "kb").articles["n1"].body


def test_derived_ids_are_stable_and_readable(tmp_path: Path) -> None:
    (article,) = build_one(FIXTURES / "scraped_page.txt", tmp_path)
    assert article.id.startswith("2023-03-03-river-volunteers-the-lakeside")
    again = ingest.make_article(next(ingest.parse("other-name.txt", (FIXTURES / "scraped_page.txt").read_bytes())))
    assert again.id == article.id  # the input's name does not matter, its content does
    assert knowledge.article_path(tmp_path, article.id).name == f"{article.id}.yaml"


def test_hand_edited_summary_is_kept_unless_resummarise(tmp_path: Path) -> None:
    build_one(FIXTURES / "scraped_page.txt", tmp_path)
    (path,) = knowledge.article_paths(tmp_path)
    edited = "Four hundred people cleaned the river banks of Lakeside."
    data = knowledge.read_article(path, [])
    assert data is not None
    knowledge.write_article(tmp_path, Article(**{**_fields(data), "summary": edited, "published": None}))

    kept = ingest.build([str(FIXTURES / "scraped_page.txt")], tmp_path)
    article = knowledge.load(tmp_path).articles[data.id]
    assert article.summary == edited
    assert article.published == dt.date(2023, 3, 3)  # the input knows the date: it wins
    assert kept.updated == [data.id]

    fresh = ingest.build([str(FIXTURES / "scraped_page.txt")], tmp_path, resummarise=True)
    assert fresh.updated == [data.id]
    assert knowledge.load(tmp_path).articles[data.id].summary == data.summary


def test_editor_values_fill_what_the_input_does_not_know(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"id": "n2", "title": "Bridge", "text": "The bridge opened. People crossed it."}))
    ingest.build([str(source)], tmp_path / "kb")
    old = knowledge.load(tmp_path / "kb").articles["n2"]
    knowledge.write_article(tmp_path / "kb", Article(**{**_fields(old), "url": "https://example.org/bridge",
                                                        "published": dt.date(2024, 1, 2)}))
    report = ingest.build([str(source)], tmp_path / "kb")
    article = knowledge.load(tmp_path / "kb").articles["n2"]
    assert report.unchanged == ["n2"]
    assert (article.url, article.published) == ("https://example.org/bridge", dt.date(2024, 1, 2))


def test_merge_detects_machine_summaries(tmp_path: Path) -> None:
    old = ingest.make_article(ingest.Draft("x", "Title", "The council met. It approved the budget. Parents cheered."))
    new = Article(**{**_fields(old), "body": old.body + " The mayor spoke.", "summary": "new machine summary"})
    assert old.summary == summarise(old.body, old.language)
    assert ingest.merge(old, new).summary == "new machine summary"  # old one was the machine's: replaced


def _fields(article: Article) -> dict[str, object]:
    return {name: getattr(article, name) for name in Article.__slots__}


# --- bad input ---

def test_bad_inputs_are_reported_one_by_one_and_the_rest_imported(tmp_path: Path) -> None:
    report = ingest.build([str(BAD), str(FIXTURES / "feed.rss")], tmp_path)
    reasons = {f.origin.replace(str(BAD) + "/", ""): f.reason for f in report.failed}
    assert reasons == {
        "bad_front_matter.md": "bad YAML front matter at line 3: did not find expected ',' or ']'",
        "billion_laughs.xml": "the feed declares XML entities: refused (an entity-expansion attack has this shape)",
        "junk.txt": "binary data (NUL bytes), not text",
        "not_a_feed.xml": "not an RSS or Atom feed",
        "one_broken_line.jsonl:2": "bad JSON: Expecting ',' delimiter (column 60)",
        "one_broken_line.jsonl:4": "empty article: no text",
        "empty_page.txt": "empty article: no text",
    }
    assert {"ok-1", "ok-2"} <= set(report.added)  # the good lines around the broken one
    assert len(report.added) == 4


def test_feedparser_never_expands_entities_either() -> None:
    """Defence in depth: were our refusal bypassed, the parser underneath still does not expand the bomb."""
    started = time.perf_counter()
    parsed = feedparser.parse((BAD / "billion_laughs.xml").read_bytes())
    assert time.perf_counter() - started < 5
    assert "lollollol" not in json.dumps(parsed, default=str)


def test_binary_junk_without_nul_bytes_is_refused() -> None:
    junk = bytes(b for b in range(1, 32) if b not in (9, 10, 13)) * 50
    (failure,) = ingest.parse("junk.bin", junk)
    assert isinstance(failure, ingest.Failure)
    assert "binary junk" in failure.reason


def test_oversized_input_is_skipped_with_a_clear_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingest, "MAX_INPUT_BYTES", 1024)
    big = tmp_path / "big.txt"
    big.write_text("A sentence about the river. " * 100)
    report = ingest.build([str(big)], tmp_path / "kb")
    (failure,) = report.failed
    assert failure.origin == str(big)
    assert "over the" in failure.reason and "MB limit" in failure.reason
    assert not report.added


def test_missing_and_unreadable_inputs(tmp_path: Path) -> None:
    report = ingest.build([str(tmp_path / "nope.txt")], tmp_path / "kb")
    assert [str(f) for f in report.failed] == [f"{tmp_path / 'nope.txt'}: no such file or folder"]
    with pytest.raises(ingest.InputError, match="cannot read"):
        ingest.read_input(tmp_path)  # a folder cannot be opened as a file


def test_broken_article_in_the_knowledge_base_is_never_overwritten(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"id": "keep-me", "title": "T", "text": "An article. With text."}))
    path = knowledge.article_path(tmp_path / "kb", "keep-me")
    path.parent.mkdir(parents=True)
    path.write_text("id: keep-me\ntitle: [an editor's half-finished edit\n")
    report = ingest.build([str(source)], tmp_path / "kb")
    (failure,) = report.failed
    assert "has problems" in failure.reason and str(path) in failure.reason
    assert path.read_text() == "id: keep-me\ntitle: [an editor's half-finished edit\n"


def test_duplicate_ids_in_one_build(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    line = json.dumps({"id": "same", "title": "T", "text": "An article. With text."})
    source.write_text(f"{line}\n{line}\n")
    report = ingest.build([str(source)], tmp_path / "kb")
    assert report.added == ["same"]
    assert [str(f) for f in report.failed] == [f"{source}:2: duplicate id 'same' (also {source}:1)"]


def test_no_temporary_files_are_left_behind(tmp_path: Path) -> None:
    ingest.build([str(FIXTURES)], tmp_path / "kb")
    leftovers = [p for p in (tmp_path / "kb").rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]
    assert leftovers == []


# --- text repair ---

@pytest.mark.parametrize(
    ("damaged", "repaired"),
    [
        ("the V?? Civil Forum", "the VII Civil Forum"),
        ("the X??? Congress met", "the XIII Congress met"),
        ("Was it V?? ", "Was it V?? "),  # nothing after it: perhaps a real double question mark
        ("Did they win World War I? Yes.", "Did they win World War I? Yes."),  # one "?" is a question mark
        ("the ?? forum", "the ?? forum"),  # no numeral to restore
        ("the VV?? forum", "the VV?? forum"),  # VVII is not a numeral
        ("don\u00e2\u20ac\u2122t", "don\u2019t"),  # UTF-8 read as Windows-1252
        ("\u201cquoted\u201d \u2013 dash", "\u201cquoted\u201d \u2013 dash"),  # typography kept as written
    ],
)
def test_clean_text(damaged: str, repaired: str) -> None:
    assert ingest.clean_text(damaged) == repaired


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("by June 5, 2018 Fun", (dt.date(2018, 6, 5), ("Fun",))),
        ("By 5 June 2018", (dt.date(2018, 6, 5), ())),
        ("Published: 12 March 2020", (dt.date(2020, 3, 12), ())),
        ("Опубликовано 5 июня 2018", (dt.date(2018, 6, 5), ())),
        ("By Anna Berg", (None, ())),
        ("By the end of 2019, the union had grown.", None),
        ("By June 5, 2018 the plan was done.", None),
    ],
)
def test_bylines(line: str, expected: object) -> None:
    assert ingest._byline(line) == expected


def test_windows_1251_text_is_decoded() -> None:
    text = "Новый центр для волонтёров открылся в городе. Он работает каждый день."
    (draft,) = ingest.parse("old.txt", text.encode("cp1251"))
    assert isinstance(draft, ingest.Draft)
    assert draft.body == text


# --- the command line ---

def test_cli_build_and_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    kb = str(tmp_path / "kb")
    assert cli.main(["build", str(FIXTURES / "feed.rss"), str(BAD / "junk.txt"), "--knowledge", kb]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"failed: {BAD / 'junk.txt'}: binary data (NUL bytes), not text"
    assert out[1].startswith("added 2, updated 0, unchanged 0, failed 1")
    assert cli.main(["build", str(FIXTURES / "feed.rss"), "--knowledge", kb]) == 0
    assert capsys.readouterr().out.startswith("added 0, updated 0, unchanged 2, failed 0")
    assert cli.main(["check", "--knowledge", kb]) == 0
    assert capsys.readouterr().out == "OK: 2 articles, 0 FAQ entries\n"


def test_a_library_error_fails_that_input_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(name: str, text: str) -> ingest.Draft:
        raise RuntimeError("parser bug")

    monkeypatch.setattr(ingest, "parse_html", explode)
    report = ingest.build([str(FIXTURES / "page.html"), str(FIXTURES / "feed.atom")], tmp_path)
    assert [str(f) for f in report.failed] == [f"{FIXTURES / 'page.html'}: cannot be read (RuntimeError: parser bug)"]
    assert len(report.added) == 1


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.one_of(
        st.binary(max_size=400),
        st.text(max_size=400).map(str.encode),
        st.sampled_from(["<rss><item>", "<feed>", "---\n", "{", "<html><body>", "by 1 May 2020\n"]).flatmap(
            lambda head: st.text(max_size=200).map(lambda tail: (head + tail).encode())
        ),
    ),
    suffix=st.sampled_from(["", ".txt", ".jsonl", ".xml", ".html", ".md"]),
)
def test_any_input_gives_valid_articles_or_failures_never_an_exception(data: bytes, suffix: str) -> None:
    for item in ingest.parse("fuzz" + suffix, data, suffix):
        assert isinstance(item, ingest.Draft | ingest.Failure)
        if isinstance(item, ingest.Draft):
            try:
                article = ingest.make_article(item)
            except ingest.InputError as exc:
                assert str(exc) == "empty article: no text"
                continue
            problems: list[knowledge.Problem] = []
            written = yaml.safe_load(knowledge.dump_yaml(article.to_yaml_dict()))
            assert knowledge.article_from_dict(written, Path("x.yaml"), None, problems) == article, problems


def test_json_lines_field_errors_name_the_line(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    lines = [
        {"title": "A", "text": "Fine text here. Two sentences."},
        {"title": "B", "text": "Text. More.", "published": "someday"},
        {"title": "C", "text": "Text. More.", "url": "not a link"},
        {"title": "D", "text": ["not", "text"]},
        {"title": "E", "text": "Text. More.", "language": "English"},
        [1, 2, 3],
    ]
    source.write_text("\n".join(json.dumps(line) for line in lines))
    report = ingest.build([str(source)], tmp_path / "kb")
    assert len(report.added) == 1
    assert sorted(str(f).removeprefix(str(source)) for f in report.failed) == [
        ":2: not a date: 'someday' (use YYYY-MM-DD)",
        ":3: field 'url' is not an http(s) link: 'not a link'",
        ":4: field 'text' must be text, not list",
        ":5: language must be a code such as 'en' or 'ru', not 'English'",
        ":6: a line must be a JSON object with 'title' and 'text'",
    ]


# --- hardening (issue 13) ---

def test_a_feed_whose_content_is_a_path_is_read_as_text_not_opened(tmp_path: Path) -> None:
    """feedparser opens its argument when it names a file: `/dev/zero` in an .rss file would eat the memory."""
    pointer = tmp_path / "pointer.rss"
    pointer.write_text(str(FIXTURES / "feed.rss"))
    report = ingest.build([str(pointer)], tmp_path / "kb")
    assert report.added == []
    (failure,) = report.failed
    assert str(failure).startswith(f"{pointer}: not an RSS or Atom feed")


def test_a_huge_published_value_is_refused_quickly(tmp_path: Path) -> None:
    """dateparser is far from linear: what it is handed is capped (a 24 KB value took 18 s)."""
    source = tmp_path / "in.jsonl"
    huge = "5 June 2018 " + "12 " * 8000
    source.write_text(json.dumps({"title": "A", "text": "Fine text here. Two sentences.", "published": huge}))
    started = time.perf_counter()
    report = ingest.build([str(source)], tmp_path / "kb")
    assert time.perf_counter() - started < 10  # a safety margin, not a speed goal: uncapped, this took a minute
    (failure,) = report.failed
    assert str(failure).startswith(f"{source}:1: not a date: '5 June 2018 12 12")
    assert ingest.find_date("5 June 2018 " + "and then " * 20) is None  # longer than any date line
    assert ingest.find_date("published 5 June 2018") == ("5 June 2018", dt.date(2018, 6, 5))


def test_an_id_too_long_for_a_file_name_fails_alone(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    records = [
        {"id": "x" * 300, "title": "Long", "text": "Fine text here. Two sentences."},
        {"id": "ж" * 120, "title": "Wide letters", "text": "Fine text here. Other sentences."},
        {"id": "ok", "title": "Short", "text": "More fine text. Two sentences."},
    ]
    source.write_text("\n".join(json.dumps(r) for r in records))
    report = ingest.build([str(source)], tmp_path / "kb")
    assert report.added == ["ok"]
    assert [str(f) for f in report.failed] == [
        f"{source}:1: id is 300 bytes long, over the {knowledge.MAX_ID_BYTES}-byte limit of a file name",
        f"{source}:2: id is 240 bytes long, over the {knowledge.MAX_ID_BYTES}-byte limit of a file name",
    ]
    assert list(knowledge.load(tmp_path / "kb").articles) == ["ok"]


def test_only_the_first_lines_of_a_page_are_searched_for_dates() -> None:
    """Each date line costs dateparser milliseconds: a page of thousands of them must not cost minutes."""
    text = "5 June 2018\n" * 5000 + "\nThe council met. It agreed on the budget.\n"
    started = time.perf_counter()
    draft = ingest.parse_scraped_text("dates.txt", text)
    assert time.perf_counter() - started < 10  # a safety margin: before the cap this took about 20 s
    assert draft.body.endswith("The council met. It agreed on the budget.")
    assert ingest.find_date("12 " * 20) is None  # too many numbers to be one date
    assert ingest.find_date("Wed, 12 Sep 2018 10:45:00 +0600")[1] == dt.date(2018, 9, 12)  # type: ignore[index]
