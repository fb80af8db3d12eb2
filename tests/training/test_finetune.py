"""Fine-tuning: schedule, workdir safety, QA hook, a tiny BERT that learns,
saving/reloading, the compare table, and tools/finetune.py end to end."""

import json
import os
import subprocess
import sys
import types

import numpy as np
import pytest
import keras
import keras_hub

from minilm_tf.tasks.classification.datasets import evaluate_split, predict_outputs
from minilm_tf.tasks.finetuned import load_finetuned
from minilm_tf.training.callbacks import ValidationMetricCallback
from minilm_tf.training.finetune_common import (
    FinetuneConfig,
    clear_previous_run,
    config_dict,
    make_optimizer,
    task_kind,
)
from minilm_tf.training import qa_finetuning
from minilm_tf.training.finetuning import run_finetune
from locations import TOOLS_DIR
from toy_tasks import sts_rows, toy_rows, vocab_path, write_jsonl



def _assert_is_a_chart(path):
    """A PNG that decodes to a picture with content (not one flat colour)."""
    import matplotlib.image

    image = matplotlib.image.imread(str(path))
    assert image.ndim == 3 and min(image.shape[:2]) >= 100
    assert float(image[..., :3].std()) > 0.05


@pytest.fixture(scope="module")
def toy_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("toy")
    return {name: write_jsonl(d / f"{name}.jsonl", toy_rows(n, seed))
            for name, n, seed in (("train", 160, 0), ("dev", 40, 1), ("test", 40, 2))}


@pytest.fixture(scope="module")
def tiny_encoder():
    from minilm_tf.models.encoders import LoadedEncoder

    keras.utils.set_random_seed(0)
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=vocab_path(), lowercase=True)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=tokenizer.vocabulary_size(), num_layers=1, num_heads=2,
        hidden_dim=32, intermediate_dim=64, max_sequence_length=64)
    return LoadedEncoder(backbone, tokenizer, "tiny-random-bert", "gelu_approximate")


def _toy_config(workdir, toy_files, **overrides):
    """A tiny model's fine-tuning on the toy task: fast, no latency, no early stop."""
    settings = dict(model="tiny-random-bert", task="toy", workdir=str(workdir),
                    train_file=toy_files["train"], validation_file=toy_files["dev"],
                    test_file=toy_files["test"], epochs=6, batch_size=16, learning_rate=5e-3,
                    sequence_length=12, dropout=0.0, early_stopping_patience=None,
                    latency_examples=0, eval_batch_size=40)
    return FinetuneConfig(**dict(settings, **overrides))


def test_optimizer_defaults_and_schedule():
    opt = make_optimizer(5e-5, total_steps=100)  # warm-up 10% by default
    assert isinstance(opt, keras.optimizers.AdamW)
    assert opt.weight_decay == pytest.approx(0.01)
    assert opt.global_clipnorm == pytest.approx(1.0)
    schedule = opt._learning_rate  # the schedule (opt.learning_rate is its current value)
    assert schedule.get_config()["warmup_steps"] == 10
    assert float(schedule(10)) == pytest.approx(5e-5)
    assert float(schedule(55)) == pytest.approx(2.5e-5)
    assert float(schedule(100)) == pytest.approx(0.0)
    assert float(schedule(5)) < 5e-5
    cfg = FinetuneConfig(model="m", task="t", workdir="w")
    assert (cfg.epochs, cfg.batch_size, cfg.learning_rate, cfg.resolved_sequence_length()) == (
        3, 32, 5e-5, 128)
    with pytest.raises(ValueError, match="warmup_ratio"):
        FinetuneConfig(model="m", task="t", workdir="w", warmup_ratio=1.5).validate()


def test_previous_run_is_refused_unless_overwrite(tmp_path):
    from minilm_tf.utils import workdir

    wd = tmp_path / "run"
    with workdir.hold(str(wd)) as held:
        clear_previous_run(held.root)  # empty: nothing to refuse
        (wd / "report.json").write_text("{}")
        with pytest.raises(FileExistsError, match="previous run"):
            clear_previous_run(held.root)
        clear_previous_run(held.root, overwrite=True)
    assert not (wd / "report.json").exists()


