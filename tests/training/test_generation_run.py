"""run_seq2seq end to end on a tiny preset, resume, and the SavedModel export."""

import json
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from minilm_tf.models.encoders import save_encoder  # noqa: E402
from minilm_tf.models.loaded_encoder import LoadedEncoder  # noqa: E402
from minilm_tf.tasks.generation.decoding import generate_texts  # noqa: E402
from minilm_tf.training import seq2seq  # noqa: E402
from locations import TOOLS_DIR  # noqa: E402

WORDS = ["the", "cat", "sat", "on", "mat", "a", "dog", "ran", "to", "park", "big", "red"]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, "."]


@pytest.fixture(scope="module")
def preset(tmp_path_factory):
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=len(VOCAB), num_layers=2, num_heads=4, hidden_dim=32,
        intermediate_dim=64, max_sequence_length=32)
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=VOCAB, lowercase=True)
    path = str(tmp_path_factory.mktemp("preset"))
    save_encoder(LoadedEncoder(backbone, tokenizer, "tiny", "gelu_approximate"), path)
    return path


def copy_files(directory, n=(96, 16, 16)):
    rng = np.random.default_rng(0)
    paths = []
    for name, count in zip(("train", "validation", "test"), n):
        path = os.path.join(directory, f"{name}.jsonl")
        with open(path, "w", encoding="utf-8") as f:
            for _ in range(count):
                words = " ".join(rng.choice(WORDS, size=rng.integers(2, 5)))
                f.write(json.dumps({"source": words, "target": words}) + "\n")
        paths.append(path)
    return paths


def config(preset, tmp_path, **kw):
    train, val, test = copy_files(str(tmp_path))
    base = dict(model=preset, task="copy", workdir=str(tmp_path / "run"), train_file=train,
                validation_file=val, test_file=test, max_source_length=8,
                max_target_length=8, epochs=1, batch_size=16, learning_rate=1e-3,
                num_samples=4, beam_size=2, no_repeat_ngram_size=0, log_every=100)
    base.update(kw)
    return seq2seq.Seq2SeqConfig(**base)


