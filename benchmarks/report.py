"""What every benchmark section hands back, and how it is printed: figure, baseline, ratio, goal.

A figure is never printed without the baseline measured beside it in the same
run, so that the noise of a shared 2-core machine shows in both and cancels in
the ratio.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, slots=True)
class Figure:
    measure: str  # what was measured, with the workload: "answer latency p95, 10k articles"
    ours: str  # our figure, formatted with its unit
    baseline: str  # what we compare with and its figure: "fuzzy scan 70.2 ms"
    ratio: str  # "107x faster", "94% of", "+0.012"
    goal: str = ""  # the goal, when it sets one
    met: bool | None = None  # None: no goal, or not measurable in this run


@dataclass(slots=True)
class Section:
    name: str
    title: str
    figures: list[Figure] = field(default_factory=list)
    details: list[str] = field(default_factory=list)  # further Markdown: detail tables, profiles
    notes: list[str] = field(default_factory=list)
    skipped: str | None = None  # why the section measured nothing (e.g. its data is absent)
    error: str | None = None  # the section failed; the rest of the benchmark still ran
    seconds: float = 0.0


def verdict(met: bool | None) -> str:
    return {True: "yes", False: "**NO**", None: "-"}[met]


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell).replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


FIGURE_HEADERS = ("measure", "ours", "baseline (same run)", "ratio", "goal", "met")


def figures_table(figures: Sequence[Figure]) -> str:
    return table(FIGURE_HEADERS, [(f.measure, f.ours, f.baseline, f.ratio, f.goal, verdict(f.met)) for f in figures])


def render(section: Section) -> str:
    """The section as Markdown: title, its figures table, then details and notes."""
    parts = [f"## {section.title}"]
    if section.skipped:
        parts.append(f"**Skipped:** {section.skipped}")
    if section.error:
        parts.append(f"**Not measured, the section failed:** {section.error}")
    if section.figures:
        parts.append(figures_table(section.figures))
    parts.extend(section.details)
    if section.notes:
        parts.append("\n".join(f"- {note}" for note in section.notes))
    parts.append(f"_Section time: {section.seconds:.0f} s._")
    return "\n\n".join(parts)


def faster(baseline: float, ours: float) -> str:
    """How many times less time ours takes."""
    if ours <= 0:
        return "-"
    ratio = baseline / ours
    if ratio >= 10:
        return f"{ratio:,.0f}x faster"
    return f"{ratio:.2f}x faster" if ratio >= 1 else f"{1 / ratio:.2f}x slower"


def share(ours: float, baseline: float) -> str:
    """Ours as a percentage of the baseline."""
    return f"{ours / baseline:.0%} of baseline" if baseline else "-"


def difference(ours: float, baseline: float, digits: int = 3) -> str:
    return f"{ours - baseline:+.{digits}f}"


def ms(seconds: float) -> str:
    value = seconds * 1000
    return f"{value:.2f} ms" if value < 10 else f"{value:.1f} ms" if value < 100 else f"{value:,.0f} ms"


def percentile(samples: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(samples), q)) if samples else 0.0


def median(samples: Sequence[float]) -> float:
    return statistics.median(samples) if samples else 0.0


def size_label(size: int) -> str:
    return f"{size // 1000}k" if size >= 1000 and size % 1000 == 0 else str(size)
