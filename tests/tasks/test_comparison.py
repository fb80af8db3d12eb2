"""The generation comparison table against values worked out by hand."""

import statistics

import pytest

from minilm_tf.tasks.comparison import generation_markdown, generation_rows


def _report(rouge1, rouge2, rougeL, bleu, tokens_per_second, seed, parameters, test=True):
    result = {"metrics": {"rouge1": rouge1, "rouge2": rouge2, "rougeL": rougeL, "bleu": bleu}}
    results = {"validation": {"metrics": {k: v / 2 for k, v in result["metrics"].items()}}}
    if test:
        results["test"] = result
    return {"results": results, "config": {"seed": seed}, "parameters": parameters,
            "generation_tokens_per_second": {"test": tokens_per_second,
                                             "validation": tokens_per_second / 2}}


def test_generation_rows_mean_std_retention_and_speedup():
    teacher = [_report(40, 20, 36, 10, 100, 0, 1000), _report(42, 22, 38, 12, 100, 1, 1000)]
    student = [_report(38, 18, 35, 9, 300, 0, 400), _report(40, 20, 35, 9, 200, 1, 400)]
    rows = generation_rows([teacher, student], ["t", "s"])
    t, s = rows
    assert t["split"] == "test" and t["metric"] == "rougeL"
    assert s["metrics"]["rouge1"]["value"] == pytest.approx(39.0)
    assert s["metrics"]["rouge1"]["std"] == pytest.approx(statistics.stdev([38, 40]))
    assert s["metrics"]["rouge1"]["retention_pct"] == pytest.approx(100 * 39 / 41)
    assert s["retention_pct"] == pytest.approx(100 * 35 / 37)
    assert s["metrics"]["bleu"]["retention_pct"] == pytest.approx(100 * 9 / 11)
    assert s["speedup"] == pytest.approx(250 / 100)
    assert s["seeds"] == [0, 1] and s["parameters_total"] == 400
    table = generation_markdown(rows, "headlines")
    assert "mean ± std over 2 seeds" in table
    assert f"39.00 ± {statistics.stdev([38, 40]):.2f} ({100 * 39 / 41:.1f}%)" in table
    assert "| 2.50x |" in table


def test_generation_rows_fall_back_to_validation_without_a_test_split():
    rows = generation_rows([[_report(40, 20, 36, 10, 100, 0, 10)],
                            [_report(20, 10, 18, 5, 100, 0, 5, test=False)]], ["t", "s"])
    assert rows[0]["split"] == "validation"
    assert rows[1]["value"] == pytest.approx(9.0) and rows[1]["retention_pct"] == pytest.approx(50)
