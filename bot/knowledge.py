"""The knowledge base: its model, and reading, validating and writing it as YAML.

One human-editable YAML file per article under ``articles/``, plus an optional
``faq.yaml`` of curated answers. Reading uses safe-load semantics only (the C
loader where it exists); every problem is reported as ``file:line: message``
so that an editor can jump straight to it.
"""

from __future__ import annotations

import datetime as dt
import html
import ipaddress
import os
import reprlib
import socket
import stat
import tempfile
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

SafeLoader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
SafeDumper: type = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

ARTICLES_DIR = "articles"
FAQ_FILE = "faq.yaml"
MAX_FILE_BYTES = 5 * 1024 * 1024  # a hand-edited article is never this big; a runaway file is refused


MAX_URL = 1000  # characters once HTML-escaped, so that a link always fits in a message beside its text


def http_url(value: object) -> str | None:
    """An absolute http(s) link that reads as what it opens, or None.

    Refused: relative, made-up or hostile (javascript:, tg:) links; user info (`https://good@evil/`); and any
    invisible, bidi or control character, which can make a link read as something else (U+202E reverses it).
    """
    if not isinstance(value, str):
        return None
    value = value.strip()
    if not value or "\\" in value or len(html.escape(value)) > MAX_URL or any(map(_misleading, value)):
        return None
    try:
        parts = urlsplit(value)
        host = parts.hostname
        _ = parts.port  # a port that is not a number
    except ValueError:  # e.g. an unclosed [ in the host
        return None
    if parts.scheme.lower() not in ("http", "https") or not host or "@" in parts.netloc:
        return None
    return value


def web_url(value: object) -> str | None:
    """A link a reader may be sent to (a button, a card): an http_url on a public host, or None."""
    url = http_url(value)
    return url if url is not None and public_host(urlsplit(url).hostname or "") else None


def _misleading(char: str) -> bool:
    return char.isspace() or unicodedata.category(char) in ("Cc", "Cf", "Co", "Cs", "Zl", "Zp", "Zs")


_LOCAL_SUFFIXES = ("localhost", "local", "internal", "lan", "home.arpa")


def public_host(host: str) -> bool:
    """A host name on the public internet: neither loopback, private nor link-local, nor a local-only name."""
    host = host.lower().rstrip(".")
    address = ip_literal(host)
    if address is not None:
        return public_address(address)
    return "." in host and not any(host == s or host.endswith("." + s) for s in _LOCAL_SUFFIXES)


def ip_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a host name spells, in any form a browser reads (`127.1`, `2130706433`, `0x7f.0.0.1`)."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except (OSError, UnicodeError, ValueError):
        return None


def public_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Globally routable: loopback, private, link-local, shared, reserved and unspecified addresses are not."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


@dataclass(frozen=True, slots=True)
class Article:
    id: str
    title: str
    published: dt.date | None
    source: str | None
    url: str | None
    language: str
    summary: str
    body: str
    topics: tuple[str, ...] = ()

    def to_yaml_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["topics"] = list(self.topics)
        if not self.topics:
            del data["topics"]
        return data


@dataclass(frozen=True, slots=True)
class FaqEntry:
    id: str
    questions: tuple[str, ...]
    answer: str
    links: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Problem:
    path: Path
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


