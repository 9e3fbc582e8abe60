"""Articles in, knowledge base out: the ``build`` command's reading and merging.

Inputs come in many shapes (a scraped page saved as text, an HTML page, Markdown
with front matter, RSS/Atom feeds, JSON Lines). Each parser turns its input into
``Draft`` articles, the same way for all: ids, cleaning, language and summary are
settled once, in ``make_article``. ``build`` then merges the drafts into the YAML
knowledge base, one atomic file write per article, and reports what it did and
which inputs failed and why; a bad input never stops the others.
"""

from __future__ import annotations

import codecs
import datetime as dt
import hashlib
import io
import json
import os
import re
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

import charset_normalizer
import feedparser
import frontmatter
import ftfy
import lxml.html
import yaml
from markdown_it import MarkdownIt
from tqdm import tqdm

from bot import knowledge
from bot.knowledge import Article, http_url
from bot.summarise import summarise
from bot.text import detect_language, split_sentences

MAX_INPUT_BYTES = 20 * 1024 * 1024
PROGRESS_MIN_ITEMS = 50  # fewer than this finish before a progress bar would tell anything
TITLE_MAX_CHARS = 250
STDIN = "-"

FEED_EXTENSIONS = frozenset({".xml", ".rss", ".atom", ".rdf"})
HTML_EXTENSIONS = frozenset({".html", ".htm", ".xhtml"})
JSONL_EXTENSIONS = frozenset({".jsonl", ".ndjson", ".json"})
MARKDOWN_EXTENSIONS = frozenset({".md", ".markdown"})
# Month and day names are read in these languages; naming them also spares dateparser its slow language guess.
DATE_LANGUAGES = ["en", "ru", "kk"]
# dateparser's search is slow and far from linear in its input (numbers cost most); no date line, byline or date
# field is longer than this. Only the first lines of a scraped page are looked at for a date or a byline.
MAX_DATE_CHARS, MAX_DATE_WORDS, MAX_DATE_NUMBERS = 120, 10, 6
MAX_HEADER_LINES, MAX_BYLINE_LINES = 30, 5

_FIX_TEXT = ftfy.TextFixerConfig(
    uncurl_quotes=False, fix_character_width=False, fix_latin_ligatures=False, explain=False
)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f\ufffd]")
# A Roman numeral whose Cyrillic "І" letters were lost to "?" by a Latin-1 round trip ("V??" for "VІІ").
_LOST_ROMAN = re.compile(r"(?<![\w?])([IVXLC]*)(\?{2,4})([IVXLC]*)(?=\s+\w)")
_ROMAN = re.compile(r"M{0,3}(CM|CD|D?C{0,3})(XC|XL|L?X{0,3})(IX|IV|V?I{0,3})")
_NAVIGATION = frozenset({
    "skip to content", "skip to main content", "skip to navigation", "skip navigation", "menu", "main menu",
    "search", "home", "print", "share", "back to top", "перейти к содержимому", "версия для печати", "поиск",
    "главная", "меню",
})
_SOURCE_LINE = re.compile(r"^(?:source|источник|дереккөз)\s*:(?P<source>.*\S)", re.IGNORECASE)
_BYLINE = re.compile(
    r"^(?P<lead>by|published(?: on)?|posted(?: on)?|updated(?: on)?|опубликовано|дата публикации)\b[\s:]*(?P<rest>.*)$",
    re.IGNORECASE,
)
_LANGUAGE_CODE = re.compile(r"[a-z]{2,3}")
_NUMBER = re.compile(r"\d+")
_SENTENCE_END = re.compile(r"[.!?…]$")
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")
_HTML_BLOCKS = ("p", "div", "li", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "tr", "section", "article")


class InputError(ValueError):
    """An input, or one record of it, cannot become an article; the message says why."""


