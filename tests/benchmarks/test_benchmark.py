"""tools/benchmark.py on a tiny random teacher: fields, positive numbers, the ratio;
beside the PyTorch reference when the torch environment exists."""

import json
import os
import statistics
import subprocess
import sys
import time

import pytest

from minilm_tf.ops import native
from locations import TOOLS_DIR
from torch_env import TORCH_PYTHON, needs_torch_env

TOOL = os.path.join(TOOLS_DIR, "benchmark.py")
PHASES = ("step", "teacher", "student")


def _run(tmp_path, *extra):
    out = str(tmp_path / "bench.json")
    cmd = [sys.executable, TOOL, "--teacher", "tiny", "--student", "1x24x12",
           "--batch_size", "4", "--seq_len", "16", "--warmup_steps", "1", "--steps", "3",
           "--threads", "1", "--output_json", out, *extra]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    wall_ms = 1e3 * (time.perf_counter() - start)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(out, encoding="utf-8") as f:
        report = json.load(f)
    # The timings are real: all the timed steps fit in the process's lifetime.
    timed = sum(sum(r[name]["times_ms"]) for r in report["results"] for name in PHASES)
    assert 0 < timed < wall_ms
    return report, proc.stdout


def _check_result(result, tokens, real_tokens):
    for name in PHASES:
        stats = result[name]
        times = stats["times_ms"]
        assert len(times) == 3 and min(times) > 0
        # The statistics are those of the raw samples.
        assert (stats["min_ms"], stats["median_ms"], stats["max_ms"]) == pytest.approx(
            (min(times), statistics.median(times), max(times)), rel=1e-6)
        assert stats["cpu_median_ms"] >= 0
        assert stats["tokens_per_s"] == pytest.approx(tokens / stats["median_ms"] * 1e3, rel=1e-3)
        assert stats["real_tokens_per_s"] == pytest.approx(
            real_tokens / stats["median_ms"] * 1e3, rel=1e-3)
    a, b, c = (result[name]["median_ms"] for name in PHASES)
    # The full step runs the teacher forward and much more.
    assert a > b
    assert result["overhead_ratio"] == pytest.approx(a / (b + c), rel=1e-3)
    assert result["overhead_ms"] == pytest.approx(a - (b + c), abs=1e-2)
    matmuls = result["matmuls"]
    assert min(matmuls["gflops_by_shape"].values()) > 0
    assert matmuls["achieved_gflops"] == pytest.approx(matmuls["step_flops"] / 1e9 / (a / 1e3), rel=1e-2)
    assert matmuls["fraction_of_peak"] == pytest.approx(
        matmuls["achieved_gflops"] / matmuls["peak_gflops"], rel=1e-2, abs=1e-3)
    memory = result["memory"]
    assert memory["peak_rss_mb"] > 0
    assert set(PHASES) <= set(memory["phase_peak_rss_mb"]) <= set(PHASES) | {"compared"}
    phase_peaks = [v for v in memory["phase_peak_rss_mb"].values() if v is not None]
    assert all(memory["peak_rss_mb"] >= v - 1e-6 for v in phase_peaks)
    assert "tf_memory_info" in memory
    assert result["trained_params"] > 0
    assert result["loss_first"] > 0 and result["loss_last"] > 0


def test_benchmark_two_precisions_padding_and_profile(tmp_path):
    report, stdout = _run(tmp_path, "--precisions", "float32,mixed_bfloat16",
                          "--padding_fraction", "0.25", "--profile_steps", "1",
                          "--jit_compile=false",
                          "--profile_dir", str(tmp_path / "profile"))
    config = report["config"]
    assert config["tokens_per_step"] == 4 * 16
    assert config["real_tokens_per_step"] == 4 * 12
    assert config["threads"] == 1 and config["jit_compile"] == "false"
    assert [r["precision"] for r in report["results"]] == ["float32", "mixed_bfloat16"]
    assert "cpu_flags" in report["environment"]
    first, second = report["results"]
    # A process-wide high-water mark never goes down.
    assert second["memory"]["peak_rss_mb"] >= first["memory"]["peak_rss_mb"]
    for result in report["results"]:
        _check_result(result, 64, 48)
        assert result["relation_loss"] == ("native" if native.relation_kl_op() else "xla")
        profile = result["profile"]
        assert profile["op_self_ms_per_step"] > 0
        assert profile["top_op_types"] and profile["top_ops"]
        parts = {p["part"] for p in profile["by_part"]}
        assert {"teacher forward", "student forward", "backward", "optimizer"} <= parts
    # The table names each measurement and the ratio.
    assert "(a) distillation step" in stdout and "overhead a/(b+c)" in stdout


# Slow: the XLA relation loss is checked against numpy in tests/losses; this runs it in the tool.
@pytest.mark.slow
def test_benchmark_minilmv2_with_xla(tmp_path):
    report, _ = _run(tmp_path, "--objective", "minilmv2", "--num_relation_heads", "4",
                     "--jit_compile=true")
    assert report["config"]["objective"] == "minilmv2"
    assert report["config"]["num_relation_heads"] == 4
    (result,) = report["results"]
    assert result["jit_compile"] is True
    assert result["relation_loss"] == "xla"  # the custom op cannot be XLA-compiled
    _check_result(result, 64, 64)