class KnowledgeError(Exception):
    """The knowledge base cannot be used as it is; `problems` says every reason."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(map(str, problems)))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class KnowledgeBase:
    articles: dict[str, Article] = field(default_factory=dict)
    faq: tuple[FaqEntry, ...] = ()

    def latest(self, n: int) -> list[Article]:
        """Newest first; undated articles last, so a missing date never hides news."""
        return sorted(self.articles.values(), key=newest_key, reverse=True)[:n]


def newest_key(article: Article) -> tuple[bool, dt.date, str]:
    """The order of `KnowledgeBase.latest`, reversed: unique to each article, since it ends with the id."""
    return article.published is not None, article.published or dt.date.min, article.id


# --- reading -----------------------------------------------------------------

def parse_yaml(path: Path, problems: list[Problem]) -> tuple[Any, yaml.Node | None]:
    """Parse one YAML file into (data, node); the node keeps line numbers for messages."""
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            problems.append(Problem(path, 1, f"file is larger than {MAX_FILE_BYTES // 1024 // 1024} MB"))
            return None, None
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        problems.append(Problem(path, 1, f"not UTF-8 text ({exc.reason} at byte {exc.start})"))
        return None, None
    except OSError as exc:
        problems.append(Problem(path, 1, f"cannot read: {exc.strerror or exc}"))
        return None, None
    loader = SafeLoader(text)
    try:
        node = loader.get_single_node()
        return (loader.construct_document(node) if node is not None else None), node
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark is not None else 1
        reason = getattr(exc, "problem", None) or str(exc)
        problems.append(Problem(path, line, f"bad YAML: {reason}"))
        return None, None
    except (ValueError, TypeError) as exc:  # e.g. a date like 2018-13-45, or a list used as a key
        problems.append(Problem(path, 1, f"bad value: {exc}"))
        return None, None
    finally:
        loader.dispose()


def key_lines(node: yaml.Node | None) -> dict[str, int]:
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {str(k.value): v.start_mark.line + 1 for k, v in node.value}


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _date(value: Any) -> dt.date | None:
    """A YAML date, or an ISO date string; raise ValueError on anything else."""
    if value is None or (isinstance(value, dt.date) and not isinstance(value, dt.datetime)):
        return value
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, str):
        return dt.date.fromisoformat(value.strip()[:10])
    raise ValueError(value)


_SHORT_REPR = reprlib.Repr()
_SHORT_REPR.maxlevel, _SHORT_REPR.maxlist, _SHORT_REPR.maxdict = 2, 4, 4
_SHORT_REPR.maxstring = _SHORT_REPR.maxother = 80


def short_repr(value: Any) -> str:
    """A value for a problem message, bounded: YAML aliases can nest a few lines into billions of items."""
    return _SHORT_REPR.repr(value)


def strings(value: Any) -> tuple[str, ...] | None:
    """A list of non-empty strings (a single string is accepted as a list of one)."""
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list) and all(_text(v) for v in value):
        return tuple(v.strip() for v in value)
    return None


def article_from_dict(data: Any, path: Path, node: yaml.Node | None, problems: list[Problem]) -> Article | None:
    lines = key_lines(node)
    start = node.start_mark.line + 1 if node is not None else 1

    def bad(key: str, message: str) -> None:
        problems.append(Problem(path, lines.get(key, start), message))

    if not isinstance(data, dict):
        bad("", "an article must be a mapping of fields (id, title, body, ...)")
        return None
    before = len(problems)
    for key in ("id", "title", "body", "summary"):
        if key not in data:
            bad(key, f"missing field '{key}'")
        elif not _text(data[key]) and not (key == "id" and isinstance(data[key], int)):
            bad(key, f"field '{key}' must be non-empty text")
    for key in ("source", "url"):
        if data.get(key) is not None and not isinstance(data[key], str):
            bad(key, f"field '{key}' must be text or null")
    if "language" in data and not _text(data["language"]):
        bad("language", "field 'language' must be a language code such as 'en'")
    try:
        published = _date(data.get("published"))
    except ValueError:
        value = short_repr(data.get("published"))
        bad("published", f"field 'published' is not a date: {value} (use YYYY-MM-DD or null)")
        published = None
    topics = strings(data.get("topics", []) or [])
    if topics is None:
        bad("topics", "field 'topics' must be a list of words")
    unknown = set(data) - {"id", "title", "published", "source", "url", "language", "summary", "body", "topics"}
    for key in sorted(unknown, key=str):
        bad(str(key), f"unknown field '{key}'")
    if len(problems) > before:
        return None
    return Article(
        id=str(data["id"]).strip(),
        title=data["title"].strip(),
        published=published,
        source=(data.get("source") or "").strip() or None,
        url=(data.get("url") or "").strip() or None,
        language=(data.get("language") or "en").strip(),
        summary=data["summary"].strip(),
        body=data["body"].strip(),
        topics=topics or (),
    )


def _faq_from_data(data: Any, path: Path, node: yaml.Node | None, problems: list[Problem]) -> list[FaqEntry]:
    if data is None:
        return []
    if not isinstance(data, list) or not isinstance(node, yaml.SequenceNode):
        problems.append(Problem(path, 1, "faq.yaml must be a list of entries (questions, answer, links)"))
        return []
    entries = []
    for index, (item, item_node) in enumerate(zip(data, node.value, strict=True)):
        lines = key_lines(item_node)
        start = item_node.start_mark.line + 1
        if not isinstance(item, dict):
            problems.append(Problem(path, start, "an FAQ entry must be a mapping"))
            continue
        questions = strings(item.get("questions"))
        links = strings(item.get("links", []) or [])
        ok = True
        if not questions:
            message = "'questions' must be a non-empty list of phrasings"
            problems.append(Problem(path, lines.get("questions", start), message))
            ok = False
        if not _text(item.get("answer")):
            problems.append(Problem(path, lines.get("answer", start), "'answer' must be non-empty text"))
            ok = False
        if links is None:
            problems.append(Problem(path, lines.get("links", start), "'links' must be a list of URLs"))
            ok = False
        entry_id = item.get("id", f"faq-{index + 1}")
        if isinstance(entry_id, list | dict):
            problems.append(Problem(path, lines.get("id", start), f"'id' must be text, not {short_repr(entry_id)}"))
            ok = False
        if ok:
            entry_id = str(entry_id)
            entries.append(FaqEntry(entry_id, questions or (), item["answer"].strip(), links or ()))
    return entries


Stamp = tuple[int, int]   # (st_mtime_ns, st_size) of an article file; (-1, -1) when it cannot be read


def article_paths(knowledge_dir: Path) -> list[Path]:
    """Every article file, in path order: what `(knowledge_dir / ARTICLES_DIR).rglob("*.yaml")` finds, sorted."""
    found: list[str] = []
    _walk(str(knowledge_dir / ARTICLES_DIR), found)
    return [Path(path) for path in sorted(found, key=path_order)]


def article_files(knowledge_dir: Path, known: Mapping[str, tuple[Stamp, object]]) -> tuple[list[str], dict[str, Stamp]]:
    """Every article file (as `article_paths` finds them, as strings, in no particular order), and the stamps
    of those `known` does not hold with the same stamp: the files a reload must read.

    One `os.scandir` walk, each file stat-ed by its name in its directory, plain strings, and nothing
    kept of an unchanged file but its path: sorting and stat-ing a `Path` per file costs many times more.
    """
    found: list[str] = []
    changed: dict[str, Stamp] = {}
    _walk(str(knowledge_dir / ARTICLES_DIR), found, (known, changed))
    return found, changed


def path_order(path: str) -> str:
    """The sort key of a path as a string that puts paths in the order of `Path`s (component by component)."""
    return path.replace(os.sep, "\0")   # no name holds NUL: it sorts as the separator does between components


def _walk(directory: str, found: list[str],
          stamps: tuple[Mapping[str, tuple[Stamp, object]], dict[str, Stamp]] | None = None) -> None:
    """As `Path.rglob("*.yaml")` walks: every name ending in .yaml, into real subdirectories (not symlinks).
    With `stamps`, (known, changed): each file is stat-ed, and put in changed unless known with its stamp."""
    try:
        with os.scandir(directory) as scanned:
            entries = list(scanned)
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY) if stamps is not None else -1
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return
    try:
        for entry in entries:
            path = entry.path
            if entry.name.endswith(".yaml"):
                found.append(path)
                if stamps is not None:
                    try:
                        info = os.stat(entry.name, dir_fd=fd)
                    except OSError:
                        stamps[1][path] = (-1, -1)
                    else:
                        stamp = (info.st_mtime_ns, info.st_size)
                        if (cached := stamps[0].get(path)) is None or cached[0] != stamp:
                            stamps[1][path] = stamp
                        if not stat.S_ISDIR(info.st_mode):   # then it is no directory to walk into
                            continue
            try:
                subdirectory = entry.is_dir(follow_symlinks=False)
            except OSError:
                subdirectory = False
            if subdirectory:
                _walk(path, found, stamps)
    finally:
        if fd >= 0:
            os.close(fd)


def read_article(path: Path, problems: list[Problem]) -> Article | None:
    data, node = parse_yaml(path, problems)
    if node is None and data is None and problems and problems[-1].path == path:
        return None
    return article_from_dict(data, path, node, problems)


def scan(
    knowledge_dir: Path, articles: Iterable[tuple[Path, Article | None]] | None = None
) -> tuple[KnowledgeBase, list[Problem]]:
    """Read everything and collect every problem rather than stopping at the first.

    `articles` lets a caller supply already-parsed articles (a cache keyed on
    unchanged files); by default each file is read here.
    """
    problems: list[Problem] = []
    if not knowledge_dir.is_dir():
        return KnowledgeBase(), [Problem(knowledge_dir, 1, "knowledge directory does not exist")]
    if articles is None:
        articles = ((p, read_article(p, problems)) for p in article_paths(knowledge_dir))
    by_id: dict[str, Article] = {}
    first_seen: dict[str, Path] = {}
    for path, article in articles:
        if article is None:
            continue
        if article.id in by_id:
            problems.append(Problem(path, 1, f"duplicate id '{article.id}' (also in {first_seen[article.id]})"))
            continue
        by_id[article.id] = article
        first_seen[article.id] = path
    return KnowledgeBase(by_id, read_faq(knowledge_dir, problems)), problems


def read_faq(knowledge_dir: Path, problems: list[Problem]) -> tuple[FaqEntry, ...]:
    faq_path = knowledge_dir / FAQ_FILE
    if not faq_path.exists():
        return ()
    data, node = parse_yaml(faq_path, problems)
    return tuple(_faq_from_data(data, faq_path, node, problems))


def load(knowledge_dir: Path) -> KnowledgeBase:
    """The whole knowledge base, or KnowledgeError listing every problem: never half of it."""
    kb, problems = scan(knowledge_dir)
    if problems:
        raise KnowledgeError(problems)
    return kb


@dataclass(frozen=True, slots=True)
class Changes:
    added: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.updated or self.removed)


def diff(old: KnowledgeBase, new: KnowledgeBase,
         touched: tuple[Sequence[str], Sequence[str]] | None = None) -> Changes:
    """What a reload changes, by article id (an edited article counts as updated), each in the order of its
    knowledge base.

    `touched`, when the caller knows (a reload that read only the files that changed): the only ids of `new`
    and of `old` that may differ, each in the order of their files, which the changes then follow, so that
    the cost is theirs. Otherwise an article read from an unchanged file is the same object, quick to compare.
    """
    before, after = old.articles, new.articles
    if before is after:
        return Changes()
    if touched is not None:
        now, then = touched
        return Changes(
            added=tuple(i for i in now if i not in before),
            updated=tuple(i for i in now if i in before and before[i] is not after[i] and before[i] != after[i]),
            removed=tuple(i for i in then if i not in after),
        )
    new_ids, gone_ids = after.keys() - before.keys(), before.keys() - after.keys()
    return Changes(
        added=tuple(i for i in after if i in new_ids) if new_ids else (),
        updated=tuple(i for i, a in after.items() if (b := before.get(i, a)) is not a and b != a),
        removed=tuple(i for i in before if i in gone_ids) if gone_ids else (),
    )


# --- writing -----------------------------------------------------------------

class _BlockDumper(SafeDumper):  # type: ignore[misc, valid-type]
    """Multi-line text as literal blocks, so bodies stay readable and diffable."""


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _str_representer)


def dump_yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=_BlockDumper, allow_unicode=True, sort_keys=False, width=100)


_UMASK = os.umask(0o022)   # reading the umask means setting it: once, at import, before any thread starts
os.umask(_UMASK)


def write_atomic(path: Path, text: str, *, fsync: bool = True) -> None:
    """Write via a temporary file and rename, so a crash leaves the old file or the new, never half.

    The rename alone survives a killed process; `fsync` also survives a power cut. A caller
    writing thousands of files may pass False and sync once at the end (fsync costs ms each).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = stat.S_IMODE(path.stat().st_mode)   # an editor's chmod is kept
    except FileNotFoundError:
        mode = 0o666 & ~_UMASK   # as open() would make it, not mkstemp's 0o600: the bot may run as another user
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def article_path(knowledge_dir: Path, article_id: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in article_id).strip(".") or "article"
    return knowledge_dir / ARTICLES_DIR / f"{safe}.yaml"


# A file name is at most 255 bytes on common file systems; the temporary file beside it adds 14, ".yaml" 5.
MAX_ID_BYTES = 200


def id_problem(article_id: str) -> str | None:
    """Why an id cannot name an article file, or None: a longer one would fail at the write, not here."""
    size = len(article_path(Path(), article_id).stem.encode("utf-8"))
    if size > MAX_ID_BYTES:
        return f"id is {size} bytes long, over the {MAX_ID_BYTES}-byte limit of a file name"
    return None


def write_article(knowledge_dir: Path, article: Article) -> Path:
    path = article_path(knowledge_dir, article.id)
    write_atomic(path, dump_yaml(article.to_yaml_dict()))
    return path
