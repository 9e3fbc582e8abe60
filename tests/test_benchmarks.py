"""The benchmark runs end to end on tiny synthetic workloads and reports what it measured (no timing asserted)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import __main__ as bench
from benchmarks.report import Figure, Section

REPO = Path(__file__).resolve().parent.parent
FIGURE_HEADER = "| measure | ours | baseline (same run) | ratio | goal | met |"


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], str]:
    """`python -m benchmarks --quick` without ../shared: synthetic articles, two fast sections, one skipped."""
    tmp = tmp_path_factory.mktemp("bench")
    output = tmp / "RESULTS.md"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--shared", str(tmp / "no-shared"),
         "--only", "latency", "startup", "retrieval", "--output", str(output)],
        cwd=REPO, capture_output=True, text=True, timeout=240, check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done, output.read_text(encoding="utf-8")


Run = tuple[subprocess.CompletedProcess[str], str]


def test_each_section_prints_a_table_of_figures_beside_their_baselines(quick_run: Run) -> None:
    done, report = quick_run
    for text in (done.stdout, report):
        assert "## 1. Answer latency" in text
        assert "## 3-4. Start-up, reload and memory" in text
        assert text.count(FIGURE_HEADER) >= 3  # latency, startup, and the goals at a glance
    latency = re.search(r"\| answer latency median, 200 articles \| ([\d.]+) ms \| fuzzy scan ([\d.]+) ms \| "
                        r"[\d.,]+x (faster|slower) \|", report)
    assert latency is not None, report
    assert float(latency.group(1)) > 0 and float(latency.group(2)) > 0
    assert re.search(r"\| restart to first answer \(files unchanged\), 1k articles \| [\d.]+ s \| "
                     r"plain BM25 bot [\d.]+ s \|", report)
    assert re.search(r"\| peak RSS, 1k articles loaded \| [\d,]+ MB \|", report)
    assert re.search(r"\| worst event-loop stall during either /reload, 1k articles \| [\d.,]+ ms \|", report)


def test_the_report_records_the_machine_and_says_what_it_could_not_use(quick_run: Run) -> None:
    _, report = quick_run
    assert re.search(r"\| CPU \| \d+ cores", report)
    assert re.search(r"python-telegram-bot \d+\.\d+", report)
    assert re.search(r"bm25s \d+\.\d+", report)
    assert "no-shared/eval/rtqa_news is absent, so these knowledge bases are synthetic" in report
    assert re.search(r"## Answer quality.*\n\n\*\*Skipped:\*\* .*no-shared/eval is absent", report)
    assert "Sections not measured: retrieval." in report


def test_a_failing_section_is_reported_and_the_others_still_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(shared: Path, quick: bool) -> Section:
        raise RuntimeError("the fake server did not start")

    def working(shared: Path, quick: bool) -> Section:
        return Section("latency", "1. Answer latency", [Figure("answer latency median", "1.00 ms", "fuzzy 90 ms",
                                                               "90x faster", "< 2 ms", True)])

    monkeypatch.setitem(bench.SECTIONS, "throughput", broken)
    monkeypatch.setitem(bench.SECTIONS, "latency", working)
    output = tmp_path / "RESULTS.md"
    code = bench.main(["--only", "throughput", "latency", "--shared", str(tmp_path), "--output", str(output)])
    report = output.read_text(encoding="utf-8")
    assert code == 1
    assert "**Not measured, the section failed:** RuntimeError: the fake server did not start" in report
    assert "| answer latency median | 1.00 ms | fuzzy 90 ms | 90x faster | < 2 ms | yes |" in report
    assert "1 of 1 goal figures met. Sections not measured: throughput." in report
    assert "the fake server did not start" in capsys.readouterr().out
