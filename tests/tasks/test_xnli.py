"""XNLI: per-language test splits and zero-shot cross-lingual evaluation
(minilm_tf/tasks/classification/xnli.py), on TFDS mock data shaped like the
real dataset (a premise `Translation`, a hypothesis
`TranslationVariableLanguages`), fine-tuned end to end with a small random
XLM-RoBERTa (no real multilingual checkpoint installs offline)."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

import export_fixtures
from minilm_tf.tasks.classification import xnli
from minilm_tf.tasks.classification.registry import load_capped_task, load_task
from minilm_tf.tasks.finetuned import load_finetuned
from minilm_tf.training.finetune_common import FinetuneConfig
from minilm_tf.training.finetuning import run_finetune

SIZES = {"validation": 40, "test": 12}


def _records(split: str) -> dict:
    """XNLI-shaped examples: every language's premise and hypothesis say in
    which language and example they are."""
    n = SIZES[split]
    langs = list(xnli.XNLI_LANGUAGES)
    return {
        "premise": {lang: [f"{lang} premise {split} {i}" for i in range(n)] for lang in langs},
        "hypothesis": {
            "language": [langs] * n,
            "translation": [[f"{lang} hypothesis {split} {i}" for lang in langs]
                            for i in range(n)],
        },
        "label": np.arange(n, dtype=np.int64) % 3,
    }


def fake_as_dataset(self, split, *args, **kwargs):
    return tf.data.Dataset.from_tensor_slices(_records(str(split)))


def test_options_are_checked():
    assert xnli.parse_options(None) == {"train_language": "en",
                                        "languages": list(xnli.XNLI_LANGUAGES),
                                        "train_source": "xnli"}
    opts = xnli.parse_options({"train_language": "de", "languages": "fr,zh"})
    assert opts["languages"] == ["de", "fr", "zh"]  # the training language is always tested
    with pytest.raises(ValueError, match="no language 'xx'"):
        xnli.parse_options({"languages": "en,xx"})
    with pytest.raises(ValueError, match="Unknown XNLI task options.*'lang'"):
        xnli.parse_options({"lang": "en"})
    with pytest.raises(ValueError, match="MultiNLI is English"):
        xnli.parse_options({"train_source": "mnli", "train_language": "de"})
    with pytest.raises(ValueError, match="apply to.*xnli.*not to 'sst2'"):
        load_task("sst2", task_options={"languages": "en"})


def test_splits_per_language():
    with tfds.testing.mock_data(as_dataset_fn=fake_as_dataset):
        data = load_task("xnli", task_options={"train_language": "de",
                                               "languages": "en,de,zh"})
    assert data.label_vocab == ["entailment", "neutral", "contradiction"]
    assert data.train_language == "de" and list(data.test_by_language) == ["en", "de", "zh"]
    # Train and validation: the German XNLI validation set, split 90/10, disjoint.
    assert len(data.train) + len(data.validation) == SIZES["validation"]
    assert len(data.validation) == 3  # 10% of each class (14, 13, 13), rounded
    assert not set(data.train.texts) & set(data.validation.texts)
    assert all(t.startswith("de premise validation") for t in data.train.texts)
    assert all(p.startswith("de hypothesis validation") for p in data.validation.text_pairs)
    for lang, split in data.test_by_language.items():
        assert len(split) == SIZES["test"]
        assert split.texts[5] == f"{lang} premise test 5"
        assert split.text_pairs[5] == f"{lang} hypothesis test 5"
        assert split.labels.tolist() == [i % 3 for i in range(SIZES["test"])]
    assert data.test.texts == data.test_by_language["de"].texts
    with tfds.testing.mock_data(as_dataset_fn=fake_as_dataset):
        capped = load_capped_task("xnli", max_eval_examples=5,
                                  task_options={"languages": "fr"})
    assert {k: len(v) for k, v in capped.test_by_language.items()} == {"en": 5, "fr": 5}


def test_cross_lingual_summary():
    summary = xnli.cross_lingual_summary(
        {"en": {"accuracy": 0.8}, "de": {"accuracy": 0.6}, "zh": {"accuracy": 0.5}}, "en",
        "accuracy")
    assert summary["average"] == pytest.approx(1.9 / 3)
    assert summary["zero_shot_average"] == pytest.approx(0.55)


# Slow (a whole fine-tuning run): the splits and the per-language summary are tested above.
@pytest.mark.slow
def test_zero_shot_finetune_reports_every_language(tmp_path):
    encoder = export_fixtures.architecture_encoder("xlm_roberta", sentence=False)
    workdir = str(tmp_path / "run")
    config = FinetuneConfig(model="tiny-xlm-r", task="xnli", workdir=workdir, epochs=1,
                            batch_size=8, sequence_length=24, latency_examples=0,
                            extra={"languages": "en,de,zh"})
    with tfds.testing.mock_data(as_dataset_fn=fake_as_dataset):
        report = run_finetune(config, encoder=encoder)
    by_language = report["metrics"]["test_by_language"]
    assert sorted(by_language) == ["de", "en", "zh"]
    cross = report["cross_lingual"]
    assert cross["train_language"] == "en" and cross["metric"] == "accuracy"
    assert cross["average"] == pytest.approx(np.mean([m["accuracy"] for m in
                                                      by_language.values()]))
    assert cross["zero_shot_average"] == pytest.approx(
        (by_language["de"]["accuracy"] + by_language["zh"]["accuracy"]) / 2)
    assert by_language["en"] == report["metrics"]["test"]
    # Independently: the saved model's predictions on each language's test set.
    model, preprocessor, labels = load_finetuned(workdir)
    assert labels["labels"] == xnli.XNLI_LABELS
    for lang in by_language:
        records = _records("test")
        premises = records["premise"][lang]
        hypotheses = [row[xnli.XNLI_LANGUAGES.index(lang)]
                      for row in records["hypothesis"]["translation"]]
        features = preprocessor(x=(tf.constant(premises), tf.constant(hypotheses)))
        logits = np.asarray(model(features, training=False))
        accuracy = float(np.mean(np.argmax(logits, -1) == records["label"]))
        assert by_language[lang]["accuracy"] == pytest.approx(accuracy), lang
    with open(os.path.join(workdir, "report.json"), encoding="utf-8") as f:
        assert json.load(f)["cross_lingual"]["by_language"] == cross["by_language"]
