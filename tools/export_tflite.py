r"""Convert a fine-tuned classifier or a sentence encoder to TFLite, check the
result against the Keras model, and write report.json.

Examples:

  # Fine-tuned classifier, float32 + dynamic-range int8 + full-integer int8:
  python tools/export_tflite.py --model runs/rt_student --output_dir tflite/rt_student \
      --modes float32,dynamic,int8

  # Sentence encoder with the tokenizer inside (strings in), float16:
  python tools/export_tflite.py --model all-minilm-l6-v2 --output_dir tflite/minilm \
      --modes float32,float16 --with_tokenizer

Modes: float32; dynamic (dynamic-range: int8 weights, float activations);
float16 (float16 weights); int8 (full-integer: int8 weights and activations,
calibrated on --calibration_examples texts of the task's train split, or of
--calibration_file / --calibration_task). int8 takes token ids (the TFLite
calibrator has no kernels for the tokenizer's custom ops).

--with_tokenizer puts tf_text.FastBertNormalizer + FastWordpieceTokenizer in
the model (tensorflow-text TFLite custom ops; run it with
ai_edge_litert.interpreter.InterpreterWithCustomOps(
custom_op_registerers=tf_text.tflite_registrar.SELECT_TFTEXT_OPS)).

Each file <output_dir>/<name>.<mode>[.tokenizer].tflite is checked on the
validation texts (--max_eval_examples) plus built-in edge cases: max abs diff
of logits (embeddings) vs Keras, predicted-label agreement and the task
metric of both (classifiers), cosine similarity (encoders), token-id
agreement with the Keras tokenizer (--with_tokenizer), and median batch-1
latency with --num_threads threads at the model's sequence length.
Everything goes to <output_dir>/report.json (also printed).
"""

import json
import os
import sys
import time

from absl import app, flags, logging

import _cli  # tools/_cli.py: one error line for bad flags

FLAGS = flags.FLAGS

flags.DEFINE_string("model", None, "A tools/finetune.py workdir (or its model/ dir), or an "
                    "encoder spec (all-minilm-l6-v2, a Hugging Face dir, a keras-hub preset "
                    "dir).")
flags.DEFINE_string("output_dir", None, "Directory for the .tflite files and report.json.")
flags.DEFINE_string("name", None, "File name prefix (default: from --model).")
flags.DEFINE_list("modes", ["float32", "dynamic"], "Any of float32, dynamic, float16, int8.")
flags.DEFINE_bool("with_tokenizer", False, "Strings in: tokenizer inside the model "
                  "(tensorflow-text custom ops). Not with int8.")
flags.DEFINE_integer("sequence_length", None, "Tokens per example (default: the "
                     "fine-tuning length; encoders: sentence-transformers max_seq_length, "
                     "else 128).")
flags.DEFINE_list("pooling", None, "Encoder pooling override (mean, cls, max, mean_sqrt_len).")
flags.DEFINE_enum("normalize", "auto", ["auto", "true", "false"], "Encoder L2 normalisation.")
flags.DEFINE_string("eval_task", None, "Task whose validation split is used for the checks "
                    "(default: the fine-tuning task; encoders: rotten_tomatoes).")
flags.DEFINE_string("eval_file", None, "Or a text file (one text per line).")
flags.DEFINE_integer("max_eval_examples", 500, "Validation examples checked (seeded subset).")
flags.DEFINE_string("calibration_task", None, "Task whose train split calibrates int8 "
                    "(default: the eval task).")
flags.DEFINE_string("calibration_file", None, "Or a text file for int8 calibration.")
flags.DEFINE_integer("calibration_examples", 200, "Calibration examples for int8.")
flags.DEFINE_integer("num_threads", 1, "Interpreter threads for the latency measurement.")
flags.DEFINE_integer("latency_examples", 100, "Examples timed one by one (batch 1).")
flags.DEFINE_bool("overwrite", False, "Replace existing .tflite files / report.json.")


def _name(model: str) -> str:
    import re

    path = os.path.normpath(model)
    name = os.path.basename(path)
    if name == "model" and os.path.isdir(path):
        name = os.path.basename(os.path.dirname(path))
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "model"


def _check_name(name: str) -> None:
    """Refuses a --name that is not a plain file-name prefix (it would write
    outside --output_dir, like ../../x, or make hidden files)."""
    separators = [sep for sep in (os.sep, os.altsep) if sep]
    if not name or name.startswith(".") or any(sep in name for sep in separators):
        raise ValueError(
            f"Invalid --name {name!r}: give a file name prefix without path separators "
            "or a leading '.'; the files go in --output_dir."
        )


def run(f=FLAGS) -> dict:
    from minilm_tf.utils import workdir as workdirs
    from minilm_tf.export import source as src
    from minilm_tf.export import tflite as tl

    t_start = time.perf_counter()
    bad = [m for m in f.modes if m not in tl.MODES]
    if bad:
        raise ValueError(f"Unknown modes {bad}; choose from {tl.MODES}.")
    if f.with_tokenizer and "int8" in f.modes:
        raise ValueError("int8 needs token ids in (the calibrator cannot run the tokenizer's "
                         "custom ops): run int8 without --with_tokenizer, separately.")
    if f.name:  # empty: the default name
        _check_name(f.name)
    normalize = {"auto": None, "true": True, "false": False}[f.normalize]
    source = src.load_source(f.model, f.sequence_length, f.pooling, normalize)
    # One export at a time per --output_dir; no links leading out of it;
    # leftovers of a killed export (.tmp_*.tflite) removed.
    with workdirs.hold(f.output_dir, what=f"the output directory {f.output_dir}") as out:
        return _export(f, source, out.root, t_start)