def test_qa_tasks_run_qa_finetuning_and_get_the_common_report(tmp_path, monkeypatch):
    calls = {}

    def finetune_qa(encoder, config, workdir):
        calls["args"] = (encoder, config, workdir)
        return {"main_metric": "f1", "metrics": {"validation": {"f1": 80.0, "exact_match": 70.0},
                                                 "test": None}}

    monkeypatch.setattr(qa_finetuning, "finetune_qa", finetune_qa)
    backbone = types.SimpleNamespace(weights=[np.zeros((2, 3))], count_params=lambda: 6)
    encoder = types.SimpleNamespace(backbone=backbone, source_dir=None)
    assert task_kind("squad") == "qa" and task_kind("x", "qa") == "qa"
    cfg = FinetuneConfig(model="m", task="squad_v2", workdir=str(tmp_path / "qa"))
    run_finetune(cfg, encoder=encoder)
    assert calls["args"][2] == str(tmp_path / "qa")
    report = json.loads((tmp_path / "qa" / "report.json").read_text())
    assert report["task_kind"] == "qa"
    assert report["metrics"]["validation"]["f1"] == 80.0
    assert report["parameters"] == {"backbone": 6}


def test_tiny_bert_learns_saves_and_reloads(tmp_path, toy_files, tiny_encoder):
    cfg = _toy_config(tmp_path / "run", toy_files)
    report = run_finetune(cfg, encoder=tiny_encoder)
    model, preprocessor, data = report["_model"], report["_preprocessor"], report["_data"]

    # Training accuracy clearly above chance (0.5).
    train_metrics, _ = evaluate_split(model, data.train, preprocessor, 40, data.kind,
                                         ("accuracy",))
    assert train_metrics["accuracy"] >= 0.85, report["history"]

    on_disk = json.loads((tmp_path / "run" / "report.json").read_text())
    assert on_disk["metrics"]["validation"]["accuracy"] == report["validation_metric"]
    assert set(on_disk["metrics"]["test"]) == {"accuracy", "f1"}
    assert on_disk["label_vocab"] == ["negative", "positive"]
    assert on_disk["num_examples"] == {"train": 160, "validation": 40, "test": 40}
    assert on_disk["parameters"]["head"] == 32 * 2 + 2
    assert on_disk["throughput"]["train_examples_per_sec"] > 0
    assert on_disk["best_epoch"] == max(
        on_disk["history"], key=lambda h: h["validation_accuracy"])["epoch"]
    assert on_disk["hyperparameters"]["sequence_length"] == 12
    assert on_disk["saved_model"]["format"] == "keras_hub_preset"

    # The saved task preset reloads with its preprocessor and labels.
    loaded, loaded_pre, labels = load_finetuned(str(tmp_path / "run"))
    assert labels["labels"] == ["negative", "positive"] and labels["kind"] == "classification"
    sample = data.test.take(range(8))
    expected = predict_outputs(model, sample, preprocessor, 40)
    assert loaded_pre is not None and loaded_pre.sequence_length == 12
    got = np.asarray(loaded.predict_on_batch(sample.texts))  # raw strings
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_tiny_electra_learns_with_its_hugging_face_head_and_reloads(tmp_path, toy_files):
    """ELECTRA (no keras-hub classifier): `ElectraTextClassifier` trains,
    leaves its backbone's unused pooler untouched, saves as a preset and
    reloads with the same predictions."""
    from minilm_tf.models.encoders import LoadedEncoder

    keras.utils.set_random_seed(0)
    tokenizer = keras_hub.models.ElectraTokenizer(vocabulary=vocab_path(), lowercase=True)
    backbone = keras_hub.models.ElectraBackbone(
        vocab_size=tokenizer.vocabulary_size(), num_layers=1, num_heads=2, hidden_dim=32,
        intermediate_dim=64, embedding_dim=32, max_sequence_length=64)
    encoder = LoadedEncoder(backbone, tokenizer, "tiny-random-electra", "gelu")
    pooler_before = [np.array(w) for w in encoder.backbone.get_layer("pooled_dense").weights]
    cfg = _toy_config(tmp_path / "run", toy_files, model="tiny-random-electra")
    report = run_finetune(cfg, encoder=encoder)
    model, preprocessor, data = report["_model"], report["_preprocessor"], report["_data"]
    assert type(model).__name__ == "ElectraTextClassifier"
    train_metrics, _ = evaluate_split(model, data.train, preprocessor, 40, data.kind,
                                      ("accuracy",))
    assert train_metrics["accuracy"] >= 0.85, report["history"]
    for before, after in zip(pooler_before, model.backbone.get_layer("pooled_dense").weights):
        np.testing.assert_array_equal(before, np.asarray(after))
    on_disk = json.loads((tmp_path / "run" / "report.json").read_text())
    assert on_disk["saved_model"]["format"] == "keras_hub_preset"
    hidden = encoder.backbone.hidden_dim
    assert on_disk["parameters"]["head"] == hidden * hidden + hidden + hidden * 2 + 2
    loaded, _, _ = load_finetuned(str(tmp_path / "run"))
    assert type(loaded).__name__ == "ElectraTextClassifier"
    sample = data.test.take(range(8))
    expected = predict_outputs(model, sample, preprocessor, 40)
    np.testing.assert_allclose(np.asarray(loaded.predict_on_batch(sample.texts)), expected,
                               atol=1e-4)
    # A plain keras-hub load (minilm_tf imported) gives the same class.
    plain = keras_hub.models.TextClassifier.from_preset(str(tmp_path / "run" / "model"))
    assert type(plain).__name__ == "ElectraTextClassifier"


