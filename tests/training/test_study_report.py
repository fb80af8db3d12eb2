"""The study's verdict per task against `none/teacher_layers`, on a
hand-made table whose differences, stds and paired seeds are worked out
below by hand."""

import pytest

from minilm_tf.training import study_report as sr


def _task(values, seeds=(0, 1, 2)):
    import statistics
    return {"values": list(values), "seeds": list(seeds), "mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else None,
            "retention_pct": 100.0 * statistics.fmean(values) / 0.80}


def _table(rows):
    return {"teacher": "t", "steps": 10, "tokens_per_row": 100, "seeds": [0, 1, 2],
            "finetune": {}, "metrics": {"a": "accuracy on test"},
            "rows": [{"model": m, "tasks": {"a": t}} for m, t in rows]}


TABLE = _table([
    ("teacher", _task([0.80, 0.80, 0.80])),
    ("none/teacher_layers", _task([0.70, 0.71, 0.72])),      # mean 0.71, std 0.01
    ("minilm/teacher_layers", _task([0.73, 0.74, 0.75])),    # +3.00 pts, std 0.01: beats
    ("hidden_mse/teacher_layers", _task([0.69, 0.72, 0.72])),  # +0.00, ahead at seed 1 only
    ("none/random", _task([0.50, 0.52, 0.54])),              # -19.00, std 0.02: worse
    ("minilmv2/teacher_layers", _task([0.75], seeds=(2,))),  # one seed: paired with 0.72
])


def test_each_student_against_the_baseline():
    v = sr.verdicts(TABLE)["a"]
    assert v["best"] == "minilmv2/teacher_layers"
    assert v["best_retention_pct"] == pytest.approx(100 * 0.75 / 0.80)
    got = {a["model"]: a for a in v["against_baseline"]}
    assert set(got) == {"minilm/teacher_layers", "hidden_mse/teacher_layers", "none/random",
                        "minilmv2/teacher_layers"}
    m = got["minilm/teacher_layers"]
    assert m["points"] == pytest.approx(3.0) and m["stds"] == pytest.approx(3.0)
    assert (m["seeds_ahead"], m["seeds_paired"], m["reading"]) == (3, 3, "beats")
    h = got["hidden_mse/teacher_layers"]  # std 0.0173 > the baseline's 0.01
    assert h["points"] == pytest.approx(0.0, abs=1e-9)
    assert (h["seeds_ahead"], h["reading"]) == (1, "within the seed noise")
    r = got["none/random"]
    assert r["points"] == pytest.approx(-19.0) and r["stds"] == pytest.approx(-9.5)
    assert (r["seeds_ahead"], r["reading"]) == (0, "worse")
    one = got["minilmv2/teacher_layers"]  # its own std is None: the baseline's counts
    assert one["stds"] == pytest.approx(4.0) and (one["seeds_ahead"], one["seeds_paired"]) == (1, 1)


def test_without_seed_std_there_is_no_reading_and_markdown_lists_every_row():
    table = _table([("teacher", _task([0.8], (0,))), ("none/teacher_layers", _task([0.7], (0,))),
                    ("minilm/teacher_layers", _task([0.72], (0,)))])
    v = sr.verdicts(table)["a"]["against_baseline"][0]
    assert v["stds"] is None and v["reading"] == "no seed std to judge by (one seed)"
    table["verdicts"] = sr.verdicts(table)
    md = sr.study_markdown(table)
    assert "- a: best student `minilm/teacher_layers` (90.0% of the teacher)." in md
    assert "  - `minilm/teacher_layers`: +2.00 pts, ahead at 1 of 1 seeds" in md


def test_no_baseline_row_gives_only_the_best_student():
    table = _table([("teacher", _task([0.8])), ("minilm/random", _task([0.6, 0.62, 0.64]))])
    assert sr.verdicts(table) == {"a": {"best": "minilm/random",
                                        "best_retention_pct": pytest.approx(77.5),
                                        "against_baseline": []}}