@dataclass(frozen=True, slots=True)
class Draft:
    """An article as its input gives it, before its id, language and summary are settled."""

    origin: str  # where it came from, for messages: "feed.xml item 3", "docs.jsonl:12"
    title: str
    body: str
    published: dt.date | None = None
    source: str | None = None
    url: str | None = None
    id: str | None = None  # kept as given (JSON Lines); otherwise derived from `key`
    key: str | None = None  # what identifies the article across runs when it has no url (a feed guid)
    language: str | None = None
    topics: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Failure:
    origin: str
    reason: str

    def __str__(self) -> str:
        return f"{self.origin}: {self.reason}"


@dataclass(slots=True)
class BuildReport:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        return (
            f"added {len(self.added)}, updated {len(self.updated)}, unchanged {len(self.unchanged)}, "
            f"failed {len(self.failed)}"
        )


# --- text clean-up -------------------------------------------------------------

def clean_text(text: str) -> str:
    """Repair what broken encodings did to the text, and nothing else (quotes and dashes stay as written)."""
    return _LOST_ROMAN.sub(_restore_roman, ftfy.fix_text(text, _FIX_TEXT))


def _restore_roman(match: re.Match[str]) -> str:
    """Each "?" stood for one lost letter; in a Roman numeral that letter is an I, if the result is a numeral."""
    before, lost, after = match.groups()
    candidate = before + "I" * len(lost) + after
    if (before or after) and _ROMAN.fullmatch(candidate):
        return candidate
    return match.group(0)


def tidy_body(text: str) -> str:
    """Paragraphs separated by one blank line, no trailing spaces: readable as a YAML block."""
    paragraphs = (
        "\n".join(line.rstrip() for line in block.strip("\n").splitlines()).strip()
        for block in _PARAGRAPH_BREAK.split(text.replace("\r\n", "\n"))
    )
    return "\n\n".join(p for p in paragraphs if p)


def one_line(text: str) -> str:
    return " ".join(text.split())


