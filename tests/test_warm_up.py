"""What a start loads before its first answer: the embedding model, the same as wordllama gives it."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from bot import search

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
