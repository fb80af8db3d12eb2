"""Fine-tuned classifiers as Hugging Face BertForSequenceClassification
(minilm_tf/export/hf_classifier.py, tools/export_hf.py --finetuned): config,
weights against the Keras layers, refusals; logits in the real transformers
library when .venv-torch exists (tools/make_torch_env.sh)."""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from safetensors.numpy import load_file

import export_fixtures
from locations import TOOLS_DIR
from minilm_tf.export import hf, hf_classifier
from minilm_tf.models.encoders import LoadedEncoder
from minilm_tf.tasks.finetuned import load_finetuned
from torch_env import check_parity, needs_torch_env

LABELS = ["negative", "neutral", "positive"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("clf")
    return export_fixtures.make_finetune_workdir(
        str(root / "run"), export_fixtures.real_vocab_tokenizer(), labels=LABELS, head_scale=5.0)


@pytest.fixture(scope="module")
def exported(run_dir, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("hf") / "classifier")
    return out, hf_classifier.export_hf_classifier(run_dir, out)


def test_config_names_the_labels_and_the_task(exported):
    out, summary = exported
    config = json.load(open(os.path.join(out, "config.json")))
    assert config["architectures"] == ["BertForSequenceClassification"]
    assert config["id2label"] == {"0": "negative", "1": "neutral", "2": "positive"}
    assert config["label2id"] == {"negative": 0, "neutral": 1, "positive": 2}
    assert config["num_labels"] == 3 and config["problem_type"] == "single_label_classification"
    assert summary["num_labels"] == 3 and "README.md" in summary["files"]
    card = open(os.path.join(out, "README.md")).read()
    assert "pipeline_tag: text-classification" in card and "negative, neutral, positive" in card


def test_the_card_carries_the_runs_results(run_dir, exported, tmp_path):
    out, _ = exported
    assert "Evaluation: not recorded" in open(os.path.join(out, "README.md")).read()
    report = {"metrics": {"validation": {"accuracy": 0.758, "f1": 0.786},
                          "test": {"accuracy": 0.7479, "f1": None}},
              "num_examples": {"train": 2000, "validation": 1281, "test": 1281}}
    with open(os.path.join(run_dir, "report.json"), "w") as f:
        json.dump(report, f)
    try:
        for source in (run_dir, os.path.join(run_dir, "model")):  # the workdir or its model/
            target = str(tmp_path / os.path.basename(source))
            hf_classifier.export_hf_classifier(source, target)
            card = open(os.path.join(target, "README.md")).read()
            assert "train: 2000, validation: 1281, test: 1281 examples" in card
            assert "| validation | 0.7580 | 0.7860 |" in card and "| test | 0.7479 | - |" in card
    finally:
        os.remove(os.path.join(run_dir, "report.json"))


def test_weights_are_the_encoder_under_bert_and_the_head(run_dir, exported):
    out, summary = exported
    weights = load_file(os.path.join(out, "model.safetensors"))
    model, _, _ = load_finetuned(run_dir)
    encoder_weights = hf.hf_state_dict(model.backbone)
    assert set(weights) == {f"bert.{k}" for k in encoder_weights} | {"classifier.weight",
                                                                     "classifier.bias"}
    for name, value in encoder_weights.items():
        np.testing.assert_array_equal(weights[f"bert.{name}"], value)
    head = model.get_layer("logits")
    np.testing.assert_array_equal(weights["classifier.weight"], np.asarray(head.kernel).T)
    np.testing.assert_array_equal(weights["classifier.bias"], np.asarray(head.bias))
    assert sum(v.size for v in weights.values()) == summary["parameters"] == model.count_params()


def test_head_on_the_exported_pooler_gives_the_keras_logits(run_dir, tmp_path):
    """The BertForSequenceClassification head, computed in numpy from the
    exported pooler and classifier weights on the Keras [CLS] state, equals
    the Keras logits."""
    ref = hf_classifier.classifier_parity_reference(run_dir, str(tmp_path / "ref.npz"))
    out = str(tmp_path / "hf")
    hf_classifier.export_hf_classifier(run_dir, out)
    w = load_file(os.path.join(out, "model.safetensors"))
    model, _, _ = load_finetuned(run_dir)
    features = {"token_ids": ref["token_ids"], "padding_mask": ref["padding_mask"],
                "segment_ids": np.zeros_like(ref["token_ids"])}
    cls = np.asarray(model.backbone(features)["sequence_output"])[:, 0]
    pooled = np.tanh(cls @ w["bert.pooler.dense.weight"].T + w["bert.pooler.dense.bias"])
    logits = pooled @ w["classifier.weight"].T + w["classifier.bias"]
    np.testing.assert_allclose(logits, ref["logits"], atol=1e-5)
    assert ref["logits"].shape == (len(hf.PARITY_TEXTS), 3)


def test_regression_config():
    run = {"kind": "regression", "num_outputs": 1, "labels": None}
    tokenizer = export_fixtures.real_vocab_tokenizer()
    encoder = LoadedEncoder(export_fixtures.tiny_backbone(tokenizer, 0), tokenizer, "tiny",
                               "gelu_approximate")
    config = hf_classifier.classifier_config(encoder, run)
    assert config["problem_type"] == "regression" and config["num_labels"] == 1


def test_runs_without_a_bert_classifier_are_refused(tmp_path):
    os.makedirs(tmp_path / "qa")
    (tmp_path / "qa" / "labels.json").write_text(json.dumps({"kind": "qa"}))
    with pytest.raises(hf.ExportError, match="'qa' run; only classification and regression"):
        hf_classifier.export_hf_classifier(str(tmp_path / "qa"), str(tmp_path / "out"))
    with pytest.raises(hf.ExportError, match="not a fine-tuning run"):
        hf_classifier.export_hf_classifier(str(tmp_path), str(tmp_path / "out"))
    assert not os.path.exists(tmp_path / "out")


def _export_and_check(tmp_path, run):
    """tools/export_hf.py --finetuned, then tools/check_hf_parity.py in the
    torch environment: its JSON report."""
    out, ref = str(tmp_path / "hf"), str(tmp_path / "ref.npz")
    proc = subprocess.run([sys.executable, os.path.join(TOOLS_DIR, "export_hf.py"),
                           "--finetuned", run, "--output_dir", out, "--reference", ref],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc, report = check_parity(out, ref)
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-3000:])
    card = open(os.path.join(out, "README.md"), encoding="utf-8").read()
    assert report["card_updated"] and "## Export parity" in card
    assert f"| logits, max abs difference | {report['logits_max_abs_diff']:.2g} " in card
    return report


