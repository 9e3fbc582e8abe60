"""Every function that runs regular expressions (or a parser) over untrusted article text is linear in its input.

Catastrophic backtracking shows as a cost per character that grows with the input. Each function is timed on a
hostile input at a small size (the linear baseline) and at twenty times that size, in the same test; a linear
function costs about the same per character at both, a quadratic one twenty times more. The bound is generous so
that a busy machine cannot fail it, and still far below what super-linear matching does at this size.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot import ingest
from bot.summarise import is_boilerplate, summarise
from bot.text import split_sentences

SMALL, LARGE = 2000, 40000
BOUND = 4.0  # per-character cost at LARGE over SMALL; a quadratic one about 20

# Units that made some pattern backtrack: e-mail-like tokens, lost Roman numerals, Source: lines, blank lines.
WORST_UNITS = ("a@", "a@a.", "@.", "I?", "I??", "V?? ", "?? ", "source: ", "source:  x", "\n \t", "\n\n ", "by ",
               "by 1 ", "12 ", "a", " ", ".", "a.", "Mr. ", "«", "http://")
HOSTILE_ALPHABET = "a1I?@.:/ \n\t-«»"


def _lenient_date(text: str) -> None:
    with contextlib.suppress(ingest.InputError):
        ingest.parse_date(text)


FUNCTIONS: dict[str, Callable[[str], object]] = {
    "summarise.is_boilerplate": is_boilerplate,
    "summarise.summarise": lambda text: summarise(text, "en"),
    "ingest.clean_text": ingest.clean_text,
    "ingest.tidy_body": ingest.tidy_body,
    "ingest.html_text": ingest.html_text,
    "ingest.parse_scraped_text": lambda text: ingest.parse_scraped_text("page.txt", text),
    "ingest.parse_date": _lenient_date,
    "text.split_sentences": split_sentences,
}


def _per_char(func: Callable[[str], object], text: str) -> float:
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        func(text)
        best = min(best, time.perf_counter() - started)
    return best / len(text)


def _repeat(unit: str, size: int) -> str:
    """The unit repeated inside a sentence, so that checks which skip short or odd sentences still run."""
    return "Please write to " + (unit * (size // len(unit) + 1))[:size] + " and we answer."


def assert_linear(name: str, unit: str) -> None:
    func = FUNCTIONS[name]
    for _attempt in range(3):  # measured again when other work on the machine disturbed a measurement
        baseline = _per_char(func, _repeat(unit, SMALL))
        large = _per_char(func, _repeat(unit, LARGE))
        if large <= BOUND * baseline:
            return
    raise AssertionError(f"{name} on {unit!r} * n costs {large / baseline:.1f} times more per character at "
                         f"{LARGE} than at {SMALL} characters: not linear")


KNOWN = [(name, unit) for name in FUNCTIONS for unit in WORST_UNITS]


@pytest.mark.parametrize(("name", "unit"), KNOWN)
def test_known_worst_inputs_cost_linear_time(name: str, unit: str) -> None:
    assert_linear(name, unit)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(unit=st.text(alphabet=HOSTILE_ALPHABET, min_size=1, max_size=6),
       name=st.sampled_from([name for name in FUNCTIONS if name != "text.split_sentences"]))
def test_fuzzed_repetitive_inputs_cost_linear_time(unit: str, name: str) -> None:
    assert_linear(name, unit)