def test_tiny_bert_mean_pooling_head_learns_and_reloads(tmp_path, toy_files, tiny_encoder):
    """`pooling="mean"`: the logits are the dense layer applied to the mean of
    the real tokens' final states (numpy), padding never changes them, and the
    run trains, saves as a task preset and reloads with the same predictions
    (from raw strings too)."""
    cfg = _toy_config(tmp_path / "run", toy_files, pooling="mean")
    try:
        report = run_finetune(cfg, encoder=tiny_encoder)
    finally:  # the head froze the shared backbone's unused pooler
        tiny_encoder.backbone.get_layer("pooled_dense").trainable = True
    model, preprocessor, data = report["_model"], report["_preprocessor"], report["_data"]
    train_metrics, _ = evaluate_split(model, data.train, preprocessor, 40, data.kind,
                                      ("accuracy",))
    assert train_metrics["accuracy"] >= 0.85, report["history"]
    assert type(model).__name__ == "PooledTextClassifier"
    assert report["saved_model"]["format"] == "keras_hub_preset"

    features = preprocessor(data.test.texts[:8])
    sequence = np.asarray(tiny_encoder.backbone(features)["sequence_output"])
    mask = np.asarray(features["padding_mask"]).astype(np.float64)[:, :, None]
    pooled = (sequence * mask).sum(1) / mask.sum(1)
    kernel, bias = (np.asarray(w) for w in model.get_layer("logits").weights)
    logits = np.asarray(model(features, training=False))
    np.testing.assert_allclose(logits, pooled @ kernel + bias, atol=1e-4)
    padded = {k: np.pad(np.asarray(v), ((0, 0), (0, 5))) for k, v in features.items()}
    np.testing.assert_allclose(np.asarray(model(padded, training=False)), logits, atol=1e-4)

    loaded, loaded_pre, labels = load_finetuned(str(tmp_path / "run"))
    assert type(loaded).__name__ == "PooledTextClassifier" and loaded.pooling == "mean"
    assert labels["labels"] == ["negative", "positive"] and loaded_pre.sequence_length == 12
    np.testing.assert_allclose(np.asarray(loaded.predict_on_batch(data.test.texts[:8])),
                               logits, atol=1e-4)
    with pytest.raises(ValueError, match="pooling"):
        _toy_config(tmp_path / "bad", toy_files, pooling="first").validate()