def _export(f, source, output_dir: str, t_start: float) -> dict:
    from minilm_tf.models.students import count_params
    from minilm_tf.utils import fileio
    from minilm_tf.export import data as export_data
    from minilm_tf.export import source as src
    from minilm_tf.export import tflite as tl

    name = f.name or _name(f.model)
    suffix = ".tokenizer" if f.with_tokenizer else ""
    paths = {m: os.path.join(output_dir, f"{name}.{m}{suffix}.tflite") for m in f.modes}
    report_path = os.path.join(output_dir, "report.json")
    existing = [p for p in list(paths.values()) + [report_path] if os.path.lexists(p)]
    if existing and not f.overwrite:
        raise FileExistsError(f"{existing} exist; pass --overwrite or another --output_dir.")

    default_task = None if source.task else "rotten_tomatoes"
    evalset = export_data.source_texts(source, "validation", f.max_eval_examples,
                                 task=f.eval_task or default_task, text_file=f.eval_file)
    if source.kind == src.CLASSIFICATION:
        evalset = export_data.align_labels(evalset, source.labels)
    edge = export_data.edge_case_set(source)
    checkset = export_data.combine(evalset, edge)
    calibration = None
    if "int8" in f.modes:
        calibration = export_data.source_texts(
            source, "train", f.calibration_examples,
            task=f.calibration_task or f.eval_task or default_task,
            text_file=f.calibration_file)
        logging.info("int8 calibration on %s", calibration.description)
    logging.info("checks on %s", checkset.description)
    reference = src.keras_reference(source, checkset.texts, checkset.text_pairs)
    n_eval = len(evalset) if evalset is not None else 0

    results = {}
    for mode in f.modes:
        logging.info("converting %s (%s)", mode, tl.MODE_HELP[mode])
        conv = tl.convert(
            source, mode, f.with_tokenizer,
            representative_texts=calibration.texts if calibration else None,
            representative_pairs=calibration.text_pairs if calibration else None)
        tl.write_model(conv.content, paths[mode])
        check = tl.check_tflite(
            source, conv.content, checkset.texts, checkset.text_pairs,
            num_threads=f.num_threads, latency_examples=f.latency_examples,
            reference=reference, return_outputs=True)
        outputs = check.pop("_outputs")
        entry = {
            "file": paths[mode],
            "size_bytes": len(conv.content),
            "size_mb": round(len(conv.content) / 2**20, 3),
            "mode": mode,
            "mode_description": tl.MODE_HELP[mode],
            "with_tokenizer": f.with_tokenizer,
            "integer_only": conv.integer_only,
            "conversion_seconds": round(conv.seconds, 1),
            "notes": conv.notes,
            "ops": tl.op_summary(conv.content),
            "all_texts": check,
        }
        if n_eval:
            # Validation split only (the edge cases have no labels).
            main = src.main_output(source)
            entry["validation"] = tl.compare_main_outputs(
                source, reference[main][:n_eval], outputs[main][:n_eval],
                labels=evalset.labels, metric_names=evalset.metric_names)
        results[mode] = entry
        logging.info("%s: %.2f MB, max abs diff %.3g", mode, entry["size_mb"],
                     check["max_abs_diff"])

    report = {
        "model": f.model,
        "kind": source.kind,
        "labels": source.labels,
        "sequence_length": source.sequence_length,
        "num_threads": f.num_threads,
        "eval_texts": evalset.description if evalset is not None else None,
        "check_texts": checkset.description,
        "calibration_texts": calibration.description if calibration else None,
        "keras_parameters": count_params(source.model),
        "export_metadata": source.metadata(),
        "models": results,
        "wall_time_sec": round(time.perf_counter() - t_start, 1),
    }
    if source.kind == src.ENCODER:
        report.update(pooling=list(source.pooling), normalize=source.normalize)
    report = export_data.jsonable(report)
    fileio.atomic_write_json(report_path, report)
    return report


def summarize(report: dict) -> dict:
    out = {"report": None, "models": {}}
    for mode, entry in report["models"].items():
        val = entry.get("validation") or {}
        row = {
            "size_mb": entry["size_mb"],
            "max_abs_diff": entry["all_texts"]["max_abs_diff"],
            "latency_ms_batch1": entry["all_texts"]["latency_batch1"].get("median_ms"),
        }
        if "label_agreement" in val:
            row["label_agreement"] = val["label_agreement"]
        if "metrics" in val:
            row["metric_drop"] = val["metrics"]["drop"]
        if "cosine_similarity" in entry["all_texts"]:
            row["min_cosine"] = entry["all_texts"]["cosine_similarity"]["min"]
        if "token_ids" in entry["all_texts"]:
            t = entry["all_texts"]["token_ids"]
            row["token_ids_identical"] = f"{t['identical_examples']}/{t['total']}"
        out["models"][mode] = row
    return out


USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError,
               PermissionError, NotImplementedError, ImportError)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    missing = [f"--{n}" for n in ("model", "output_dir") if not getattr(FLAGS, n)]
    if missing:
        raise app.UsageError(f"Missing required flags: {', '.join(missing)}")
    try:
        report = run()
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    summary = summarize(report)
    summary["report"] = os.path.join(os.path.abspath(FLAGS.output_dir), "report.json")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    _cli.run(main)
