"""SavedModel round trip in a fresh Python process, saved_model_cli show/run
and TF Serving PredictRequest validation, through `verify_saved_model`
(what tools/export_savedmodel.py runs before publishing a version)."""

import os

import pytest
import keras_hub  # noqa: F401
import tensorflow_text  # noqa: F401

from minilm_tf.export import data as export_data  # noqa: E402
from minilm_tf.export import savedmodel  # noqa: E402
from minilm_tf.export import source as src  # noqa: E402
import export_fixtures  # noqa: E402
from minilm_tf.export import verify as vf  # noqa: E402


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("smsub")
    tokenizer = export_fixtures.real_vocab_tokenizer()
    workdir = export_fixtures.make_finetune_workdir(str(root / "run"), tokenizer)
    source = src.load_source(workdir)
    texts = list(export_data.EDGE_CASE_TEXTS)
    result = savedmodel.export_saved_model(
        source, str(root / "exports"), "toy",
        verify=lambda path: vf.verify_saved_model(path, source, texts, model_name="toy"))
    return source, result


def test_round_trip_in_fresh_process_matches_keras(exported):
    _, result = exported
    report = result["verification"]
    assert report["ok"], report["failures"]
    fresh = report["fresh_process"]
    assert fresh["max_abs_diff"] < 1e-5
    for key in ("serving_default_vs_keras", "serving_token_ids_vs_keras",
                "serving_default_vs_serving_token_ids"):
        assert fresh[key]["logits"] < 1e-5
        assert fresh[key]["label"]["equal"] == fresh[key]["label"]["total"] == len(
            export_data.EDGE_CASE_TEXTS)
    assert all(fresh["tokenize_equals_keras_preprocessor"].values())
    bad = report["bad_input"]
    assert bad["invalid_utf8"]["finite"] and bad["invalid_utf8"][
        "ids_equal_keras_on_replacement_char_text"]
    assert bad["empty_batch"]["logits"] == [0, len(export_fixtures.LABELS)]
    # the report names the published directory, not the temporary one
    path = os.path.join(result["path"], savedmodel.EXTRA_DIR, savedmodel.VERIFICATION_FILE)
    assert ".tmp-" not in open(path, encoding="utf-8").read()


def test_saved_model_cli_show_and_run(exported):
    _, result = exported
    cli = result["verification"]["saved_model_cli"]
    assert cli["show_all"]["returncode"] == 0
    assert {savedmodel.SERVING_DEFAULT, savedmodel.TOKEN_IDS_SIGNATURE, savedmodel.TOKENIZE_SIGNATURE} <= set(
        cli["show_all"]["signatures"])
    assert cli["run"]["ok"] and "Result for output key label" in cli["run"]["stdout_head"]
    assert result["path"] in cli["run"]["command"]


def test_predict_requests_validate(exported):
    report = exported[1]["verification"]["predict_request"]  # serving-api is pinned
    for sig in (savedmodel.SERVING_DEFAULT, savedmodel.TOKEN_IDS_SIGNATURE):
        assert report[sig]["problems"] == [] and report[sig]["max_abs_diff"] < 1e-5
    assert report["wrong_input_name_rejected"]

