"""QA fine-tuning (minilm_tf.training.qa_finetuning): a tiny BERT memorises the
SQuAD fixture and reloads with safe_mode=True, tools/finetune.py end to end,
the TFDS path through mock data, options and data helpers."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import keras
import keras_hub

from minilm_tf.tasks import question_answering
from minilm_tf.training.finetune_common import FinetuneConfig
from minilm_tf.training.finetuning import run_finetune
from locations import FIXTURES_DIR, TOOLS_DIR
from toy_tasks import vocab_path

FIXTURE = os.path.join(FIXTURES_DIR, "squad_small.json")
MAX_POSITIONS = 256  # every fixture context fits one window: one feature per question


def _tiny_encoder(seed=0):
    """1 layer x 32 wide random BERT, no dropout, with the real uncased vocabulary."""
    from minilm_tf.models.encoders import LoadedEncoder

    keras.utils.set_random_seed(seed)
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=vocab_path(), lowercase=True)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=tokenizer.vocabulary_size(), num_layers=1, num_heads=2,
        hidden_dim=32, intermediate_dim=64, max_sequence_length=MAX_POSITIONS, dropout=0.0)
    return LoadedEncoder(backbone, tokenizer, "tiny-random-bert", "gelu_approximate")


def test_tiny_bert_memorises_squad_and_reloads_safely(tmp_path):
    encoder = _tiny_encoder()
    cfg = FinetuneConfig(
        model="tiny-random-bert", task="squad_v2", workdir=str(tmp_path / "run"),
        train_file=FIXTURE, validation_file=FIXTURE, epochs=8, batch_size=7,
        learning_rate=5e-3, seed=0, early_stopping_patience=None, latency_examples=8,
        extra={"max_query_length": 24})
    options = question_answering.resolve_qa_options(cfg, encoder.backbone)
    assert (options.max_seq_length, options.doc_stride, options.n_best,
            options.max_answer_length, options.null_threshold) == (MAX_POSITIONS, 128, 20,
                                                                   30, 0.0)
    data = question_answering.load_qa_data(cfg, options)
    assert data.version_2 and len(data.train) == len(data.validation) == 21

    # Untrained F1 of the same (seeded) model on the training questions.
    tok = question_answering.get_offset_tokenizer(encoder.tokenizer)
    features, meta = question_answering.prepare_squad(data.validation, tok, max_seq_length=MAX_POSITIONS,
                                         doc_stride=128, max_query_length=24)
    keras.utils.set_random_seed(cfg.seed)
    untrained, _, _ = question_answering.evaluate_qa(question_answering.build_qa_model(encoder.backbone), data.validation,
                                     features, meta, options, version_2=True)

    report = run_finetune(cfg, encoder=encoder)
    val = report["metrics"]["validation"]
    # Seeds 0..3 reach F1 55..67 from an untrained 2..8.
    assert val["f1"] >= 35.0 and val["f1"] >= untrained["f1"] + 25.0, (untrained, val)
    assert val["version"] == "v2.0" and val["total"] == 21 and "NoAns_f1" in val
    # Early stopping machinery ran on validation F1 and restored the best epoch.
    best = max(h["validation_f1"] for h in report["history"])
    assert val["f1"] == pytest.approx(best)
    assert report["epochs_run"] == 8 and report["history"][report["best_epoch"] - 1][
        "validation_f1"] == pytest.approx(best)

    on_disk = json.loads((tmp_path / "run" / "report.json").read_text())
    assert on_disk["task_kind"] == "qa" and on_disk["main_metric"] == "f1"
    assert on_disk["validation_metric"] == pytest.approx(val["f1"])
    assert on_disk["num_examples"] == {"train": 21, "validation": 21, "test": 0}
    assert on_disk["qa"]["max_seq_length"] == MAX_POSITIONS
    assert on_disk["qa"]["total_steps"] == 8 * 3
    params = on_disk["parameters"]
    assert params["head"] == 2 * 32 + 2 and params["total"] == params["backbone"] + 66
    assert on_disk["throughput"]["train_examples_per_sec"] > 0
    assert on_disk["latency_ms_per_example"] > 0 and on_disk["wall_time_sec"] > 0
    assert any("capped" in n for n in on_disk["notes"])

    # Saved model: loads with safe_mode=True and gives the same logits.
    run = tmp_path / "run"
    qa_config = json.loads((run / "qa_config.json").read_text())
    assert qa_config["max_seq_length"] == MAX_POSITIONS and qa_config["doc_stride"] == 128
    assert qa_config["lowercase"] is True and qa_config["version_2"] is True
    model, loaded_config, loaded_tok = question_answering.load_finetuned_qa(str(run))
    assert loaded_config == qa_config
    assert loaded_tok.tokenize("Who designed the Sagrada Família?") == tok.tokenize(
        "Who designed the Sagrada Família?")
    x = {k: v[:4] for k, v in question_answering.model_inputs(features).items()}
    expected = report["_model"].predict_on_batch(x)
    got = model.predict_on_batch(x)
    np.testing.assert_allclose(got["start_logits"], expected["start_logits"], atol=1e-5)
    np.testing.assert_allclose(got["end_logits"], expected["end_logits"], atol=1e-5)
    predictions = json.loads((run / "predictions_validation.json").read_text())
    assert set(predictions) == {e.qas_id for e in data.validation}


def test_tools_finetune_squad_v2_end_to_end(tmp_path):
    from minilm_tf.models.encoders import save_encoder

    preset = str(tmp_path / "tiny_preset")
    save_encoder(_tiny_encoder(seed=1), preset)
    workdir = str(tmp_path / "cli_run")
    args = ["--model", preset, "--task", "squad_v2", "--train_file", FIXTURE,
            "--validation_file", FIXTURE, "--test_file", FIXTURE, "--workdir", workdir,
            "--epochs", "1", "--batch_size", "16", "--learning_rate", "1e-3",
            "--max_eval_examples", "10", "--latency_examples", "0",
            "--task_option", "doc_stride=64", "--task_option", "null_threshold=0.5"]
    cmd = [sys.executable, os.path.join(TOOLS_DIR, "finetune.py")] + args
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(open(os.path.join(workdir, "report.json")).read())
    assert report["task"] == "squad_v2" and report["task_kind"] == "qa"
    assert report["model"] == preset and report["main_metric"] == "f1"
    for split in ("validation", "test"):
        metrics = report["metrics"][split]
        assert {"exact_match", "f1", "HasAns_f1"} <= set(metrics) and metrics["total"] == 10
        assert 0.0 <= metrics["f1"] <= 100.0
    assert report["num_examples"] == {"train": 21, "validation": 10, "test": 10}
    assert report["qa"]["doc_stride"] == 64 and report["qa"]["null_threshold"] == 0.5
    assert report["qa"]["max_seq_length"] == MAX_POSITIONS and report["epochs_run"] == 1
    assert report["hyperparameters"]["extra"] == {"doc_stride": 64, "null_threshold": 0.5}
    assert report["parameters"]["total"] > report["parameters"]["backbone"] > 0
    assert report["latency"] is None and report["wall_time_sec"] > 0
    assert report["throughput"]["train_examples_per_sec"] > 0
    for name in ("model.keras", "qa_config.json", "qa_vocab.txt", "predictions_test.json"):
        assert os.path.isfile(os.path.join(workdir, name)), name
    summary = json.loads(proc.stdout[proc.stdout.index("{"):])
    assert summary["validation_metric"] == pytest.approx(report["validation_metric"])


def test_tfds_squad_mock_data_one_step(tmp_path):
    import tensorflow_datasets as tfds
    encoder = _tiny_encoder(seed=2)

    cfg = FinetuneConfig(
        model="tiny", task="squad/v2.0", task_kind="qa", workdir=str(tmp_path / "run"),
        epochs=1, batch_size=64, max_train_examples=3, max_eval_examples=3,
        latency_examples=0, save_model=False,
        extra={"max_query_length": 16, "max_seq_length": 128})
    with tfds.testing.mock_data(num_examples=4):
        report = run_finetune(cfg, encoder=encoder)
    # Random mock answers never align with their contexts: those questions are
    # skipped for training (the unanswerable ones remain).
    assert any("skipped" in n for n in report["notes"]), report["notes"]
    assert report["task_source"] == "tfds:squad/v2.0"
    assert report["qa"]["version_2"] is True and report["qa"]["total_steps"] == 1
    assert report["num_examples"] == {"train": 3, "validation": 3, "test": 0}
    assert set(report["metrics"]["validation"]) >= {"exact_match", "f1"}
    assert report["saved_model"] is None and report["latency"] is None
    assert os.path.isfile(tmp_path / "run" / "report.json")


def test_options_and_data_helpers(tmp_path):
    assert question_answering.tfds_name_for_task("squad") == "squad/v1.1"
    assert question_answering.tfds_name_for_task("SQuAD_v1") == "squad/v1.1"
    assert question_answering.tfds_name_for_task("squad/v1.1") == "squad/v1.1"
    assert question_answering.tfds_name_for_task("squad_v2") == "squad/v2.0"
    assert question_answering.tfds_name_for_task("my_qa") is None
    cfg = FinetuneConfig(model="m", task="squad", workdir="w")
    assert question_answering.resolve_qa_options(cfg) == question_answering.QAOptions()  # 384 / 128 / 64 / 20 / 30 / 0.0
    cfg.extra = {"dock_stride": 3}
    with pytest.raises(ValueError, match="Unknown QA task option"):
        question_answering.resolve_qa_options(cfg)
    cfg.extra, cfg.sequence_length = {"n_best_size": 5}, 200
    options = question_answering.resolve_qa_options(cfg)
    assert options.n_best == 5 and options.max_seq_length == 200
    backbone = type("B", (), {"max_sequence_length": 128})()
    with pytest.raises(ValueError, match="positions"):
        question_answering.resolve_qa_options(cfg, backbone)  # explicit 200 > 128
    cfg.extra = {"on_mismatch": "ignore"}
    with pytest.raises(ValueError, match="on_mismatch"):
        question_answering.resolve_qa_options(cfg)

    # v1.1 detection, and a held-out validation split by context without a file.
    raw = json.loads(open(FIXTURE).read())
    assert question_answering.detect_version_2(raw)
    for article in raw["data"]:
        for paragraph in article["paragraphs"]:
            paragraph["qas"] = [q for q in paragraph["qas"] if not q.get("is_impossible")]
    raw["version"] = "1.1"
    assert not question_answering.detect_version_2(raw)
    v1 = tmp_path / "v1.json"
    v1.write_text(json.dumps(raw))
    cfg = FinetuneConfig(model="m", task="my_qa", task_kind="qa", workdir="w",
                            train_file=str(v1), seed=3)
    data = question_answering.load_qa_data(cfg)
    assert not data.version_2 and data.source == "files"
    held = {e.context for e in data.validation}
    assert len(held) == 1 and not held & {e.context for e in data.train}
    assert len(data.train) + len(data.validation) == 19
    cfg.train_file, cfg.validation_file = None, str(v1)
    with pytest.raises(ValueError, match="train_file"):
        question_answering.load_qa_data(cfg)
    cfg.validation_file = None
    with pytest.raises(ValueError, match="no built-in data"):
        question_answering.load_qa_data(cfg)

    # Misaligned training answers are skipped (noted); none left is an error.
    bad = {"version": "1.1", "data": [{"title": "t", "paragraphs": [{
        "context": "Zurich is a city.", "qas": [
            {"id": "ok", "question": "What is Zurich?",
             "answers": [{"text": "a city", "answer_start": 10}]},
            {"id": "bad", "question": "Where?",
             "answers": [{"text": "Zurich", "answer_start": 3}]}]}]}]}
    bad_file = tmp_path / "bad.json"
    bad_file.write_text(json.dumps(bad))
    cfg = FinetuneConfig(model="m", task="my_qa", task_kind="qa", workdir="w",
                            train_file=str(bad_file), validation_file=str(bad_file))
    data = question_answering.load_qa_data(cfg)
    assert [e.qas_id for e in data.train] == ["ok"] and len(data.validation) == 2
    assert any("1 training question(s) skipped" in n for n in data.notes)
    bad["data"][0]["paragraphs"][0]["qas"].pop(0)
    bad_file.write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="No training questions"):
        question_answering.load_qa_data(cfg)
