"""What a start loads before its first answer: the embedding model and the word frequencies, the same as
wordllama and wordfreq give them, and on a restart without importing either (a third of a second each)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import wordfreq

from bot import search, word_frequencies
from tests.driver import REPO

TEXTS = [
    "Who funds the volunteers of the project?",
    "Кто финансирует волонтёров проекта?",
    "Жобаның еріктілерін кім қаржыландырады?",
    "", "  spaced   out\twords ", "COVID-19 in Almaty, 2024: 12.5% more",
]


def test_the_embedder_is_wordllamas_model_without_its_padding() -> None:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        import wordllama  # calls logging.basicConfig

        model = wordllama.WordLlama.load(cache_dir=Path(wordllama.__file__).parent, disable_download=True)
    finally:
        root.handlers[:], root.level = handlers, level
    model.tokenizer.no_padding()
    ours = search.Embedder()
    assert ours._vectors.dtype == np.float32 and ours._vectors.flags.c_contiguous
    assert np.array_equal(ours._vectors, model.embedding)
    for text in TEXTS:
        assert ours._tokenizer.encode(text, add_special_tokens=False).ids \
            == model.tokenizer.encode(text, add_special_tokens=False).ids
    assert [e.ids for e in ours._tokenizer.encode_batch(TEXTS, add_special_tokens=False)] \
        == [e.ids for e in model.tokenizer.encode_batch(TEXTS, add_special_tokens=False)]


@pytest.mark.parametrize("language", ["en", "ru"])
def test_the_frequency_table_gives_wordfreqs_own_frequencies(language: str, tmp_path: Path) -> None:
    """Every listed word to the last bit (so `information` is unchanged), and no two words share a hash."""
    expected = wordfreq.get_frequency_dict(language)
    table = word_frequencies.load(language, tmp_path)
    assert len(table._hashes) == len(expected)
    assert [w for w, f in expected.items() if table.get(w) != f] == []
    for unlisted in ("kozhakhmetovqx", "", "a\ud800b", "xyzzyplugh"):
        assert table.get(unlisted, 0.0) == 0.0
    assert word_frequencies.load(language, None) is expected   # nowhere to keep the table: wordfreq's own dict


def test_a_restart_reads_the_saved_table_and_an_unreadable_one_is_rebuilt(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    built = word_frequencies.load("en", tmp_path)
    (saved,) = tmp_path.glob("wordfreq*-en-*.npz")
    assert saved.name == f"wordfreq{word_frequencies.FORMAT}-en-{metadata.version('wordfreq')}.npz"
    assert saved.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == [saved.name]   # no temporary file left

    def not_again(language: str) -> None:
        raise AssertionError("rebuilt")

    with monkeypatch.context() as patch:
        patch.setattr(word_frequencies, "_build", not_again)
        loaded = word_frequencies.load("en", tmp_path)
    assert np.array_equal(loaded._hashes, built._hashes) and np.array_equal(loaded._buckets, built._buckets)
    assert loaded.get("the") == wordfreq.get_frequency_dict("en")["the"]

    good = saved.read_bytes()
    middle = len(good) // 2
    for damaged in (good[:middle], good[:middle] + bytes([good[middle] ^ 1]) + good[middle + 1 :], b""):
        saved.write_bytes(damaged)
        assert word_frequencies.load("en", tmp_path).get("the") == loaded.get("the")
        assert saved.read_bytes() == good


def test_another_versions_table_is_replaced_and_an_unwritable_directory_is_only_logged(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    stale = tmp_path / "wordfreq1-en-0.0.1.npz"
    other_language = tmp_path / "wordfreq1-ru-0.0.1.npz"
    stale.write_bytes(b"old")
    other_language.write_bytes(b"old")
    word_frequencies.load("en", tmp_path)
    assert not stale.exists() and other_language.exists()

    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory")
    with caplog.at_level(logging.WARNING, logger="bot.word_frequencies"):
        assert word_frequencies.load("en", a_file / "cache").get("the") > 0
    assert "could not save the word frequencies" in caplog.text
    assert a_file.read_text() == "not a directory"


def test_the_languages_are_wordfreqs_own() -> None:
    assert search._wordfreq_languages() == frozenset(wordfreq.available_languages())
    assert {"en", "ru"} <= search._wordfreq_languages() and "kk" not in search._wordfreq_languages()


WARM_UP = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from bot import search
    from bot.knowledge import Article
    articles = [Article(f"a{i}", "t", None, None, None, language, "", "b")
                for i, language in enumerate(["en"] * 10 + ["ru"] * 10 + ["kk"] * 10)]
    search.warm_up(articles, cache_dir=Path(sys.argv[1]))
    print(json.dumps(sorted(m for m in ("wordfreq", "wordllama") if m in sys.modules)))
    print(json.dumps([search.information(w, l) for w, l in json.loads(sys.argv[2])]))
""")
WORDS = [("the", "en"), ("weather", "en"), ("kozhakhmetov", "en"), ("погода", "ru"), ("погодка", "ru"), ("ауа", "kk")]


def test_a_restart_warms_up_without_importing_wordfreq_or_wordllama(tmp_path: Path) -> None:
    def run() -> list[object]:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        done = subprocess.run([sys.executable, "-c", WARM_UP, str(tmp_path), json.dumps(WORDS)], capture_output=True,
                              text=True, env=env, cwd=REPO, timeout=120, check=True)
        return [json.loads(line) for line in done.stdout.splitlines()]

    assert run() == [["wordfreq"], [search.information(w, language) for w, language in WORDS]]  # builds the tables
    assert sorted(p.name.split("-")[1] for p in tmp_path.glob("wordfreq*.npz")) == ["en", "ru"]
    assert run() == [[], [search.information(w, language) for w, language in WORDS]]
