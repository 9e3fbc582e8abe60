"""The sources the bot follows: ``KNOWLEDGE_DIR/sources.yaml``, a list of feeds and pages with their schedules.

Read with the knowledge base's safe YAML reading, so every problem is a ``file:line: message`` like any other
file's. Only the shape is checked here; whether a host may be fetched is the fetcher's decision.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bot.knowledge import Problem, http_url, key_lines, parse_yaml, short_repr, strings

SOURCES_FILE = "sources.yaml"
DEFAULT_EVERY = 15 * 60.0
FIELDS = frozenset({"url", "name", "every", "language", "topics"})

_DURATION = re.compile(r"(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>[smhd]?)")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_LANGUAGE_CODE = re.compile(r"[a-z]{2,3}")


@dataclass(frozen=True, slots=True)
class Source:
    url: str
    name: str | None = None
    every: float = DEFAULT_EVERY  # seconds between polls
    language: str | None = None  # given to every article, instead of detecting it
    topics: tuple[str, ...] = ()  # added to every article's own

    @property
    def label(self) -> str:
        return self.name or self.url


def parse_duration(value: object) -> float | None:
    """Seconds in `30s`, `15m`, `2h`, `1d` or a plain number of seconds; None when it is none of these."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.fullmatch(value.strip().lower())):
        seconds = float(match["number"]) * _UNIT_SECONDS[match["unit"]]
    else:
        return None
    return seconds if seconds > 0 else None


def source_from_dict(data: Any, path: Path, node: yaml.Node, problems: list[Problem]) -> Source | None:
    lines = key_lines(node)
    start = node.start_mark.line + 1

    def bad(key: str, message: str) -> None:
        problems.append(Problem(path, lines.get(key, start), message))

    if isinstance(data, str):  # a bare URL is a source with every default
        data = {"url": data}
    if not isinstance(data, dict):
        bad("", "a source must be a mapping of fields (url, name, every, language, topics) or a URL")
        return None
    before = len(problems)
    url = http_url(data.get("url"))
    if "url" not in data:
        bad("url", "missing field 'url'")
    elif url is None:
        bad("url", f"field 'url' must be an http(s) link, not {short_repr(data['url'])}")
    name = data.get("name")
    if name is not None and not (isinstance(name, str) and name.strip()):
        bad("name", "field 'name' must be non-empty text")
    every = parse_duration(data.get("every", DEFAULT_EVERY))
    if every is None:
        bad("every", f"field 'every' must be a duration such as 30s, 15m or 2h, not {short_repr(data['every'])}")
    language = data.get("language")
    if language is not None and not (isinstance(language, str) and _LANGUAGE_CODE.fullmatch(language.strip())):
        bad("language", f"field 'language' must be a code such as 'en' or 'ru', not {short_repr(language)}")
    topics = strings(data.get("topics", []) or [])
    if topics is None:
        bad("topics", "field 'topics' must be a list of words")
    for key in sorted(set(data) - FIELDS, key=str):
        bad(str(key), f"unknown field '{key}'")
    if len(problems) > before or url is None or every is None:
        return None
    return Source(url=url, name=name.strip() if name else None, every=every,
                  language=language.strip() if language else None, topics=topics or ())


def read_sources(knowledge_dir: Path) -> tuple[list[Source], list[Problem]]:
    """Every valid source in file order, and every problem; no file means no sources."""
    path = knowledge_dir / SOURCES_FILE
    problems: list[Problem] = []
    if not path.exists():
        return [], problems
    data, node = parse_yaml(path, problems)
    if data is None:
        return [], problems
    if not isinstance(data, list) or not isinstance(node, yaml.SequenceNode):
        problems.append(Problem(path, 1, "sources.yaml must be a list of sources, each with a 'url'"))
        return [], problems
    sources: list[Source] = []
    first_line: dict[str, int] = {}
    for item, item_node in zip(data, node.value, strict=True):
        source = source_from_dict(item, path, item_node, problems)
        if source is None:
            continue
        line = item_node.start_mark.line + 1
        if source.url in first_line:
            problems.append(Problem(path, line, f"duplicate source {source.url} (also line {first_line[source.url]})"))
            continue
        first_line[source.url] = line
        sources.append(source)
    return sources, problems
