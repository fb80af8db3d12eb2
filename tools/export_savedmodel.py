r"""Export a fine-tuned classifier or a sentence encoder as a SavedModel for
TF Serving, and check it before publishing.

Examples:

  # A fine-tuned task model (tools/finetune.py's workdir):
  python tools/export_savedmodel.py --model runs/rt_student \
      --export_dir exports --model_name rt_student

  # A bare encoder as a sentence encoder (mean pooling + L2 norm, as the
  # checkpoint's sentence-transformers config says):
  python tools/export_savedmodel.py --model all-minilm-l6-v2 \
      --export_dir exports --model_name all_minilm_l6_v2

Writes <export_dir>/<model_name>/<version>/ (next free version unless
--version; an existing version is never overwritten), atomically: the
SavedModel is built in a hidden temporary directory, checked (fresh-process
round trip vs the Keras model, bad input, saved_model_cli show/run, TF Serving
PredictRequest validation; see minilm_tf/export/verify.py) and only then
renamed into place. The checks go to <version>/assets.extra/verification.json
and are printed as JSON; a failed check publishes nothing (exit status 2).
"""

import json
import os
import re
import sys
import time

from absl import app, flags, logging

import _cli  # tools/_cli.py: one error line for bad flags

FLAGS = flags.FLAGS

flags.DEFINE_string("model", None, "A tools/finetune.py workdir (or its model/ dir), or an "
                    "encoder spec: all-minilm-l6-v2, a Hugging Face dir, a keras-hub preset "
                    "dir (e.g. a student saved by minilm_tf.save_encoder).")
flags.DEFINE_string("export_dir", None, "TF Serving base directory; the export goes to "
                    "<export_dir>/<model_name>/<version>/.")
flags.DEFINE_string("model_name", None, "Model name (default: from --model).")
flags.DEFINE_integer("version", None, "Version number (default: latest + 1). An existing "
                     "version is an error.")
flags.DEFINE_integer("sequence_length", None, "Tokens per example (default: the fine-tuning "
                     "length; encoders: sentence-transformers max_seq_length, else 128).")
flags.DEFINE_list("pooling", None, "Encoder pooling: mean, cls, max, mean_sqrt_len "
                  "(default: the checkpoint's sentence-transformers config, else mean).")
flags.DEFINE_enum("normalize", "auto", ["auto", "true", "false"], "L2-normalise encoder "
                  "embeddings (auto: as the checkpoint's sentence-transformers modules).")
flags.DEFINE_bool("trim_padding", True, "serving_default runs the encoder only on the "
                  "positions the longest text of the batch needs.")
flags.DEFINE_bool("verify", True, "Check the export before publishing it.")
flags.DEFINE_integer("num_verify_examples", 64, "Task validation texts checked besides the "
                     "built-in edge cases (0: edge cases only).")
flags.DEFINE_string("verify_task", None, "Task whose validation texts are checked (default: "
                    "the fine-tuning task; encoders: rotten_tomatoes when installed).")
flags.DEFINE_string("verify_file", None, "Text file (one per line) to check with instead.")
flags.DEFINE_float("tolerance", 1e-4, "Max abs difference from the Keras model accepted.")


def default_model_name(model: str) -> str:
    path = os.path.normpath(model)
    name = os.path.basename(path)
    if name == "model" and os.path.isdir(path):
        name = os.path.basename(os.path.dirname(path))
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "model"
    return name


def verification_texts(source, task, text_file, max_examples):
    from minilm_tf.export import data as export_data

    edge = export_data.edge_case_set(source)
    extra = None
    if max_examples > 0:
        try:
            extra = export_data.source_texts(source, "validation", max_examples,
                                       task=task or (None if source.task else "rotten_tomatoes"),
                                       text_file=text_file)
        except (ImportError, ValueError, FileNotFoundError, RuntimeError) as e:
            logging.warning("no task texts for the checks (%s); edge cases only.", e)
    return export_data.combine(edge, extra)


def run(argv_flags=FLAGS) -> dict:
    from minilm_tf.export import data as export_data
    from minilm_tf.export import savedmodel
    from minilm_tf.export import source as src
    from minilm_tf.export import verify as vf

    t0 = time.perf_counter()
    normalize = {"auto": None, "true": True, "false": False}[argv_flags.normalize]
    source = src.load_source(argv_flags.model, argv_flags.sequence_length,
                             argv_flags.pooling, normalize)
    model_name = argv_flags.model_name or default_model_name(argv_flags.model)
    logging.info("exporting %s (%s, sequence_length=%d) as %s", argv_flags.model, source.kind,
                 source.sequence_length, model_name)
    verify = None
    if argv_flags.verify:
        texts = verification_texts(source, argv_flags.verify_task, argv_flags.verify_file,
                                   argv_flags.num_verify_examples)
        logging.info("checks on %s", texts.description)

        def check(path):
            result = vf.verify_saved_model(path, source, texts.texts, texts.text_pairs,
                                           model_name=model_name,
                                           tolerance=argv_flags.tolerance)
            result["texts"] = texts.description
            return result

        verify = check

    result = savedmodel.export_saved_model(source, argv_flags.export_dir, model_name,
                                   version=argv_flags.version,
                                   trim_padding=argv_flags.trim_padding, verify=verify)
    size = sum(os.path.getsize(os.path.join(d, f))
               for d, _, files in os.walk(result["path"]) for f in files)
    summary = {
        "path": result["path"],
        "model_name": model_name,
        "version": result["version"],
        "kind": source.kind,
        "sequence_length": source.sequence_length,
        "labels": source.labels,
        "size_mb": round(size / 2**20, 2),
        "signatures": result["signatures"],
        "wall_time_sec": round(time.perf_counter() - t0, 1),
    }
    if source.kind == src.ENCODER:
        summary.update(pooling=list(source.pooling), normalize=source.normalize)
    if result["verification"] is not None:
        v = result["verification"]
        summary["verification"] = {
            "ok": v["ok"],
            "texts": v.get("texts"),
            "max_abs_diff_vs_keras": v["fresh_process"]["max_abs_diff"],
            "saved_model_cli_run": v.get("saved_model_cli", {}).get("run", {}).get("command"),
            "predict_request": {k: val.get("problems") for k, val in
                                v.get("predict_request", {}).items() if isinstance(val, dict)},
            "report": os.path.join(result["path"], savedmodel.EXTRA_DIR, savedmodel.VERIFICATION_FILE),
        }
    return export_data.jsonable(summary)


USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError,
               PermissionError, NotImplementedError)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    missing = [f"--{n}" for n in ("model", "export_dir") if not getattr(FLAGS, n)]
    if missing:
        raise app.UsageError(f"Missing required flags: {', '.join(missing)}")
    from minilm_tf.export.savedmodel import VerificationError

    try:
        summary = run()
    except VerificationError as e:
        print(json.dumps(e.report, indent=2, default=str))
        print(f"error: {e}", file=sys.stderr)
        return 2
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    _cli.run(main)