@needs_torch_env
def test_transformers_gives_the_keras_logits(run_dir, tmp_path):
    report = _export_and_check(tmp_path, run_dir)
    assert report["hf_classes"]["model"] == "BertForSequenceClassification"
    assert report["logits_max_abs_diff"] <= 1e-5 and not report["tensorflow_imported"]
    assert report["token_ids"]["identical"] == report["texts"] == len(hf.PARITY_TEXTS)
    assert report["same_predicted_label"] == len(hf.PARITY_TEXTS)
    assert report["id2label"] == {"0": "negative", "1": "neutral", "2": "positive"}
    print(json.dumps({k: report[k] for k in ("logits_max_abs_diff", "logits_max_abs")}))


# RoBERTa, XLM-R and DistilBERT: their keras-hub text classifiers; ELECTRA: ours.
ARCHITECTURE_HEADS = {
    "roberta": ("RobertaForSequenceClassification", "roberta.", np.tanh,
                ("classifier.dense", "classifier.out_proj")),
    "xlm_roberta": ("XLMRobertaForSequenceClassification", "roberta.", np.tanh,
                    ("classifier.dense", "classifier.out_proj")),
    "distil_bert": ("DistilBertForSequenceClassification", "distilbert.",
                    lambda x: np.maximum(x, 0.0), ("pre_classifier", "classifier")),
    # ELECTRA: this package's ElectraTextClassifier, exact (erf) GELU as in Hugging Face.
    "electra": ("ElectraForSequenceClassification", "electra.",
                lambda x: 0.5 * x * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0))),
                ("classifier.dense", "classifier.out_proj")),
}