def test_benchmark_compares_objectives_in_one_process(tmp_path):
    report, stdout = _run(tmp_path, "--objective", "minilm", "--compare_objective", "minilmv2",
                          "--num_relation_heads", "4", "--jit_compile=false")
    (result,) = report["results"]
    _check_result(result, 64, 64)
    other = result["compared"]
    assert other["objective"] == "minilmv2" and len(other["times_ms"]) == 3
    assert other["tokens_per_s_ratio"] == pytest.approx(
        result["step"]["median_ms"] / other["median_ms"], rel=1e-3)
    assert other["tokens_per_s_ratio_cpu"] == pytest.approx(
        result["step"]["cpu_median_ms"] / other["cpu_median_ms"], rel=1e-3)
    assert result["overhead_ratio_cpu"] == pytest.approx(
        result["step"]["cpu_median_ms"]
        / (result["teacher"]["cpu_median_ms"] + result["student"]["cpu_median_ms"]), rel=1e-3)
    assert "(a2) step, compared" in stdout and "minilmv2, fast paths on, runs at" in stdout


# Slow: the comparison code path is test_benchmark_compares_objectives_in_one_process's;
# the fast paths themselves are tests/layers/test_fast_paths.py.
@pytest.mark.slow
def test_benchmark_compares_fast_paths_in_one_process(tmp_path):
    report, stdout = _run(tmp_path, "--compare_fast_paths", "--jit_compile=false")
    (result,) = report["results"]
    _check_result(result, 64, 64)
    assert result["fast_paths"] is True  # auto, without XLA
    other = result["compared"]
    assert other["objective"] == "minilm" and other["fast_paths"] is False
    # The same step: both variants start from the same weights and batch, and the fast
    # paths compute the same function (up to dropout's random numbers).
    assert "minilm, fast paths off, runs at" in stdout


def test_benchmark_rejects_bad_student_shape(tmp_path):
    cmd = [sys.executable, TOOL, "--teacher", "tiny", "--student", "3x384"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert proc.returncode == 1 and "LAYERSxHIDDENxHEADS" in proc.stderr


def test_step_flops_match_the_reference_scripts_count():
    """all-MiniLM-L6-v2 -> 3x384x12 at 32x128: the shared bench scripts print
    step_gflop=186.0 for v1; counted here per matmul, written out by hand."""
    from minilm_tf import MiniLMDistiller, build_student, load_teacher
    from minilm_tf.benchmarks import step_matmul_flops

    teacher = load_teacher("all-minilm-l6-v2")
    student = build_student(teacher, num_layers=3, hidden_dim=384, num_heads=12)
    b, t, d, i = 32, 128, 384, 1536
    layer = 2 * (4 * d * d + 2 * d * i + 2 * t * d)  # Q,K,V,O + FFN up/down + QK^T, AV
    for objective, relations in (("minilm", 2), ("minilmv2", 3)):
        distiller = MiniLMDistiller(teacher, student, objective=objective)
        last = 2 * (3 * d * d + relations * t * d)  # Q, K, V + the relation matmuls
        want = b * t * ((5 * layer + last) + 3 * (2 * layer + last))
        got = step_matmul_flops(distiller, b, t)
        assert got == want
        if objective == "minilm":
            assert round(got / 1e9, 1) == 186.0


def test_reference_result_lines_parse():
    from minilm_tf.benchmarks.reference import distillation_reference_arguments, parse_result

    out = ("step   0 [warmup] 10.0 ms\nRESULT torch malloc=system loss_impl=lean version=v2 "
           "bf16=0 threads=2 B=32 T=128 steps=4 median_ms=3740.1 tokens_per_s=1095\n")
    fields = parse_result(out, "RESULT torch")
    assert fields["tokens_per_s"] == "1095" and fields["version"] == "v2"
    with pytest.raises(ValueError, match="RESULT torch_finetune"):
        parse_result(out, "RESULT torch_finetune")
    args = distillation_reference_arguments(32, 128, 5, 2, 2, "minilmv2", True, 48)
    assert args == ["--batch", 32, "--seq", 128, "--steps", 5, "--warmup", 2, "--threads", 2,
                    "--version", "v2", "--loss-impl", "lean", "--relation-heads", 48, "--bf16"]


@needs_torch_env
def test_the_distillation_reference_runs_beside_ours_for_each_objective(tmp_path):
    out = str(tmp_path / "bench.json")
    proc = subprocess.run(
        [sys.executable, TOOL, "--batch_size", "4", "--seq_len", "16", "--steps", "2",
         "--warmup_steps", "1", "--threads", "1", "--objective", "minilm",
         "--compare_objective", "minilmv2", "--padding_fraction", "0.2",
         "--reference_python", TORCH_PYTHON, "--output_json", out],
        capture_output=True, text=True, timeout=900,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES=""))
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.load(open(out))
    rows = {r["objective"]: r for r in report["reference"]}
    assert set(rows) == {"minilm", "minilmv2"}
    result = report["results"][0]
    assert rows["minilm"]["tokens_per_s"] == result["step"]["tokens_per_s"]
    assert rows["minilmv2"]["tokens_per_s"] == result["compared"]["tokens_per_s"]
    for objective, row in rows.items():
        assert "B=4 T=16" in row["reference"]
        assert row["ratio"] == pytest.approx(row["tokens_per_s"] / row["reference_tokens_per_s"])
        assert f"{objective}: {row['tokens_per_s']:.0f} tokens/s" in proc.stdout
    assert "version=v2" in rows["minilmv2"]["reference"] and "lean" in rows["minilmv2"]["reference"]