def test_auto_pooling_follows_the_checkpoints_sentence_pooling():
    from minilm_tf.tasks.classification.model import head_pooling

    def encoder(pooling):
        return types.SimpleNamespace(metadata={"pooling": pooling} if pooling else {})

    assert head_pooling("auto", encoder({"pooling_mode_mean_tokens": True})) == "mean"
    assert head_pooling("auto", encoder({"pooling_mode_max_tokens": True})) == "max"
    assert head_pooling("auto", encoder({"pooling_mode_cls_token": True})) == "cls"
    assert head_pooling("auto", encoder(None)) == "cls"  # not a sentence encoder
    assert head_pooling("cls", encoder({"pooling_mode_mean_tokens": True})) == "cls"
    with pytest.raises(ValueError, match="pooling"):
        head_pooling("first", encoder(None))


def test_task_stage_distillation_follows_the_teacher(tmp_path, toy_files, tiny_encoder):
    """With kd_alpha=1 the student learns a fine-tuned teacher's logits, not
    the labels: a random teacher that disagrees with the labels half the time
    is what the student ends up agreeing with."""
    import export_fixtures
    from minilm_tf.tasks.classification.registry import load_capped_task

    teacher_run = export_fixtures.make_finetune_workdir(
        str(tmp_path / "teacher"), export_fixtures.real_vocab_tokenizer(), seed=3,
        head_scale=30.0, labels=["negative", "positive"])
    teacher, teacher_pre, _ = load_finetuned(teacher_run)
    data = load_capped_task("toy", train_file=toy_files["train"],
                            validation_file=toy_files["dev"], test_file=toy_files["test"])
    teacher.preprocessor = None
    teacher_pred = predict_outputs(teacher, data.train, teacher_pre, 40).argmax(axis=1)
    label_agreement = float(np.mean(teacher_pred == data.train.labels))
    assert 0.2 < label_agreement < 0.8  # the teacher is not the labels

    cfg = _toy_config(tmp_path / "student", toy_files, epochs=8, teacher_run=teacher_run,
                      kd_alpha=1.0, kd_temperature=1.0)
    report = run_finetune(cfg, encoder=tiny_encoder)
    model, preprocessor = report["_model"], report["_preprocessor"]
    student_pred = predict_outputs(model, data.train, preprocessor, 40).argmax(axis=1)
    assert np.mean(student_pred == teacher_pred) >= 0.85
    assert np.mean(student_pred == teacher_pred) > np.mean(student_pred == data.train.labels)
    kd = json.loads((tmp_path / "student" / "report.json").read_text())["task_distillation"]
    assert kd["teacher_on_train"]["accuracy"] == pytest.approx(label_agreement)
    assert (kd["alpha"], kd["temperature"], kd["teacher_class"]) == (1.0, 1.0,
                                                                     "BertTextClassifier")
    # The accuracy logged during training is on the labels.
    assert all(0.0 <= h["train_accuracy"] <= 1.0 for h in report["history"])


def test_task_stage_distillation_refuses_another_tasks_teacher(tmp_path, toy_files,
                                                              tiny_encoder):
    import export_fixtures

    teacher_run = export_fixtures.make_finetune_workdir(
        str(tmp_path / "teacher"), export_fixtures.real_vocab_tokenizer(),
        labels=["a", "b", "c"])
    cfg = FinetuneConfig(
        model="tiny-random-bert", task="toy", workdir=str(tmp_path / "student"),
        train_file=toy_files["train"], validation_file=toy_files["dev"], epochs=1,
        latency_examples=0, teacher_run=teacher_run)
    with pytest.raises(ValueError, match="not a fine-tuning run of this task.*3 outputs"):
        run_finetune(cfg, encoder=tiny_encoder)
    cfg.teacher_run = str(tmp_path / "nothing")
    with pytest.raises(ValueError, match="holds no fine-tuned model"):
        run_finetune(cfg, encoder=tiny_encoder)
    with pytest.raises(ValueError, match="not QA"):
        run_finetune(FinetuneConfig(model="m", task="squad", workdir=str(tmp_path / "qa"),
                                    teacher_run=teacher_run), encoder=tiny_encoder)
    with pytest.raises(ValueError, match="kd_alpha"):
        FinetuneConfig(model="m", task="t", workdir="w", kd_alpha=2.0).validate()


