"""MLQA fine-tuning through `run_finetune` (task `mlqa`): a tiny random XLM-R
(SentencePiece in XLM-R's id space, `<s> q </s></s> c </s>` windows, no
segment ids) learns the SQuAD fixture from the MLQA release layout and is
scored per language with MLQA's evaluation; the TFDS path on mock data.
No real multilingual checkpoint installs offline, so these are small random
models."""

import json
import os

import keras_hub
import pytest

from minilm_tf.models.encoders import LoadedEncoder
from minilm_tf.tasks import question_answering
from minilm_tf.tasks.question_answering import mlqa_metrics
from minilm_tf.training.finetune_common import FinetuneConfig
from minilm_tf.training.finetuning import run_finetune
from minilm_tf.utils.seeding import set_random_seed
from toy_tasks import SQUAD_FIXTURE as FIXTURE, squad_xlmr_tokenizer
POSITIONS = 256


def _tiny_xlmr(seed=0):
    tokenizer = squad_xlmr_tokenizer()
    set_random_seed(seed, tokenizer)
    backbone = keras_hub.models.XLMRobertaBackbone(
        vocabulary_size=tokenizer.vocabulary_size(), num_layers=1, num_heads=2, hidden_dim=32,
        intermediate_dim=64, max_sequence_length=POSITIONS, dropout=0.0)
    return LoadedEncoder(backbone, tokenizer, "tiny-random-xlm-roberta", "gelu")


def _squad_v1(tmp_path):
    raw = json.loads(open(FIXTURE, encoding="utf-8").read())
    for article in raw["data"]:
        for paragraph in article["paragraphs"]:
            paragraph["qas"] = [q for q in paragraph["qas"] if not q.get("is_impossible")]
    raw["version"] = "1.1"
    path = tmp_path / "squad_v1.json"
    path.write_text(json.dumps(raw))
    return raw, str(path)


def test_tiny_xlm_r_learns_and_is_scored_per_language(tmp_path):
    raw, train_file = _squad_v1(tmp_path)
    release = tmp_path / "MLQA_V1"
    for split, prefix in (("dev", "dev"), ("test", "test")):
        (release / split).mkdir(parents=True)
        for language in ("en", "de"):
            (release / split / f"{prefix}-context-{language}-question-{language}.json"
             ).write_text(json.dumps(raw))
    encoder = _tiny_xlmr()
    cfg = FinetuneConfig(
        model="tiny-random-xlm-roberta", task="mlqa", workdir=str(tmp_path / "run"),
        train_file=train_file, epochs=8, batch_size=7, learning_rate=5e-3, seed=0,
        early_stopping_patience=None, latency_examples=0,
        extra={"max_query_length": 24, "languages": "en,de", "mlqa_dir": str(release)})
    report = run_finetune(cfg, encoder=encoder)

    by_language = report["metrics"]["test_by_language"]
    assert set(by_language) == {"en", "de"} and report["task_kind"] == "qa"
    assert by_language["en"] == report["metrics"]["test"]
    assert all(m["version"] == "mlqa" and m["total"] == 19 for m in by_language.values())
    assert by_language["de"]["language"] == "de"
    cross = report["cross_lingual"]
    assert cross["train_language"] == "en" and cross["metric"] == "f1"
    assert cross["zero_shot_average"] == pytest.approx(by_language["de"]["f1"])
    # It learned the fixture (trained on it): far above an untrained model.
    assert report["metrics"]["validation"]["f1"] >= 30.0, report["metrics"]["validation"]

    # The saved run reloads (SentencePiece model beside it) and gives the
    # reported German scores when evaluated independently.
    run = tmp_path / "run"
    model, qa_config, tok = question_answering.load_finetuned_qa(str(run))
    assert qa_config["tokenizer"]["kind"] == "sentencepiece"
    assert qa_config["inputs"] == ["token_ids", "padding_mask"]
    assert (run / qa_config["vocabulary_file"]).is_file()
    examples = question_answering.read_squad_json(raw)
    features, meta = question_answering.prepare_squad(
        examples, tok, max_seq_length=qa_config["max_seq_length"],
        doc_stride=qa_config["doc_stride"], max_query_length=qa_config["max_query_length"])
    start, end = question_answering.predict_logits(model, features)
    predictions = question_answering.postprocess(examples, meta, start, end)
    assert predictions == json.loads((run / "predictions_test_de.json").read_text())
    again = mlqa_metrics.mlqa_evaluate(examples, predictions, "de")
    assert again["f1"] == pytest.approx(by_language["de"]["f1"])


def test_tfds_mlqa_mock_data(tmp_path):
    import tensorflow_datasets as tfds

    encoder = _tiny_xlmr(seed=1)
    cfg = FinetuneConfig(
        model="tiny", task="mlqa", workdir=str(tmp_path / "run"), epochs=1, batch_size=64,
        max_train_examples=3, max_eval_examples=3, latency_examples=0, save_model=False,
        extra={"max_query_length": 16, "max_seq_length": 128, "on_mismatch": "keep",
               "languages": "en,de,zh", "train_language": "en"})
    with tfds.testing.mock_data(num_examples=4):
        report = run_finetune(cfg, encoder=encoder)
    assert "tfds:squad/v1.1" in report["task_source"]
    assert "tfds:mlqa/zh" in report["task_source"]
    assert report["num_examples"] == {"train": 3, "validation": 3, "test": 3}
    assert set(report["metrics"]["test_by_language"]) == {"en", "de", "zh"}
    assert report["cross_lingual"]["by_language"].keys() == {"en", "de", "zh"}
    assert os.path.isfile(tmp_path / "run" / "qa_sentencepiece.model")
