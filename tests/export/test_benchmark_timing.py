"""The inference benchmark's interleaved timing: models take turns round by
round and every batch of every round counts."""

import time

import pytest

from minilm_tf.export import benchmark as bm


def _prepared(name, log, seconds_per_example):
    def fn(batch):
        log.append((name, len(batch["token_ids"])))
        time.sleep(seconds_per_example * len(batch["token_ids"]))

    def make(start, stop):
        return {"token_ids": list(range(start, stop))}

    return bm.Prepared({"model": name, "variant": "keras"}, fn, make, n=4)


def test_models_alternate_and_rows_get_per_example_medians():
    log = []
    a, b = _prepared("a", log, 0.002), _prepared("b", log, 0.010)
    bm.time_interleaved([[a], [b]], batch_sizes=(1, 2), rounds=3, warmup=1)
    # batch 1: warm-up a, b (one batch each); then rounds a b, b a, a b of 4 batches
    expected = [("a", 1), ("b", 1)] + [(m, 1) for r in ("ab", "ba", "ab") for m in r
                                      for _ in range(4)]
    expected += [("a", 2), ("b", 2)] + [(m, 2) for r in ("ab", "ba", "ab") for m in r
                                       for _ in range(2)]
    assert log == expected
    for p, per_example_ms in ((a, 2.0), (b, 10.0)):
        for bs, batches in ((1, 4), (2, 2)):
            lat = p.row["latency"][f"batch_{bs}"]
            assert lat["batches"] == batches and lat["rounds"] == 3
            # sleep() never returns early; scheduling adds at most a few ms
            assert per_example_ms <= lat["median_ms_per_example"] < per_example_ms + 4


def test_rounds_must_be_positive():
    with pytest.raises(ValueError, match="rounds must be >= 1"):
        bm.time_interleaved([[_prepared("a", [], 0.0)]], (1,), rounds=0)