@pytest.fixture(scope="module")
def finished_run(preset, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("run")
    cfg = config(preset, tmp)
    return cfg, seq2seq.run_seq2seq(cfg, log_fn=lambda m: None)


def test_run_writes_report_samples_and_model(finished_run):
    cfg, report = finished_run
    with open(os.path.join(cfg.workdir, seq2seq.REPORT_FILE), encoding="utf-8") as f:
        written = json.load(f)
    for split in ("validation", "test"):
        m = written["results"][split]["metrics"]
        assert set(m) == {"rouge1", "rouge2", "rougeL", "bleu"}
        assert all(0.0 <= v <= 100.0 for v in m.values())
        assert written["results"][split]["tokens_per_second"] > 0
    assert written["decoding"]["beam_size"] == 2
    assert written["data"]["sizes"] == {"train": 96, "validation": 16, "test": 16}
    card = open(os.path.join(report["model_dir"], "README.md")).read()  # the model card
    assert "`copy` (seq2seq)" in card
    assert f"{written['results']['test']['metrics']['rougeL']:.4f}" in card
    with open(os.path.join(cfg.workdir, seq2seq.SAMPLES_FILE), encoding="utf-8") as f:
        samples = [json.loads(line) for line in f]
    assert len(samples) == 8 and {s["split"] for s in samples} == {"validation", "test"}
    # The saved model predicts what the run reported.
    model, packer, decoding = seq2seq.load_generation_model(report["model_dir"])
    sources = [s["source"] for s in samples[:4]]
    assert generate_texts(model, packer, sources, decoding).texts == \
        [s["prediction"] for s in samples[:4]]


def test_finished_workdir_is_refused_without_overwrite(finished_run):
    cfg, _ = finished_run
    with pytest.raises(FileExistsError, match="overwrite=True"):
        seq2seq.run_seq2seq(cfg, log_fn=lambda m: None)


@pytest.mark.slow  # two runs, about 30 s
def test_rerun_resumes_from_the_checkpoint(preset, tmp_path):
    cfg = config(preset, tmp_path)
    first = seq2seq.run_seq2seq(cfg, log_fn=lambda m: None)
    # As if killed after training, before the report: the rerun trains nothing.
    os.remove(os.path.join(cfg.workdir, seq2seq.REPORT_FILE))
    logs = []
    second = seq2seq.run_seq2seq(cfg, log_fn=logs.append)
    assert any("resuming from" in line for line in logs)
    assert second["train"]["examples_trained_this_process"] == 0
    assert second["results"]["test"]["metrics"] == first["results"]["test"]["metrics"]
    os.remove(os.path.join(cfg.workdir, seq2seq.REPORT_FILE))
    changed = config(preset, tmp_path, learning_rate=5e-4)
    with pytest.raises(ValueError, match="learning_rate"):
        seq2seq.run_seq2seq(changed, log_fn=lambda m: None)


@pytest.fixture(scope="module")
def exported(finished_run, tmp_path_factory):
    from minilm_tf.export.generation import export_generation

    _, report = finished_run
    model, packer, decoding = seq2seq.load_generation_model(report["model_dir"])
    path = export_generation(model, packer.tokenizer, str(tmp_path_factory.mktemp("sm")),
                             packer.max_source_length, decoding)
    return model, packer, decoding, path


def test_saved_model_generate_equals_keras_decode(exported):
    from minilm_tf.export.generation import verify_in_subprocess
    from minilm_tf.tasks.generation.decoding import decode

    model, packer, decoding, path = exported
    sources = ["the cat sat", "a big red dog ran to the park on the mat",  # truncated
               "dog", "zebra"]  # out-of-vocabulary
    served = verify_in_subprocess(path, sources + ["caf\xe9 dog"])
    keras_side = generate_texts(model, packer, sources, decoding)
    assert served["predictions"][:4] == keras_side.texts
    ids, mask, _ = packer.pack_sources(sources)
    out = decode(model, ids, mask, decoding, start_id=packer.start_id, end_id=packer.end_id,
                 pad_id=packer.pad_id)[0].numpy()
    np.testing.assert_array_equal(np.array(served["token_ids"][:4]), out)
    assert isinstance(served["predictions"][4], str)  # defined output for any text


def test_saved_model_replaces_invalid_utf8(exported):
    """Invalid bytes become U+FFFD (then [UNK]) instead of failing the request."""
    path = exported[3]
    code = ("import sys, tensorflow as tf, tensorflow_text\n"
            "m = tf.saved_model.load(sys.argv[1])\n"
            "a = m.signatures['generate'](texts=tf.constant([b'dog \\xff', b'dog \\xef\\xbf\\xbd']))\n"
            "p = a['predictions'].numpy(); print(p[0] == p[1])\n")
    done = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "True"


@pytest.mark.slow
def test_tool_end_to_end(preset, tmp_path):
    train, val, test = copy_files(str(tmp_path), n=(32, 8, 8))
    done = subprocess.run(
        [sys.executable, os.path.join(TOOLS_DIR, "finetune_seq2seq.py"),
         f"--model={preset}", "--task=copy", f"--workdir={tmp_path / 'w'}",
         f"--train_file={train}", f"--validation_file={val}", f"--test_file={test}",
         "--max_source_length=8", "--max_target_length=8", "--epochs=1",
         "--export_saved_model"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout[done.stdout.index("{"):])
    assert summary["saved_model"]["matches_keras"] is True
    assert set(summary["metrics"]) == {"validation", "test"}


@pytest.mark.slow  # a TensorFlow start in a subprocess
def test_tool_reports_bad_input_in_one_line(preset, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"source": "the cat"}\n', encoding="utf-8")
    done = subprocess.run(
        [sys.executable, os.path.join(TOOLS_DIR, "finetune_seq2seq.py"),
         f"--model={preset}", "--task=x", f"--workdir={tmp_path / 'w'}",
         f"--train_file={bad}"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert "error: " in done.stderr and "missing key(s) ['target']" in done.stderr


# Slow: tools/compare.py's seeds and table are test_finetune.py::test_tools_compare_with_seeds;
# this adds the generation metrics through it.
@pytest.mark.slow
def test_compare_tool_gives_generation_retention(preset, tmp_path):
    """tools/compare.py --task_kind seq2seq: teacher and a 1-layer student, each
    fine-tuned; the table's scores and retention are the runs' own reports."""
    keras.utils.set_random_seed(1)
    student = str(tmp_path / "student")
    save_encoder(LoadedEncoder(keras_hub.models.BertBackbone(
        vocabulary_size=len(VOCAB), num_layers=1, num_heads=4, hidden_dim=32,
        intermediate_dim=64, max_sequence_length=32),
        keras_hub.models.BertTokenizer(vocabulary=VOCAB, lowercase=True), "tiny",
        "gelu_approximate"), student)
    train, val, test = copy_files(str(tmp_path), n=(32, 8, 8))
    workdir = tmp_path / "compare"
    done = subprocess.run(
        [sys.executable, os.path.join(TOOLS_DIR, "compare.py"), "--task_kind", "seq2seq",
         f"--models={preset},{student}", "--task=copy", f"--workdir={workdir}",
         f"--train_file={train}", f"--validation_file={val}", f"--test_file={test}",
         "--max_source_length=8", "--max_target_length=8", "--epochs=2",
         "--learning_rate=1e-3"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads((workdir / "compare.json").read_text())["rows"]
    reports = [json.loads(open(os.path.join(r["workdirs"][0], seq2seq.REPORT_FILE)).read())
               for r in rows]
    assert [r["role"] for r in rows] == ["teacher", "student"]
    assert rows[1]["parameters_total"] < rows[0]["parameters_total"]
    for name in ("rouge1", "rouge2", "rougeL", "bleu"):
        teacher, student_value = (rep["results"]["test"]["metrics"][name] for rep in reports)
        assert rows[1]["metrics"][name]["value"] == pytest.approx(student_value)
        if teacher > 0:
            assert rows[1]["metrics"][name]["retention_pct"] == \
                pytest.approx(100 * student_value / teacher)
    speeds = [rep["generation_tokens_per_second"]["test"] for rep in reports]
    assert rows[1]["speedup"] == pytest.approx(speeds[1] / speeds[0])
    table = (workdir / "compare.md").read_text()
    assert f"{rows[1]['metrics']['rougeL']['value']:.2f}" in table and "ROUGE-L" in table
    assert (workdir / "compare.png").stat().st_size > 0
