r"""Compare teacher and student inference latency and size across Keras,
SavedModel and TFLite variants, in one run.

Examples:

  # Fine-tuned teacher vs fine-tuned student (tools/finetune.py workdirs):
  python tools/benchmark_inference.py --teacher runs/rt_teacher --student runs/rt_student

  # Bare encoders (sentence-encoder export); random:LxHxA builds an untrained
  # student of that shape from the teacher (latency and size only):
  python tools/benchmark_inference.py --teacher all-minilm-l6-v2 \
      --student random:3x384x12 --variants keras,savedmodel,tflite_float32,tflite_dynamic

Variants: keras, savedmodel (serving_token_ids), savedmodel_text
(serving_default: strings in, tokenised in the graph, padding trimmed to the
longest text), tflite_float32 / tflite_dynamic / tflite_float16 / tflite_int8
(token ids in), tflite_float32_text / tflite_dynamic_text (tokenizer in the
model). All take the same texts (--texts_task validation split or
--texts_file), padded to --sequence_length. TensorFlow and the TFLite
interpreter both get --num_threads threads. Prints a table and writes JSON
(--output_json).
"""

import json
import os
import re
import shutil
import sys
import tempfile
import time

from absl import app, flags, logging

FLAGS = flags.FLAGS

flags.DEFINE_string("teacher", None, "Teacher: a tools/finetune.py workdir or an encoder spec.")
flags.DEFINE_string("student", None, "Student: a tools/finetune.py workdir, an encoder spec, "
                    "or random:LAYERSxHIDDENxHEADS (an untrained student of the teacher).")
flags.DEFINE_list("variants", None, "Variants to run (default: keras, savedmodel, "
                  "savedmodel_text, tflite_float32, tflite_dynamic).")
flags.DEFINE_integer("sequence_length", 128, "Tokens per example for every model.")
flags.DEFINE_list("batch_sizes", ["1", "32"], "Batch sizes timed.")
flags.DEFINE_integer("num_threads", 1, "Threads for TensorFlow (intra/inter-op) and TFLite.")
flags.DEFINE_integer("num_examples", 64, "Texts timed per variant and batch size.")
flags.DEFINE_integer("rounds", 5, "Timing rounds per variant and batch size; the teacher and "
                     "the student alternate round by round (A B, B A, ...).")
flags.DEFINE_string("texts_task", "rotten_tomatoes", "Task whose validation texts are used.")
flags.DEFINE_string("texts_file", None, "Or a text file, one text per line.")
flags.DEFINE_string("workdir", None, "Keep the exported SavedModels / .tflite files here "
                    "(default: a temporary directory, deleted).")
flags.DEFINE_string("output_json", None, "Write the rows as JSON here.")


def load(spec, teacher_source=None, sequence_length=128):
    from minilm_tf.export import source as src

    match = re.fullmatch(r"random:(\d+)x(\d+)x(\d+)", spec or "")
    if match:
        if teacher_source is None or teacher_source.kind != src.ENCODER:
            raise ValueError("random:LxHxA students need an encoder teacher spec.")
        import minilm_tf
        from minilm_tf.models.encoders import LoadedEncoder

        layers, hidden, heads = (int(g) for g in match.groups())
        teacher = LoadedEncoder(teacher_source.backbone, teacher_source.tokenizer, "teacher",
                                teacher_source.info.get("hidden_act") or "gelu",
                                metadata={"normalize": teacher_source.normalize})
        student = minilm_tf.build_student(teacher, layers, hidden, heads, seed=0)
        return src.encoder_source(student, sequence_length, teacher_source.pooling,
                                  teacher_source.normalize)
    return src.load_source(spec, sequence_length)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if not FLAGS.teacher:
        raise app.UsageError("--teacher is required.")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(FLAGS.num_threads)
    tf.config.threading.set_inter_op_parallelism_threads(FLAGS.num_threads)
    from minilm_tf.export import benchmark as bm
    from minilm_tf.export import data as export_data
    from minilm_tf.export import source as src

    variants = FLAGS.variants or list(bm.DEFAULT_VARIANTS)
    batch_sizes = [int(b) for b in FLAGS.batch_sizes]
    try:
        teacher = load(FLAGS.teacher, sequence_length=FLAGS.sequence_length)
        models = [("teacher", FLAGS.teacher, teacher)]
        if FLAGS.student:
            models.append(("student", FLAGS.student,
                           load(FLAGS.student, teacher, FLAGS.sequence_length)))
        texts = export_data.source_texts(teacher, "validation", FLAGS.num_examples,
                                   task=None if FLAGS.texts_file else FLAGS.texts_task,
                                   text_file=FLAGS.texts_file)
    except (ValueError, FileNotFoundError, NotImplementedError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    workdir = FLAGS.workdir or tempfile.mkdtemp(prefix="minilm_bench_")
    t0 = time.perf_counter()
    try:
        prepared = [(role, source, bm.Inputs(texts.texts, texts.text_pairs,
                                             src.keras_tokenize(source, texts.texts,
                                                                texts.text_pairs)))
                    for role, _, source in models]
        rows = bm.benchmark_models(prepared, variants, batch_sizes, FLAGS.num_threads, workdir,
                                   calibration_texts=texts.texts, rounds=FLAGS.rounds,
                                   log=logging.info)
    finally:
        if not FLAGS.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    spec_of = {role: spec for role, spec, _ in models}
    for row in rows:
        row["spec"] = spec_of[row["model"]]
    print(bm.format_table(rows, batch_sizes))
    result = {"rows": rows, "texts": texts.description, "num_threads": FLAGS.num_threads,
              "rounds": FLAGS.rounds,
              "sequence_length": FLAGS.sequence_length, "batch_sizes": batch_sizes,
              "wall_time_sec": round(time.perf_counter() - t0, 1)}
    for b in batch_sizes:
        key = f"batch_{b}"
        by = {(r["model"], r["variant"]): r["latency"][key]["median_ms_per_example"]
              for r in rows}
        speedups = {v: by[("teacher", v)] / by[("student", v)] for v in variants
                    if ("teacher", v) in by and ("student", v) in by and by[("student", v)]}
        if speedups:
            result.setdefault("student_speedup", {})[key] = speedups
    result = export_data.jsonable(result)
    if FLAGS.output_json:
        with open(FLAGS.output_json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
    print(json.dumps({"student_speedup": result.get("student_speedup"),
                      "output_json": FLAGS.output_json}, indent=2))
    return 0


if __name__ == "__main__":
    app.run(main)