def test_compare_table_and_chart(tmp_path):
    from minilm_tf.tasks import comparison as cmp

    mk = lambda acc, lat, params, seed=0: {  # noqa: E731
        "main_metric": "accuracy", "test_labeled": True,
        "metrics": {"validation": {"accuracy": acc}, "test": {"accuracy": acc}},
        "parameters": {"total": params, "backbone": params - 10},
        "latency_ms_per_example": lat, "hyperparameters": {"seed": seed}}
    rows = cmp.comparison_rows([[mk(0.9, 2.0, 1000)], [mk(0.81, 0.5, 200)]],
                               ["teacher", "s/dir"])
    assert rows[1]["retention_pct"] == pytest.approx(90.0)
    assert rows[1]["speedup"] == pytest.approx(4.0)
    assert rows[0]["split"] == "test" and rows[1]["value_std"] is None
    md = cmp.comparison_markdown(rows, "toy")
    assert "| s/dir | student | 0.8100 | 90.0 |" in md
    cmp.comparison_chart(rows, str(tmp_path / "c.png"), "toy")
    _assert_is_a_chart(tmp_path / "c.png")

    # Several seeds: mean, sample std, retention of the means.
    rows = cmp.comparison_rows(
        [[mk(0.90, 2.0, 1000, 0), mk(0.86, 2.2, 1000, 1)],
         [mk(0.80, 0.5, 200, 0), mk(0.70, 0.5, 200, 1), mk(0.75, 0.5, 200, 2)]],
        ["teacher", "student"])
    assert rows[0]["value"] == pytest.approx(0.88)
    assert rows[1]["value"] == pytest.approx(0.75)
    assert rows[1]["value_std"] == pytest.approx(np.std([0.8, 0.7, 0.75], ddof=1))
    assert rows[1]["retention_pct"] == pytest.approx(100 * 0.75 / 0.88)
    assert rows[1]["seeds"] == [0, 1, 2] and rows[0]["latency_ms_per_example"] == 2.1
    assert "mean ± std over 3 seeds" in cmp.comparison_markdown(rows, "toy")
    assert "0.7500 ± 0.0500" in cmp.comparison_markdown(rows, "toy")
    cmp.comparison_chart(rows, str(tmp_path / "c2.png"), "toy")


def test_tools_finetune_end_to_end(tmp_path, toy_files, tiny_encoder):
    from minilm_tf.models.encoders import save_encoder

    preset = str(tmp_path / "tiny_preset")
    save_encoder(tiny_encoder, preset)
    workdir = str(tmp_path / "cli_run")
    # Sentence-pair regression here (the in-process test covers single-text
    # classification); no validation file: 10% of train is held out.
    train = write_jsonl(tmp_path / "sts.jsonl", sts_rows(80, 3))
    args = ["--model", preset, "--task", "toy_sts", "--task_kind", "regression",
            "--train_file", train, "--workdir", workdir, "--epochs", "1",
            "--batch_size", "32", "--sequence_length", "12", "--max_train_examples", "64",
            "--latency_examples", "16"]
    cmd = [sys.executable, os.path.join(TOOLS_DIR, "finetune.py")] + args
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(open(os.path.join(workdir, "report.json")).read())
    assert report["model"] == preset and report["task"] == "toy_sts"
    assert report["task_kind"] == "regression" and report["label_vocab"] is None
    assert report["num_examples"] == {"train": 64, "validation": 8, "test": 0}
    assert report["metrics"]["test"] is None
    assert set(report["metrics"]["validation"]) == {"pearson", "spearman"}
    assert report["main_metric"] == "pearson"
    assert report["wall_time_sec"] > 0
    assert report["latency_ms_per_example"] > 0
    assert report["latency"]["num_examples"] == 8  # min(16, validation size)
    assert report["throughput"]["train_examples_per_sec"] > 0
    assert os.path.isdir(os.path.join(workdir, "model"))
    assert os.path.isfile(os.path.join(workdir, "labels.json"))
    card = open(os.path.join(workdir, "model", "README.md")).read()  # the model card
    pearson = report["metrics"]["validation"]["pearson"]
    assert "`toy_sts` (regression)" in card and f"| validation | {pearson:.4f} |" in card
    summary = json.loads(proc.stdout[proc.stdout.index("{"):])
    assert summary["report"] == os.path.join(workdir, "report.json")