@pytest.fixture(scope="module", params=sorted(ARCHITECTURE_HEADS))
def architecture_run(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"clf_{request.param}")
    run = export_fixtures.make_architecture_finetune_workdir(str(root / "run"), request.param,
                                                             labels=LABELS)
    return request.param, run


def test_architecture_heads_computed_from_the_export_give_the_keras_logits(architecture_run,
                                                                          tmp_path):
    """Each head, computed in numpy from the exported weights on the Keras
    first-token state (the Hugging Face head's inference computation), equals
    the Keras logits; the encoder sits under the base model's prefix."""
    name, run = architecture_run
    architecture, prefix, activation, (dense, out) = ARCHITECTURE_HEADS[name]
    ref = hf_classifier.classifier_parity_reference(run, str(tmp_path / "ref.npz"))
    out_dir = str(tmp_path / "hf")
    summary = hf_classifier.export_hf_classifier(run, out_dir)
    config = json.load(open(os.path.join(out_dir, "config.json")))
    assert config["architectures"] == [architecture]
    assert config["id2label"] == {"0": "negative", "1": "neutral", "2": "positive"}
    w = load_file(os.path.join(out_dir, "model.safetensors"))
    head_keys = {f"{m}.{p}" for m in (dense, out) for p in ("weight", "bias")}
    assert head_keys <= set(w) and all(k.startswith(prefix) for k in set(w) - head_keys)
    model, _, _ = load_finetuned(run)
    assert summary["parameters"] == model.count_params()
    assert not any(".pooler." in k for k in w) or name == "bert"
    features = {"token_ids": ref["token_ids"], "padding_mask": ref["padding_mask"]}
    if "segment_ids" in model.backbone.input:  # one-text inputs: segment 0
        features["segment_ids"] = np.zeros_like(ref["token_ids"])
    first = np.asarray(model.backbone(features)["sequence_output"]
                       if isinstance(model.backbone(features), dict)
                       else model.backbone(features))[:, 0]
    hidden = activation(first @ w[f"{dense}.weight"].T + w[f"{dense}.bias"])
    logits = hidden @ w[f"{out}.weight"].T + w[f"{out}.bias"]
    np.testing.assert_allclose(logits, ref["logits"], atol=1e-5)
    # Not a check on near-zero or constant logits.
    assert np.abs(ref["logits"]).max() > 0.5 and ref["logits"].std(axis=0).min() > 1e-4
    card = open(os.path.join(out_dir, "README.md")).read()
    assert architecture in card


def test_a_generic_head_is_refused(tmp_path):
    run = export_fixtures.make_architecture_finetune_workdir(str(tmp_path / "run"), "electra",
                                                             generic_head=True)
    assert os.path.exists(tmp_path / "run" / "model.keras")
    with pytest.raises(hf.ExportError, match="ForSequenceClassification equivalent"):
        hf_classifier.export_hf_classifier(run, str(tmp_path / "out"))
    assert not os.path.exists(tmp_path / "out")


@needs_torch_env
def test_transformers_gives_the_keras_logits_for_each_architecture(architecture_run, tmp_path):
    name, run = architecture_run
    report = _export_and_check(tmp_path, run)
    assert report["hf_classes"]["model"] == ARCHITECTURE_HEADS[name][0]
    assert report["logits_max_abs_diff"] <= 1e-5, report
    assert report["token_ids"]["identical"] == report["texts"] == len(hf.PARITY_TEXTS)
    print(json.dumps({name: {k: report[k] for k in ("logits_max_abs_diff",
                                                     "logits_max_abs")}}))


def test_a_mean_pooling_head_is_refused_with_what_to_do(tmp_path):
    run = export_fixtures.make_finetune_workdir(
        str(tmp_path / "run"), export_fixtures.real_vocab_tokenizer(), labels=LABELS,
        pooling="mean")
    with pytest.raises(hf.ExportError, match="mean-pooling head.*--pooling cls"):
        hf_classifier.export_hf_classifier(run, str(tmp_path / "out"))
    assert not os.path.exists(tmp_path / "out")