def decode(data: bytes) -> str:
    """Text from bytes, refusing binary data rather than importing garbage."""
    for bom, encoding in ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
                          (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16")):
        if data.startswith(bom):
            try:
                return _text_only(data.decode(encoding))
            except UnicodeDecodeError as exc:
                raise InputError(f"not valid {encoding.upper()} text ({exc.reason})") from None
    if b"\x00" in data:
        raise InputError("binary data (NUL bytes), not text")
    try:
        return _text_only(data.decode("utf-8-sig"))
    except UnicodeDecodeError:
        best = charset_normalizer.from_bytes(data).best()
        if best is None:
            raise InputError("binary data, not text in any known encoding") from None
        return _text_only(str(best))


def _text_only(text: str) -> str:
    if len(_CONTROL.findall(text)) > max(8, len(text) // 200):
        raise InputError("binary junk: too many control characters for text")
    return text


def html_text(markup: str) -> str:
    """Plain paragraphs from an HTML fragment (feed items, rendered Markdown)."""
    if "<" not in markup:
        return tidy_body(markup)
    root = lxml.html.fragment_fromstring(markup, create_parent="div")
    for element in root.xpath("//script|//style"):
        element.drop_tree()
    for element in root.iter("br"):
        element.tail = "\n" + (element.tail or "")
    for element in root.iter(*_HTML_BLOCKS):
        element.text = "\n\n" + (element.text or "")
        element.tail = "\n\n" + (element.tail or "")
    return "\n\n".join(one_line(p) for p in _PARAGRAPH_BREAK.split(root.text_content()) if p.strip())


# --- dates ---------------------------------------------------------------------

def parse_date(value: Any) -> dt.date | None:
    """A calendar date from YAML, ISO text or words ("June 5, 2018", "5 июня 2018"); InputError otherwise."""
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip()[:10])
        except ValueError:
            found = find_date(value)
            if found is not None and len(found[0]) >= len(value.strip()) / 2:
                return found[1]
    raise InputError(f"not a date: {knowledge.short_repr(value)} (use YYYY-MM-DD)")


def find_date(text: str) -> tuple[str, dt.date] | None:
    """The first full date (day, month and year) written in `text`, and the words that wrote it."""
    if (len(text) > MAX_DATE_CHARS or len(text.split()) > MAX_DATE_WORDS
            or len(_NUMBER.findall(text)) > MAX_DATE_NUMBERS):
        return None
    from dateparser.search import search_dates  # half a second to import: only when a text needs it

    settings = {"REQUIRE_PARTS": ["day", "month", "year"], "DATE_ORDER": "DMY", "PREFER_DATES_FROM": "past"}
    found = search_dates(text, languages=DATE_LANGUAGES, settings=settings)  # type: ignore[arg-type]
    if not found:
        return None
    words, when = found[0]
    return words, when.date()


# --- formats -------------------------------------------------------------------

def parse(name: str, data: bytes, suffix: str = "") -> Iterator[Draft | Failure]:
    """Every article in one input, in order; a record that cannot be read is a Failure, not an exception."""
    try:
        text = decode(data)
        kind = detect_format(text, suffix)
        if kind == "jsonl":
            yield from parse_jsonl(name, text)
        elif kind == "feed":
            yield from parse_feed(name, data)
        elif kind == "html":
            yield parse_html(name, text)
        elif kind == "front-matter":
            yield parse_front_matter(name, text, markdown=suffix != ".txt")
        elif kind == "markdown":
            yield parse_markdown(name, text)
        else:
            yield parse_scraped_text(name, text)
    except Exception as exc:  # one unreadable input must never stop the others
        yield Failure(name, failure_reason(exc))


def failure_reason(exc: Exception) -> str:
    """Our own reasons as they are; a library's error with its type, since its message alone may be cryptic."""
    return str(exc) if isinstance(exc, InputError) else f"cannot be read ({type(exc).__name__}: {exc})"


def detect_format(text: str, suffix: str) -> str:
    """Content first (a feed saved as .txt is still a feed), the file extension to settle the rest."""
    head = text.lstrip("\ufeff \t\r\n")[:2048]
    lowered = head.lower()
    if head.startswith("{"):
        return "jsonl"
    if head.startswith("---\n") or head.startswith("---\r\n"):
        return "front-matter"
    if head.startswith("<"):
        html_at = min((i for i in (lowered.find("<!doctype html"), lowered.find("<html")) if i >= 0), default=-1)
        feed_at = min((i for i in (lowered.find("<rss"), lowered.find("<feed"), lowered.find("<rdf:rdf"))
                       if i >= 0), default=-1)
        if feed_at >= 0 and (html_at < 0 or feed_at < html_at):
            return "feed"
        if html_at >= 0:
            return "html"
    for kind, extensions in (("jsonl", JSONL_EXTENSIONS), ("feed", FEED_EXTENSIONS), ("html", HTML_EXTENSIONS),
                             ("markdown", MARKDOWN_EXTENSIONS)):
        if suffix in extensions:
            return kind
    return "html" if lowered.startswith("<") and "<body" in lowered else "text"


def parse_jsonl(name: str, text: str) -> Iterator[Draft | Failure]:
    """One article per line; a broken line fails alone, with its line number."""
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        origin = f"{name}:{number}"
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise InputError("a line must be a JSON object with 'title' and 'text'")
            yield _draft_from_record(origin, record)
        except json.JSONDecodeError as exc:
            yield Failure(origin, f"bad JSON: {exc.msg} (column {exc.colno})")
        except Exception as exc:  # the line fails, the rest of the file is still read
            yield Failure(origin, failure_reason(exc))


def _draft_from_record(origin: str, record: dict[str, Any]) -> Draft:
    """JSON Lines fields, plus the spellings real exports use (`date`, `outlet`, a link in `source`)."""
    def text_field(*keys: str) -> str | None:
        for key in keys:
            value = record.get(key)
            if value is None:
                continue
            if not isinstance(value, str):
                raise InputError(f"field '{key}' must be text, not {type(value).__name__}")
            if value.strip():
                return value
        return None

    source, url = text_field("source"), text_field("url")
    if source and http_url(source) and not url:
        source, url = None, source
    if url and not http_url(url):
        raise InputError(f"field 'url' is not an http(s) link: {url!r}")
    record_id = record.get("id")
    if record_id is not None and not isinstance(record_id, str | int):
        raise InputError("field 'id' must be text or a number")
    return Draft(
        origin=origin,
        title=text_field("title") or "",
        body=text_field("text", "body") or "",
        published=parse_date(record.get("published") or record.get("date")),
        source=source or text_field("outlet", "publisher"),
        url=url,
        id=_optional_id(record_id),
        language=text_field("language"),
        topics=_topics(record.get("topics") or record.get("tags") or record.get("category")),
    )


def parse_feed(name: str, data: bytes) -> Iterator[Draft | Failure]:
    """Every item of an RSS or Atom feed. feedparser never expands external or nested entities."""
    if b"<!ENTITY" in data:
        raise InputError("the feed declares XML entities: refused (an entity-expansion attack has this shape)")
    parsed = feedparser.parse(io.BytesIO(data))  # given bytes, feedparser would first try them as a file name
    detail = f" ({parsed.bozo_exception})" if parsed.bozo else ""
    if not parsed.version:
        raise InputError(f"not an RSS or Atom feed{detail}")
    if not parsed.entries:
        raise InputError(f"the feed has no items{detail}")
    publisher = one_line(parsed.feed.get("title", "")) or None
    for number, entry in enumerate(parsed.entries, start=1):
        content = entry.get("content") or []
        markup = content[0].get("value", "") if content else entry.get("summary", "")
        when = entry.get("published_parsed") or entry.get("updated_parsed")
        url = http_url(entry.get("link"))
        yield Draft(
            origin=f"{name} item {number}",
            title=html_text(entry.get("title", "")),
            body=html_text(markup),
            published=dt.date(when.tm_year, when.tm_mon, when.tm_mday) if when else None,
            source=publisher,
            url=url,
            key=None if url else entry.get("id"),
            topics=_topics([tag.get("term") for tag in entry.get("tags", [])]),
        )


def parse_html(name: str, text: str) -> Draft:
    """The main content of a web page and its metadata, by trafilatura (menus, ads, comments left out)."""
    import trafilatura  # slow to import: only when a page needs it

    document = trafilatura.bare_extraction(
        text, with_metadata=True, include_comments=False, include_tables=False, include_images=False
    )
    if document is None or not (document.text or "").strip():
        raise InputError("no article text found in the HTML page")
    title = one_line(document.title or "")
    lines = [line for line in document.text.splitlines() if line.strip()]
    if lines and one_line(lines[0]) == title:
        del lines[0]
    return Draft(
        origin=name,
        title=title,
        body="\n\n".join(lines),  # trafilatura puts one paragraph on each line
        published=_lenient_date(document.date),
        source=document.sitename or None,
        url=http_url(document.url),
        topics=_topics((document.categories or []) + (document.tags or [])),
    )


def parse_front_matter(name: str, text: str, *, markdown: bool) -> Draft:
    """Markdown (or text) after a YAML block of fields; the block is read with a safe loader only."""
    try:
        post = frontmatter.loads(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "context_mark", None) or getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""  # the YAML text starts on the --- line
        raise InputError(f"bad YAML front matter{where}: {getattr(exc, 'problem', None) or exc}") from None
    meta = post.metadata
    if not isinstance(meta, dict):
        raise InputError("the front matter must be a mapping of fields (title, published, ...)")
    draft = parse_markdown(name, post.content) if markdown else Draft(name, "", post.content)
    values = {key: meta.get(key) for key in ("title", "source", "url", "language", "id")}
    for key, value in values.items():
        if value is not None and not isinstance(value, str | int):
            raise InputError(f"front matter field '{key}' must be text")
    url = str(values["url"] or "").strip() or None
    if url and not http_url(url):
        raise InputError(f"front matter field 'url' is not an http(s) link: {url!r}")
    return replace(
        draft,
        title=str(values["title"] or draft.title),
        published=parse_date(meta.get("published") or meta.get("date")),
        source=str(values["source"] or "") or None,
        url=url,
        id=_optional_id(values["id"]),
        language=str(values["language"] or "") or None,
        topics=_topics(meta.get("topics") or meta.get("tags")),
    )


def parse_markdown(name: str, text: str) -> Draft:
    """Markdown as plain text; a leading `# Heading` is the title."""
    title = ""
    stripped = text.lstrip()
    if stripped.startswith("# "):
        heading, _, text = stripped.partition("\n")
        title = heading[2:].strip()
    rendered = MarkdownIt("commonmark", {"html": True}).render(text)
    return Draft(origin=name, title=title, body=html_text(rendered))


def parse_scraped_text(name: str, text: str) -> Draft:
    """A web page saved as text: title, publication date and publisher found, site furniture dropped.

    The shape: navigation lines and the date the page was saved, then the title, then a
    byline (`by June 5, 2018 Category`), the paragraphs, and a `Source: Publisher` line.
    A date above the title is the day of saving, never taken for the publication date.
    Text without that furniture is simply paragraphs, its first line a title if it reads as one.
    """
    lines = [one_line(line) for line in text.splitlines()]
    position = 0
    header = min(len(lines), MAX_HEADER_LINES)
    while position < header and (not lines[position] or _is_navigation(lines[position])
                                 or _is_date_line(lines[position])):
        position += 1
    title = ""
    if position < len(lines) and _reads_as_title(lines[position], lines[position + 1:]):
        title = lines[position]
        position += 1
    published: dt.date | None = None
    topics: tuple[str, ...] = ()
    bylines = 0
    while position < len(lines):
        if lines[position] and not _is_navigation(lines[position]):
            bylines += 1
            byline = _byline(lines[position]) if bylines <= MAX_BYLINE_LINES else None
            if byline is None:
                break
            published, topics = published or byline[0], topics or byline[1]
        position += 1
    rest = lines[position:]
    source = None
    for index in range(len(rest) - 1, max(len(rest) - 6, -1), -1):
        match = _SOURCE_LINE.match(rest[index])
        if match:
            source = match["source"].strip()
            del rest[index]
            break
        if rest[index] and not _is_navigation(rest[index]):
            break
    paragraphs: list[str] = []
    current: list[str] = []
    for line in [*rest, ""]:
        if line and not _is_navigation(line):
            current.append(line)
        elif not line and current:
            paragraphs.append(" ".join(current))
            current = []
    return Draft(origin=name, title=title, body="\n\n".join(paragraphs), published=published, source=source,
                 topics=topics)


def _is_navigation(line: str) -> bool:
    return line.casefold().strip(" .:|»›>") in _NAVIGATION


def _is_date_line(line: str) -> bool:
    """A line that is a date and nothing else ("Sunday, September 26th, 2021")."""
    if len(line) > 60 or not any(ch.isdigit() for ch in line):
        return False
    found = find_date(line)
    return found is not None and not re.sub(r"[\W_]+", "", line.replace(found[0], "", 1))


def _reads_as_title(line: str, following: list[str]) -> bool:
    """A heading: short enough, not a finished sentence, with text below it."""
    return len(line) <= TITLE_MAX_CHARS and not line.endswith(".") and any(following)


def _byline(line: str) -> tuple[dt.date | None, tuple[str, ...]] | None:
    """(date, topics) of a byline such as "by June 5, 2018 Fun" or "By Anna Smith"; None if not a byline.

    Strict on purpose: a paragraph that starts "By the end of 2019, ..." must stay in the body.
    """
    if _is_date_line(line):
        return find_date(line)[1], ()  # type: ignore[index]
    match = _BYLINE.match(line)
    if match is None or len(line) > 120:
        return None
    rest = match["rest"]
    found = find_date(rest) if any(ch.isdigit() for ch in rest) else None
    if found is None:
        short_name = len(rest.split()) <= 4 and not _SENTENCE_END.search(rest)
        return (None, ()) if match["lead"].lower() == "by" and short_name and rest[:1].isupper() else None
    words, when = found
    before, _, after = rest.partition(words)
    after = after.strip(" ,;|-–—")
    if before.strip() or _SENTENCE_END.search(after) or len(after.split()) > 3:
        return None
    category = after if match["lead"].lower() == "by" else ""
    return when, _topics(category)


# --- helpers shared by the formats ----------------------------------------------

def _optional_id(value: str | int | None) -> str | None:
    if value is None:
        return None
    return str(value).strip() or None


def _lenient_date(value: Any) -> dt.date | None:
    """A date from page metadata, where a malformed one is merely absent."""
    try:
        return parse_date(value)
    except InputError:
        return None


def _topics(value: Any) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    seen: dict[str, None] = {}
    for item in items:
        if isinstance(item, str) and one_line(item):
            seen.setdefault(one_line(item), None)
    return tuple(seen)


# --- from draft to article --------------------------------------------------------

def make_article(draft: Draft) -> Article:
    """Cleaned, identified, language detected and summarised: a draft ready for the knowledge base."""
    body = tidy_body(clean_text(draft.body))
    if not body:
        raise InputError("empty article: no text")
    language = (draft.language or "").strip().lower() or detect_language(body)
    if not _LANGUAGE_CODE.fullmatch(language):
        raise InputError(f"language must be a code such as 'en' or 'ru', not {draft.language!r}")
    title = one_line(clean_text(draft.title)) or title_from_body(body, language)
    draft = replace(draft, title=title)
    identifier = article_id(draft)
    problem = knowledge.id_problem(identifier)
    if problem:
        raise InputError(problem)
    return Article(
        id=identifier,
        title=title,
        published=draft.published,
        source=one_line(clean_text(draft.source or "")) or None,
        url=draft.url,
        language=language,
        summary=summarise(body, language),
        body=body,
        topics=draft.topics,
    )


def title_from_body(body: str, language: str, limit: int = 100) -> str:
    """For inputs without a title: the first sentence, shortened at a word."""
    first = split_sentences(body[: limit * 20], language)[0]  # the splitter is not linear: give it only the start
    if len(first) <= limit:
        return first
    return first[:limit].rsplit(" ", 1)[0].rstrip(",;:") + "…"


def slug(text: str, limit: int = 48) -> str:
    """Lower-case words joined by hyphens, cut at a word; letters of any script are kept."""
    out = ""
    for word in re.findall(r"[^\W_]+", text.lower()):
        if out and len(out) + 1 + len(word) > limit:
            break
        out = f"{out}-{word}" if out else word[:limit]
    return out


def article_id(draft: Draft) -> str:
    """The given id; else readable words plus a hash of what identifies the article (url, feed guid, title and date).

    The same input always gets the same id, so a rebuild updates in place instead of duplicating.
    """
    if draft.id:
        return draft.id
    if draft.url:
        key = draft.url
        path_words = [part for part in urlsplit(draft.url).path.split("/") if slug(part)]
        readable = slug(path_words[-1] if path_words else urlsplit(draft.url).netloc)
    else:
        key = draft.key or f"{draft.title}\n{draft.published or ''}"
        readable = slug(f"{draft.published or ''} {draft.title}")
    digest = hashlib.sha1(key.encode("utf-8")).hexdigest()[:8]
    return f"{readable}-{digest}" if readable else digest


def merge(old: Article, new: Article, *, resummarise: bool = False) -> Article:
    """The rebuilt article, keeping what an editor added that the input does not know.

    A summary counts as hand-edited when it differs from what the summariser makes of
    the stored body; it is kept unless `resummarise`. Dates, publisher, link and topics
    the input lacks keep the editor's values.
    """
    summary = new.summary
    if not resummarise and old.summary != new.summary and old.summary != summarise(old.body, old.language):
        summary = old.summary
    return replace(
        new,
        summary=summary,
        published=new.published or old.published,
        source=new.source or old.source,
        url=new.url or old.url,
        topics=new.topics or old.topics,
    )


# --- inputs -------------------------------------------------------------------------

def expand_sources(sources: Sequence[str], skip: Path | None = None) -> Iterator[str | Path | Failure]:
    """Files in the order given, folders walked recursively (hidden entries and `skip` left out), "-" for stdin."""
    seen: set[Path] = set()
    skip = skip.resolve() if skip is not None else None
    for source in sources:
        if source == STDIN:
            yield STDIN
            continue
        path = Path(source)
        if path.is_dir():
            files: Iterable[Path] = _walk(path)
        elif path.is_file():
            files = [path]
        elif path.exists():
            yield Failure(source, "not a regular file")
            continue
        else:
            yield Failure(source, "no such file or folder")
            continue
        for file in files:
            resolved = file.resolve()
            if resolved not in seen and not (skip and resolved.is_relative_to(skip)):
                seen.add(resolved)
                yield file


def _walk(folder: Path) -> Iterator[Path]:
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                yield Path(root) / name


def read_input(path: Path) -> bytes:
    """The bytes of one input, refusing runaway sizes before reading them."""
    try:
        size = path.stat().st_size
        if size > MAX_INPUT_BYTES:
            raise InputError(f"file is {size / 1048576:.1f} MB, over the {MAX_INPUT_BYTES // 1048576} MB limit")
        with path.open("rb") as handle:
            return _bounded(handle)
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}") from None