def _finetune_cmd(preset, toy_files, workdir):
    return [sys.executable, os.path.join(TOOLS_DIR, "finetune.py"),
            "--model", preset, "--task", "toy", "--train_file", toy_files["train"],
            "--validation_file", toy_files["dev"], "--workdir", str(workdir),
            "--epochs", "4", "--batch_size", "8", "--sequence_length", "12",
            "--learning_rate", "5e-3", "--dropout", "0.1", "--early_stopping_patience", "0",
            "--latency_examples", "0"]


def _start_finetune(cmd):
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env)


def _task_weights(workdir):
    return keras_hub.models.TextClassifier.from_preset(
        os.path.join(workdir, "model")).get_weights()


def test_tools_finetune_resumes_after_sigkill_and_sigterm(tmp_path, toy_files, tiny_encoder,
                                                           read_until):
    """A real subprocess killed twice (SIGKILL after an epoch checkpoint, then
    SIGTERM right after resuming) ends with the same model and validation
    history as an uninterrupted run of the same seed: the optimizer, the
    schedule position, the data position and the dropout seed state are all
    restored, and float32 CPU kernels are deterministic here, so only
    summation-order noise may differ (1e-5 relative bounds it)."""
    import signal
    import time

    from minilm_tf.models.encoders import save_encoder

    preset = str(tmp_path / "tiny_preset")
    save_encoder(tiny_encoder, preset)
    straight = tmp_path / "straight"
    proc = _start_finetune(_finetune_cmd(preset, toy_files, straight))
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]
    assert not (straight / "checkpoints").exists()  # removed once the run is complete

    workdir = tmp_path / "interrupted"
    cmd = _finetune_cmd(preset, toy_files, workdir)
    proc = _start_finetune(cmd)
    read_until(proc, "Saved checkpoint")  # end of epoch 1
    time.sleep(np.random.default_rng().uniform(0, 1.0))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (workdir / "report.json").exists()

    proc = _start_finetune(cmd)
    read_until(proc, "resuming from")
    proc.send_signal(signal.SIGTERM)  # preemption: save, then exit 130
    rest, _ = proc.communicate(timeout=600)
    assert proc.returncode == 130, rest[-3000:]
    assert "Interrupted by signal 15" in rest
    state = json.loads((workdir / "checkpoints" / "state.json").read_text())

    proc = _start_finetune(cmd)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]
    assert f"resuming from {state['checkpoint']}: epoch {state['epoch'] + 1}, " \
           f"batch {state['batch']}" in out
    a = json.loads((straight / "report.json").read_text())
    b = json.loads((workdir / "report.json").read_text())
    assert [h["epoch"] for h in b["history"]] == [1, 2, 3, 4]
    for ha, hb in zip(a["history"], b["history"]):
        assert hb["validation_accuracy"] == pytest.approx(ha["validation_accuracy"], abs=1e-9)
    assert b["best_epoch"] == a["best_epoch"]
    for wa, wb in zip(_task_weights(straight), _task_weights(workdir)):
        np.testing.assert_allclose(wb, wa, rtol=1e-5, atol=1e-6)


