"""tools/export_savedmodel.py, tools/export_tflite.py and
tools/benchmark_inference.py end to end on tiny models (subprocesses: slow)."""

import json
import os
import subprocess
import sys

import pytest
import keras_hub  # noqa: F401
import tensorflow_text  # noqa: F401

import export_fixtures  # noqa: E402
from locations import REPO_ROOT, TOOLS_DIR  # noqa: E402



def _tool(name, *args, timeout=600):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO_ROOT)
    return subprocess.run([sys.executable, os.path.join(TOOLS_DIR, name), *args],
                          capture_output=True, text=True, timeout=timeout, env=env)


def _json_out(proc):
    assert proc.returncode == 0, proc.stderr[-3000:]
    start = proc.stdout.index("{")
    return json.loads(proc.stdout[start:])


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("tools")
    tokenizer = export_fixtures.real_vocab_tokenizer()
    preset = export_fixtures.save_tiny_encoder_preset(str(root / "student"), tokenizer)
    workdir = export_fixtures.make_finetune_workdir(
        str(root / "rt_run"), tokenizer, labels=["rotten", "fresh"], task="rotten_tomatoes",
        head_scale=30.0, hyperparameters={"max_eval_examples": 24, "seed": 0})
    texts = root / "texts.txt"
    texts.write_text("a fine film\nthe worst\n\nCafé 東京 🤖\n" * 5, encoding="utf-8")
    return {"root": root, "preset": preset, "workdir": workdir, "texts": str(texts)}


@pytest.mark.slow
def test_export_savedmodel_tool(models):
    export_dir = str(models["root"] / "exports")
    args = ["--model", models["preset"], "--export_dir", export_dir,
            "--num_verify_examples", "0"]
    first = _json_out(_tool("export_savedmodel.py", *args))
    assert first["version"] == 1 and first["model_name"] == "student"
    assert first["kind"] == "encoder" and first["verification"]["ok"]
    assert first["verification"]["max_abs_diff_vs_keras"] < 1e-5
    assert os.path.exists(first["verification"]["report"])
    again = _tool("export_savedmodel.py", *args, "--version", "1")
    assert again.returncode == 1 and "never overwritten" in again.stderr
    cls = _json_out(_tool("export_savedmodel.py", "--model", models["workdir"],
                          "--export_dir", export_dir, "--num_verify_examples", "8"))
    assert cls["model_name"] == "rt_run" and cls["labels"] == ["rotten", "fresh"]
    assert "rotten_tomatoes" in cls["verification"]["texts"]
    assert cls["verification"]["ok"]


@pytest.mark.slow
def test_export_tflite_tool(models):
    out_dir = str(models["root"] / "tflite")
    summary = _json_out(_tool(
        "export_tflite.py", "--model", models["workdir"], "--output_dir", out_dir,
        "--modes", "float32,dynamic,int8", "--latency_examples", "3",
        "--calibration_examples", "16"))
    report = json.load(open(summary["report"], encoding="utf-8"))
    f32 = report["models"]["float32"]
    assert f32["all_texts"]["max_abs_diff"] < 1e-4
    assert f32["validation"]["num_examples"] == 24  # the fine-tuning run's subsample
    assert f32["validation"]["metrics"]["drop"]["accuracy"] == 0.0
    assert report["models"]["int8"]["integer_only"] is not None
    assert report["calibration_texts"].startswith("rotten_tomatoes:train")
    for mode in ("float32", "dynamic", "int8"):
        assert os.path.exists(report["models"][mode]["file"])
        assert report["models"][mode]["all_texts"]["latency_batch1"]["median_ms"] > 0
    refused = _tool("export_tflite.py", "--model", models["workdir"], "--output_dir", out_dir,
                    "--modes", "float32")
    assert refused.returncode == 1 and "exist" in refused.stderr
    tok = _json_out(_tool(
        "export_tflite.py", "--model", models["preset"], "--output_dir", out_dir + "_tok",
        "--modes", "float32", "--with_tokenizer", "--eval_file", models["texts"],
        "--latency_examples", "3"))
    row = tok["models"]["float32"]
    assert row["max_abs_diff"] < 1e-4 and row["min_cosine"] > 0.9999
    assert row["token_ids_identical"].split("/")[0] == row["token_ids_identical"].split("/")[1]


def test_export_tflite_name_cannot_escape_output_dir(tmp_path):
    preset = export_fixtures.save_tiny_encoder_preset(str(tmp_path / "student"),
                                              export_fixtures.real_vocab_tokenizer())
    texts = tmp_path / "texts.txt"
    texts.write_text("a fine film\nthe worst\n", encoding="utf-8")
    out_dir = tmp_path / "a" / "tflite"
    proc = _tool("export_tflite.py", "--model", preset, "--output_dir", str(out_dir),
                 "--name", "../../x", "--modes", "float32", "--eval_file", str(texts),
                 "--latency_examples", "1")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: Invalid --name '../../x': give a file name prefix without path separators "
        "or a leading '.'; the files go in --output_dir.")
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith("x.")]


@pytest.mark.slow
def test_benchmark_inference_tool(models):
    out = str(models["root"] / "bench.json")
    proc = _tool("benchmark_inference.py", "--teacher", models["preset"],
                 "--student", "random:1x16x2", "--texts_file", models["texts"],
                 "--num_examples", "8", "--batch_sizes", "1,4", "--sequence_length", "16",
                 "--variants", "keras,savedmodel,savedmodel_text,tflite_float32",
                 "--output_json", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ms/ex b=1" in proc.stdout
    result = json.load(open(out, encoding="utf-8"))
    assert {(r["model"], r["variant"]) for r in result["rows"]} == {
        (m, v) for m in ("teacher", "student")
        for v in ("keras", "savedmodel", "savedmodel_text", "tflite_float32")}
    for row in result["rows"]:
        assert row["max_abs_diff_vs_keras"] < 1e-4, row
        assert row["latency"]["batch_1"]["median_ms_per_example"] > 0
        assert row["latency"]["batch_4"]["rounds"] == 5