def _bounded(handle: BinaryIO) -> bytes:
    data = handle.read(MAX_INPUT_BYTES + 1)
    if len(data) > MAX_INPUT_BYTES:
        raise InputError(f"input is over the {MAX_INPUT_BYTES // 1048576} MB limit")
    return data


def read_drafts(
    sources: Sequence[str], *, stdin: BinaryIO | None = None, skip: Path | None = None, progress: bool = False
) -> Iterator[Draft | Failure]:
    """Every draft of every input, or the reason an input (or one record of it) failed."""
    inputs = list(expand_sources(sources, skip))
    for item in _progress(inputs, progress, "reading", "file"):
        if isinstance(item, Failure):
            yield item
            continue
        name = "<stdin>" if item == STDIN else str(item)
        try:
            data = _bounded(stdin or sys.stdin.buffer) if item == STDIN else read_input(Path(item))
        except InputError as exc:
            yield Failure(name, str(exc))
            continue
        suffix = "" if item == STDIN else Path(item).suffix.lower()
        yield from parse(name, data, suffix)


def _progress(items: list[Any], enabled: bool, description: str, unit: str) -> Iterable[Any]:
    """A progress bar on stderr for long runs in a terminal; silent in pipes and tests."""
    show = enabled and len(items) >= PROGRESS_MIN_ITEMS
    return tqdm(items, desc=description, unit=unit, disable=None if show else True, file=sys.stderr)