def test_resume_refuses_changed_settings(tmp_path):
    from minilm_tf.training import resume

    config = config_dict(FinetuneConfig(model="m", task="t", workdir=str(tmp_path)))
    directory = str(tmp_path / "checkpoints")
    resume.check_config(directory, dict(config, learning_rate=1.0))
    # No checkpoint yet (e.g. the first attempt failed on a bad file): a rerun
    # with other settings starts afresh.
    resume.check_config(directory, config)
    (tmp_path / "checkpoints" / resume.STATE_FILE).write_text("{}")  # a checkpoint exists
    resume.check_config(directory, dict(config, eval_batch_size=7, strategy="mirrored"))
    with pytest.raises(ValueError, match=r"learning_rate: 5e-05 -> 0.001.*`overwrite=True`"):
        resume.check_config(directory, dict(config, learning_rate=1e-3))
    with pytest.raises(ValueError, match=r"pooling: 'cls' -> 'mean'"):
        resume.check_config(directory, dict(config, pooling="mean"))
    # A checkpoint saved before `pooling` existed was a cls head: it resumes.
    saved = json.loads((tmp_path / "checkpoints" / resume.CONFIG_FILE).read_text())
    del saved["pooling"]
    (tmp_path / "checkpoints" / resume.CONFIG_FILE).write_text(json.dumps(saved))
    resume.check_config(directory, config)


def test_epoch_order_is_a_fixed_permutation_per_epoch():
    from minilm_tf.training import resume

    a, b = resume.epoch_order(100, 0, 0), resume.epoch_order(100, 0, 1)
    assert sorted(a) == list(range(100)) and not np.array_equal(a, b)
    np.testing.assert_array_equal(a, resume.epoch_order(100, 0, 0))
    assert not np.array_equal(a, resume.epoch_order(100, 1, 0))


def test_tools_compare_with_seeds(tmp_path, toy_files, tiny_encoder):
    from minilm_tf.models.encoders import save_encoder

    preset = str(tmp_path / "tiny_preset")
    save_encoder(tiny_encoder, preset)
    workdir = tmp_path / "cmp"
    cmd = [sys.executable, os.path.join(TOOLS_DIR, "compare.py"),
           "--models", f"{preset},{preset}", "--task", "toy", "--seeds", "3,4",
           "--train_file", toy_files["train"], "--validation_file", toy_files["dev"],
           "--test_file", toy_files["test"], "--workdir", str(workdir), "--epochs", "1",
           "--batch_size", "32", "--sequence_length", "12", "--latency_examples", "8",
           "--jit_compile=false"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, CUDA_VISIBLE_DEVICES=""))
    assert proc.returncode == 0, proc.stderr[-3000:]
    compare = json.loads((workdir / "compare.json").read_text())
    student = compare["rows"][1]
    assert student["seeds"] == [3, 4] and student["split"] == "test"
    seed_reports = [json.loads((workdir / "runs" / "1-tiny_preset" / f"seed{s}" /
                                "report.json").read_text()) for s in (3, 4)]
    values = [r["test_metric"] for r in seed_reports]
    assert student["values"] == values
    assert student["value"] == pytest.approx(np.mean(values))
    assert "mean ± std over 2 seeds" in (workdir / "compare.md").read_text()
    _assert_is_a_chart(workdir / "compare.png")


