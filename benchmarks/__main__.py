"""The performance benchmark (issue 5): every section, one Markdown table each, written to RESULTS.md.

    python -m benchmarks [--quick] [--shared ../shared] [--only NAME ...] [--output FILE]

Sections: latency (item 1), throughput (2), startup (3 and 4: start-up, reload,
memory), broadcast (5), build (6), store (issue 12: PostgreSQL beside SQLite),
sources (issue 11: 200 feeds polled beside answering), replicas (issue 12: a broadcast shared by 2 and 3 replica
processes, and one killed every 10 s), and
the quality sections summaries and retrieval. Each figure is printed beside its baseline measured in the same run,
the ratio between them, and the issue's goal. A section that is missing or
fails is reported as such and the others still run. The machine (cores, Python,
library versions, load) is recorded at the top.

A full run (no --quick, no --only) writes benchmarks/RESULTS.md; other runs
write only where --output says.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib
import logging
import os
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import bm25s

from benchmarks import workloads
from benchmarks.report import Section, figures_table, render, table

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
LIBRARIES = ("python-telegram-bot", "httpx", "aiolimiter", "rapidfuzz", "bm25s", "numpy", "scipy", "PyStemmer",
             "wordllama", "tokenizers", "PyYAML", "sentencex", "aiohttp", "rouge-score")


# --- the machine -----------------------------------------------------------------

def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _git() -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=HERE, capture_output=True, text=True,
                               check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{commit}{' with uncommitted changes' if dirty else ''}"


def _load() -> str:
    with contextlib.suppress(OSError):
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    return "unknown"


def machine() -> list[tuple[str, str]]:
    memory = "unknown"
    with contextlib.suppress(OSError, ValueError, IndexError):
        kilobytes = int(Path("/proc/meminfo").read_text().split("\n", 1)[0].split()[1])
        memory = f"{kilobytes / 1024 / 1024:.1f} GB"
    return [
        ("CPU", f"{os.cpu_count()} cores, {_cpu_model()}"),
        ("memory", memory),
        ("system", platform.platform()),
        ("Python", f"{platform.python_implementation()} {platform.python_version()}"),
        ("libraries", ", ".join(f"{name} {_version(name)}" for name in LIBRARIES)),
        ("code", _git()),
    ]


# --- the sections: each module's `run(shared, quick) -> Section` --------------------

ORDER = ("latency", "throughput", "startup", "broadcast", "build", "store", "sources", "replicas", "summaries",
         "retrieval")


def _section(name: str) -> Callable[[Path, bool], Section]:
    def run(shared: Path, quick: bool) -> Section:
        module = importlib.import_module(f"benchmarks.{name}")
        section: Section = module.run(shared, quick)
        return section

    return run


SECTIONS: dict[str, Callable[[Path, bool], Section]] = {name: _section(name) for name in ORDER}
SECTION_TITLES = {
    "latency": "1. Answer latency", "throughput": "2. Bot throughput", "startup": "3-4. Start-up, reload and memory",
    "broadcast": "5. Broadcast", "build": "6. Build", "store": "7. Store", "sources": "8. Followed sources",
    "replicas": "9. Replicas",
    "summaries": "Summary quality",
    "retrieval": "Answer quality",
}


def run_section(name: str, shared: Path, quick: bool) -> Section:
    """One section; an error becomes the section's report, never the end of the run."""
    started = time.perf_counter()
    try:
        section = SECTIONS[name](shared, quick)
    except Exception as exc:  # a broken or half-written section must not stop the others
        detail = traceback.format_exception_only(exc)[-1].strip()
        section = Section(name, SECTION_TITLES[name], error=detail)
        traceback.print_exc()
    section.seconds = time.perf_counter() - started
    return section


# --- the report --------------------------------------------------------------------

def goals_summary(sections: list[Section]) -> str:
    goals = [f for s in sections for f in s.figures if f.goal]
    if not goals:
        return "No section with a goal ran."
    met = sum(f.met is True for f in goals)
    unmeasured = sum(f.met is None for f in goals)
    tail = f", {unmeasured} not measurable at this run's sizes" if unmeasured else ""
    failed = [s.name for s in sections if s.error or s.skipped]
    errors = f" Sections not measured: {', '.join(failed)}." if failed else ""
    return f"{figures_table(goals)}\n\n{met} of {len(goals)} goal figures met{tail}.{errors}"


def document(sections: list[Section], command: str, started: dt.datetime, load_before: str, seconds: float,
             shared: Path) -> str:
    head = [
        "# Benchmark results",
        f"Command: `{command}`, run {started:%Y-%m-%d %H:%M} UTC, {seconds / 60:.1f} minutes in all.",
        table(("machine", ""), [*machine(), ("load average (1, 5, 15 min)", f"before {load_before}, after {_load()}")]),
        "The machine is shared and noisy: read ratios (baseline measured in the same run) before absolute figures.",
    ]
    note = workloads.absent_note(shared)
    if note:
        head.append(f"**{note}**")
    head += ["## Goals at a glance", goals_summary(sections)]
    return "\n\n".join(head + [render(s) for s in sections]) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small workloads, for a smoke test (minutes → seconds)")
    parser.add_argument("--shared", type=Path, default=workloads.DEFAULT_SHARED,
                        help="the shared evaluation data (default: ../shared beside the repository)")
    parser.add_argument("--only", nargs="+", choices=tuple(SECTIONS), metavar="NAME",
                        help=f"run only these sections: {', '.join(SECTIONS)}")
    parser.add_argument("--output", type=Path, default=None,
                        help="write the report here (default: benchmarks/RESULTS.md on a full run, else nowhere)")
    args = parser.parse_args(argv)
    logging.getLogger(bm25s.__name__).setLevel(logging.WARNING)  # bm25s sets itself to DEBUG on import
    output = args.output or (RESULTS if not args.quick and not args.only else None)
    started, load_before, clock = dt.datetime.now(dt.UTC), _load(), time.perf_counter()
    print(f"Benchmark on {os.cpu_count()} cores, Python {platform.python_version()}; shared data: {args.shared}")
    note = workloads.absent_note(args.shared)
    if note:
        print(note)
    sections = []
    for name in args.only or SECTIONS:
        print(f"[{name}] running ...", flush=True)
        section = run_section(name, args.shared, args.quick)
        print(render(section) + "\n", flush=True)
        sections.append(section)
    command = "python -m benchmarks " + " ".join(sys.argv[1:] if argv is None else argv)
    report = document(sections, command.strip(), started, load_before, time.perf_counter() - clock, args.shared)
    print("## Goals at a glance\n\n" + goals_summary(sections))
    if output is not None:
        output.write_text(report, encoding="utf-8")
        print(f"Written to {output}")
    else:
        print("Not written to a file (a --quick or --only run; use --output FILE to keep it).")
    return 1 if any(s.error for s in sections) else 0


if __name__ == "__main__":
    raise SystemExit(main())