# --- the build ------------------------------------------------------------------------

def build(
    sources: Sequence[str],
    knowledge_dir: Path,
    *,
    resummarise: bool = False,
    stdin: BinaryIO | None = None,
    progress: bool = False,
) -> BuildReport:
    """Ingest `sources` into the knowledge base: add new articles, update changed ones, never remove any."""
    started = time.perf_counter()
    report = BuildReport()
    drafts: list[Draft] = []
    for item in read_drafts(sources, stdin=stdin, skip=knowledge_dir, progress=progress):
        if isinstance(item, Failure):
            report.failed.append(item)
        else:
            drafts.append(item)
    build_drafts(drafts, ArticleFiles.scan(knowledge_dir), resummarise=resummarise, progress=progress, report=report)
    report.seconds = time.perf_counter() - started
    return report


class ArticleFiles:
    """The knowledge base's article files by id, found by one scan and kept up to date by the builder.

    `reread` makes each lookup read the article's file again, for a long-lived instance (the poller) that must
    see an editor's changes made since its scan; a one-off build trusts its scan.
    """

    def __init__(self, knowledge_dir: Path, by_id: dict[str, tuple[Path, Article]], broken: set[Path],
                 *, reread: bool = False) -> None:
        self.knowledge_dir = knowledge_dir
        self.by_id = by_id
        self.broken = broken
        self.reread = reread

    @classmethod
    def scan(cls, knowledge_dir: Path, *, reread: bool = False) -> ArticleFiles:
        by_id: dict[str, tuple[Path, Article]] = {}
        broken: set[Path] = set()
        for path in knowledge.article_paths(knowledge_dir):
            article = knowledge.read_article(path, [])
            if article is None:
                broken.add(path)
            else:
                by_id.setdefault(article.id, (path, article))
        return cls(knowledge_dir, by_id, broken, reread=reread)

    def lookup(self, article_id: str) -> tuple[Path, Article | None]:
        """Where the article with this id is (or would be) stored, and what is stored there now."""
        known = self.by_id.get(article_id)
        path = known[0] if known else knowledge.article_path(self.knowledge_dir, article_id)
        if not self.reread:
            return path, known[1] if known else None
        self.by_id.pop(article_id, None)
        if not path.exists():
            return path, None
        article = knowledge.read_article(path, [])
        if article is None:
            self.broken.add(path)
            return path, None
        self.broken.discard(path)
        if article.id != article_id:
            return path, None
        self.by_id[article_id] = (path, article)
        return path, article

    def exists(self, article_id: str) -> bool:
        return self.lookup(article_id)[1] is not None