def _toy_resumable_training(num_examples, hidden_layers):
    """(build, epoch_dataset) for `resume.fit_resumable` on a toy 6-feature
    task: `build()` makes the same compiled model each call (hidden layers
    rebuilt from their configs), `epoch_dataset` gives batches of 8 in
    `epoch_order`."""
    import tensorflow as tf

    from minilm_tf.training import resume

    rng = np.random.default_rng(0)
    x = rng.normal(size=(num_examples, 6)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")

    def build():
        keras.utils.set_random_seed(1)
        layers = [type(layer).from_config(layer.get_config()) for layer in hidden_layers]
        model = keras.Sequential([keras.Input((6,)), *layers, keras.layers.Dense(2)])
        model.compile(keras.optimizers.AdamW(1e-2),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.optimizer.build(model.trainable_variables)
        return model

    def epoch_dataset(epoch, first_batch):
        order = resume.epoch_order(len(x), 0, epoch)[first_batch * 8:]
        return tf.data.Dataset.from_tensor_slices((x[order], y[order])).batch(8), len(order)

    return build, epoch_dataset


def test_fit_resumable_after_sigterm_matches_uninterrupted(tmp_path):
    """In-process: SIGTERM mid-epoch (as the QA and classification paths see
    it) saves, raises RunInterrupted; a fresh model resuming from the
    directory ends where an uninterrupted run ends, dropout included."""
    import signal

    from minilm_tf.training.checkpointing import RunInterrupted
    from minilm_tf.training import resume

    build, epoch_dataset = _toy_resumable_training(96, [keras.layers.Dense(16, activation="relu"),
                                                        keras.layers.Dropout(0.3)])

    class Kill(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if self.model.optimizer.iterations.numpy() == 17:  # epoch 2, batch 5
                os.kill(os.getpid(), signal.SIGTERM)

    straight = build()
    resume.fit_resumable(straight, epoch_dataset, epochs=3, steps_per_epoch=12,
                         directory=str(tmp_path / "a"))

    model = build()
    kill = Kill()
    model.fit = (lambda fit: lambda *a, **k: fit(*a, **dict(
        k, callbacks=k["callbacks"] + [kill])))(model.fit)
    with pytest.raises(RunInterrupted, match="signal 15 in epoch 2"):
        resume.fit_resumable(model, epoch_dataset, epochs=3, steps_per_epoch=12,
                             directory=str(tmp_path / "b"))
    state = json.loads((tmp_path / "b" / "state.json").read_text())
    assert (state["epoch"], state["batch"]) == (1, 6)

    resumed = build()
    result = resume.fit_resumable(resumed, epoch_dataset, epochs=3, steps_per_epoch=12,
                                  directory=str(tmp_path / "b"))
    assert result.examples_trained == 96 - 48 + 96
    assert int(resumed.optimizer.iterations.numpy()) == 36
    for a, b in zip(straight.get_weights(), resumed.get_weights()):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)


def test_fit_resumable_after_the_last_epoch_restores_the_best_weights(tmp_path):
    """Killed after the last epoch's checkpoint but before the report: the
    rerun trains nothing and still ends with the best epoch's weights."""
    from minilm_tf.training import resume

    build, epoch_dataset = _toy_resumable_training(64, [])

    def run(model):
        # The validation metric is best after epoch 1, so the best weights are not the last.
        scores = iter([0.9, 0.5])
        callback = ValidationMetricCallback(lambda: {"accuracy": next(scores, 0.1)},
                                               "accuracy")
        result = resume.fit_resumable(model, epoch_dataset, epochs=2, steps_per_epoch=8,
                                      directory=str(tmp_path), validation=callback)
        return result, callback

    first_model = build()
    run(first_model)
    again = build()
    result, callback = run(again)
    assert result.examples_trained == 0 and callback.best_epoch == 1
    for a, b in zip(first_model.get_weights(), again.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_task_kind_seq2seq_runs_the_generation_tool_with_its_flags():
    # --beam_size is a generation flag: the fine-tuning tool hands the run on
    # to tools/finetune_seq2seq.py, which reports the missing model.
    proc = subprocess.run(
        [sys.executable, os.path.join(TOOLS_DIR, "finetune.py"), "--task_kind", "seq2seq",
         "--task", "bbc_headlines", "--beam_size", "2"],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Missing required settings (Seq2SeqConfig): --model, --workdir." in proc.stderr
    assert "beam_size" not in proc.stderr
