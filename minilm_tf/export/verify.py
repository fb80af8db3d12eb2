"""Checks of an exported SavedModel (run by tools/export_savedmodel.py before
the version directory is published).

1. In a fresh Python process (`tf.saved_model.load`, TensorFlow and
   tensorflow-text only), `serving_default` on raw strings,
   `serving_token_ids` on the Keras tokenizer's ids and `tokenize` give the
   Keras model's outputs / ids (max abs diff reported per output).
2. Bad input: invalid UTF-8 bytes, an empty batch (and, in the text set,
   empty / whitespace-only / 100k-character strings, a batch mixing lengths)
   give well-defined, finite outputs of the right shape.
3. `saved_model_cli show --all` lists the signatures; `saved_model_cli run`
   (through `python -m minilm_tf.export.saved_model_cli`, which registers the
   tensorflow-text ops) runs `serving_default` on literal inputs.
4. A TF Serving `PredictRequest` built with `tensorflow-serving-api` for each
   signature validates against its SignatureDef (input names, dtypes,
   shapes) and, run the way TF Serving's Predict runs it, gives the Keras
   outputs; a request with a wrong input name is rejected by the validator.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Sequence

import numpy as np
import tensorflow as tf

from minilm_tf.export import data as export_data
from minilm_tf.export import savedmodel
from minilm_tf.export import source as src

logger = logging.getLogger(__name__)

# Max abs difference accepted between the SavedModel and the Keras model
# (float32, same graph: differences are summation-order rounding).
DEFAULT_TOLERANCE = 1e-4


def _float_diffs(reference: dict, outputs: dict) -> dict:
    diffs = savedmodel.compare_outputs(reference, outputs)
    return diffs


def _max_float_diff(diffs: dict) -> float:
    values = [v for v in diffs.values() if isinstance(v, float)]
    return max(values) if values else 0.0


def _exact_ok(diffs: dict) -> bool:
    for v in diffs.values():
        if isinstance(v, dict) and ("shape_mismatch" in v or v.get("equal") != v.get("total")):
            return False
    return True


def _cli_literal(values: Sequence[str]) -> str:
    return "[" + ", ".join(json.dumps(v) for v in values) + "]"


def verify_saved_model(
    path: str,
    source: src.ExportSource,
    texts: Sequence[str],
    text_pairs: Sequence[str] | None = None,
    model_name: str = "model",
    tolerance: float = DEFAULT_TOLERANCE,
    run_cli: bool = True,
    check_predict_request: bool = True,
) -> dict:
    """Runs the checks above; returns a JSON-able report with `ok` and
    `failures` (a list of strings)."""
    texts = list(texts)
    pairs = list(text_pairs) if text_pairs is not None else None
    if source.is_pair and pairs is None:
        pairs = list(reversed(texts))
    report: dict = {"num_texts": len(texts), "tolerance": tolerance, "failures": []}
    failures = report["failures"]

    reference = src.keras_reference(source, texts, pairs)
    features = reference["_features"]
    text_in = savedmodel.text_inputs(texts, pairs)
    bad = list(export_data.INVALID_UTF8)
    bad_in = {"text": bad}
    if source.is_pair:
        bad_in["text_pair"] = list(reversed(bad))
    empty_in = {k: np.array([], dtype=object) for k in source.text_inputs}
    calls = {
        "text": (savedmodel.SERVING_DEFAULT, text_in),
        "ids": (savedmodel.TOKEN_IDS_SIGNATURE, features),
        "tokenize": (savedmodel.TOKENIZE_SIGNATURE, text_in),
        "invalid_utf8": (savedmodel.SERVING_DEFAULT, bad_in),
        "invalid_utf8_ids": (savedmodel.TOKENIZE_SIGNATURE, bad_in),
        "empty_batch": (savedmodel.SERVING_DEFAULT, empty_in),
    }
    fresh = savedmodel.run_in_subprocess(path, calls)

    diffs_text = _float_diffs(reference, fresh["text"])
    diffs_ids = _float_diffs(reference, fresh["ids"])
    diffs_between = _float_diffs(fresh["ids"], fresh["text"])
    report["fresh_process"] = {
        "serving_default_vs_keras": diffs_text,
        "serving_token_ids_vs_keras": diffs_ids,
        "serving_default_vs_serving_token_ids": diffs_between,
        "max_abs_diff": max(_max_float_diff(diffs_text), _max_float_diff(diffs_ids)),
    }
    for name, diffs in (("serving_default", diffs_text), ("serving_token_ids", diffs_ids),
                        ("serving_default vs serving_token_ids", diffs_between)):
        if _max_float_diff(diffs) > tolerance:
            failures.append(f"{name}: max abs diff {_max_float_diff(diffs):.3g} > {tolerance}")
        if not _exact_ok(diffs):
            failures.append(f"{name}: non-float outputs differ: {diffs}")
    same_ids = {k: bool(np.array_equal(fresh["tokenize"][k], features[k])) for k in src.ID_INPUTS}
    report["fresh_process"]["tokenize_equals_keras_preprocessor"] = same_ids
    if not all(same_ids.values()):
        failures.append(f"tokenize signature ids differ from the Keras preprocessor: {same_ids}")

    # Bad input: invalid UTF-8 -> replacement char -> [UNK]; empty batch -> [0, ...].
    main = src.main_output(source)
    replaced = [b.decode("utf-8", errors="replace") for b in bad]
    replaced_pairs = None
    if source.is_pair:
        replaced_pairs = [b.decode("utf-8", errors="replace") for b in reversed(bad)]
    expected_ids = src.keras_tokenize(source, replaced, replaced_pairs)
    bad_out = fresh["invalid_utf8"][main]
    report["bad_input"] = {
        "invalid_utf8": {
            "shape": list(bad_out.shape),
            "finite": bool(np.all(np.isfinite(bad_out))),
            "ids_equal_keras_on_replacement_char_text": bool(np.array_equal(
                fresh["invalid_utf8_ids"]["token_ids"], expected_ids["token_ids"])),
        },
        "empty_batch": {k: list(v.shape) for k, v in fresh["empty_batch"].items()},
        "edge_cases_in_text_set": [t[:40] + ("..." if len(t) > 40 else "") for t in texts
                                   if len(t) > 1000 or not t.strip()],
    }
    if not (report["bad_input"]["invalid_utf8"]["finite"] and bad_out.shape[0] == len(bad)):
        failures.append("invalid UTF-8 input did not give finite outputs")
    if fresh["empty_batch"][main].shape[0] != 0:
        failures.append("an empty batch did not give an empty output")
    finite = np.all(np.isfinite(fresh["text"][main]))
    if not finite:
        failures.append("non-finite outputs on the text set")

    if run_cli:
        report["saved_model_cli"] = _check_cli(path, source, texts[:2], (pairs or [])[:2])
        failures.extend(report["saved_model_cli"].pop("failures"))
    if check_predict_request:
        report["predict_request"] = _check_predict_requests(
            path, source, model_name, texts[:4], (pairs or [None])[:4] if pairs else None,
            reference, tolerance)
        failures.extend(report["predict_request"].pop("failures"))
    report["ok"] = not failures
    return export_data.jsonable(report)


def _check_cli(path, source, texts, pairs) -> dict:
    out = {"failures": []}
    show = savedmodel.plain_saved_model_cli(["show", "--dir", path, "--all"])
    found = sorted(set(re.findall(r"signature_def\['([^']+)'\]", show.stdout)))
    out["show_all"] = {"returncode": show.returncode, "signatures": found}
    missing = {savedmodel.SERVING_DEFAULT, savedmodel.TOKEN_IDS_SIGNATURE,
               savedmodel.TOKENIZE_SIGNATURE} - set(found)
    if show.returncode != 0 or missing:
        out["failures"].append(f"saved_model_cli show --all: rc={show.returncode}, "
                               f"missing signatures {sorted(missing)}")
    exprs = f"text={_cli_literal(texts)}"
    if source.is_pair:
        exprs += f";text_pair={_cli_literal(pairs)}"
    args = ["run", "--dir", path, "--tag_set", "serve", "--signature_def",
            savedmodel.SERVING_DEFAULT, "--input_exprs", exprs]
    run = savedmodel.saved_model_cli(args)
    main = src.main_output(source)
    ok = run.returncode == 0 and f"Result for output key {main}" in run.stdout
    out["run"] = {"command": "python -m minilm_tf.export.saved_model_cli " + " ".join(
        a if " " not in a and '"' not in a else "'" + a + "'" for a in args),
        "returncode": run.returncode, "ok": ok,
        "stdout_head": run.stdout[:400]}
    if not ok:
        out["failures"].append(f"saved_model_cli run failed: {run.stderr[-1000:]}")
    return out


def _check_predict_requests(path, source, model_name, texts, pairs, reference,
                            tolerance) -> dict:
    out = {"failures": []}
    try:
        import tensorflow_serving.apis.predict_pb2  # noqa: F401
    except ImportError:
        out["skipped"] = "tensorflow-serving-api is not installed"
        return out
    signature_defs = savedmodel.read_signature_defs(path)
    n = len(texts)
    text_in = savedmodel.text_inputs(texts, pairs)
    features = {k: v[:n] for k, v in reference["_features"].items()}
    loaded = savedmodel.load(path)
    main = src.main_output(source)
    for signature, inputs in ((savedmodel.SERVING_DEFAULT, text_in),
                              (savedmodel.TOKEN_IDS_SIGNATURE, features)):
        request = savedmodel.make_predict_request(model_name, inputs, signature)
        problems = savedmodel.validate_predict_request(signature_defs[signature], request)
        response = savedmodel.predict(loaded, request)
        got = tf.make_ndarray(response.outputs[main])
        diff = float(np.max(np.abs(got - np.asarray(reference[main])[:n]))) if n else 0.0
        out[signature] = {"problems": problems, "response_outputs": sorted(response.outputs),
                          "max_abs_diff": diff}
        if problems:
            out["failures"].append(f"PredictRequest for {signature}: {problems}")
        if diff > tolerance:
            out["failures"].append(f"PredictResponse for {signature}: diff {diff:.3g}")
    wrong = savedmodel.make_predict_request(model_name, {"sentence": texts},
                                            savedmodel.SERVING_DEFAULT)
    wrong_problems = savedmodel.validate_predict_request(
        signature_defs[savedmodel.SERVING_DEFAULT], wrong)
    out["wrong_input_name_rejected"] = bool(wrong_problems)
    if not wrong_problems:
        out["failures"].append("a request with a wrong input name passed validation")
    return out