def build_drafts(
    drafts: Sequence[Draft],
    files: ArticleFiles,
    *,
    resummarise: bool = False,
    progress: bool = False,
    report: BuildReport | None = None,
) -> BuildReport:
    """Merge drafts (from inputs, or fetched by the poller) into the knowledge base; `report` says what happened.

    Each article file is written atomically (temporary file, then rename), so an
    interrupted build leaves every file old or new. A file already in the knowledge base that does not validate is
    never overwritten: the editor's text in it would be lost.
    """
    report = report if report is not None else BuildReport()
    taken: dict[str, str] = {}  # id -> origin, within this build
    written = False
    for draft in _progress(list(drafts), progress, "building", "article"):
        try:
            article = make_article(draft)
        except Exception as exc:  # one bad article must never stop the build
            report.failed.append(Failure(draft.origin, failure_reason(exc)))
            continue
        if article.id in taken:
            report.failed.append(Failure(draft.origin, f"duplicate id '{article.id}' (also {taken[article.id]})"))
            continue
        taken[article.id] = draft.origin
        path, old = files.lookup(article.id)
        if old is None and path in files.broken:
            reason = f"not written: {path} has problems; fix it first (python -m bot check)"
            report.failed.append(Failure(draft.origin, reason))
            continue
        if old is None and path.exists():
            reason = f"not written: id '{article.id}' maps to {path}, which holds another article"
            report.failed.append(Failure(draft.origin, reason))
            continue
        if old is not None:
            article = merge(old, article, resummarise=resummarise)
            if article == old:
                report.unchanged.append(article.id)
                continue
        text = knowledge.dump_yaml(article.to_yaml_dict())
        size = len(text.encode("utf-8"))
        if size > knowledge.MAX_FILE_BYTES:  # the knowledge base would refuse to load it
            reason = (f"not written: the article is {size / 1048576:.1f} MB, over the "
                      f"{knowledge.MAX_FILE_BYTES // 1048576} MB limit of one knowledge-base file; split it")
            report.failed.append(Failure(draft.origin, reason))
            continue
        try:
            knowledge.write_atomic(path, text, fsync=False)
        except OSError as exc:  # e.g. a full disk: this article fails, the file on disk is still the old one
            report.failed.append(Failure(draft.origin, f"not written: {path}: {exc.strerror or exc}"))
            continue
        files.by_id[article.id] = (path, article)
        (report.updated if old is not None else report.added).append(article.id)
        written = True
    if written:
        os.sync()  # one flush for the whole build instead of an fsync per file
    return report
