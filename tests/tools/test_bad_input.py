"""Every tool, run as a user runs it (a subprocess), on bad input.

Each case ends with its exit status (1, or a documented success), exactly
one line starting with `error: ` that says what is wrong (the expected text
is part of the case), no traceback, and nothing written outside the work
directory: its parent, which holds the links' targets and the case's own
inputs, is listed before and after. The cases run several at a time (each
subprocess imports TensorFlow); most fail at validation, before any model is
loaded, and the rest use a tiny random teacher.
"""

import concurrent.futures
import dataclasses
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import time
from typing import Callable, Optional

import pytest
from locations import REPO_ROOT, TOOLS_DIR

WORKDIR_MODULE = os.path.join(REPO_ROOT, "minilm_tf", "utils", "workdir.py")
BASE_CONFIG = os.path.join(REPO_ROOT, "configs", "base.py")


# --------------------------------------------------------------------------- shared inputs


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Inputs every case reads (never writes): a tiny teacher preset, a
    fine-tuned run to export, a corpus, toy task files."""
    import export_fixtures

    root = tmp_path_factory.mktemp("inputs")
    tokenizer = export_fixtures.real_vocab_tokenizer()
    teacher = export_fixtures.save_tiny_encoder_preset(str(root / "teacher"), tokenizer)
    finetuned = export_fixtures.make_finetune_workdir(
        str(root / "finetuned"), tokenizer, labels=["rotten", "fresh"], task="rotten_tomatoes",
        hyperparameters={"max_eval_examples": 8, "seed": 0})
    corpus = root / "corpus.txt"
    corpus.write_text("".join(f"Sentence {i} is about {w} in town {i % 7}.\n"
                              for i, w in enumerate(["cats", "music", "trains"] * 40)))
    rows = [{"text": f"the {w} film", "label": "pos" if i % 2 else "neg"}
            for i, w in enumerate(["good", "bad", "fine", "dull"] * 8)]
    train = root / "train.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = root / "toy_task"
    task.mkdir()
    shutil.copy(train, task / "train.jsonl")
    shutil.copy(train, task / "validation.jsonl")
    return {"root": str(root), "teacher": teacher, "finetuned": finetuned,
            "corpus": str(corpus), "train": str(train), "task": str(task)}


def _distill(inputs, run, *extra, steps=2):
    return [f"--workdir={run}", f"--config={BASE_CONFIG}",
            f"--config.teacher={inputs['teacher']}",
            f"--config.data.sources={inputs['corpus']}", "--config.data.mode=lines",
            "--config.student.num_layers=1", "--config.student.hidden_dim=16",
            "--config.student.num_heads=2", "--config.train.batch_size=4",
            "--config.data.seq_length=16", "--config.data.heldout_fraction=0.2",
            "--config.eval.heldout_batches=1", "--config.train.warmup_steps=1",
            "--config.train.jit_compile=false", f"--config.train.steps={steps}", *extra]


def _finetune(inputs, run, *extra, train=None):
    return ["--model", inputs["teacher"], "--task", "toy", "--train_file",
            train or inputs["train"], "--validation_file", inputs["train"], "--workdir", str(run),
            "--epochs", "1", "--batch_size", "8", "--sequence_length", "12",
            "--latency_examples", "0", "--jit_compile", "false", *extra]


def _study(inputs, run, *extra):
    return [f"--workdir={run}", f"--config={BASE_CONFIG}",
            f"--config.teacher={inputs['teacher']}", f"--config.data.sources={inputs['corpus']}",
            "--config.data.mode=lines", "--config.student.num_layers=1",
            "--config.student.hidden_dim=16", "--config.student.num_heads=2",
            "--rows=none/teacher_layers", f"--tasks=toy={inputs['task']}", "--seeds=0",
            "--steps=1", "--epochs=1", *extra]


# --------------------------------------------------------------------------- case setups
# Each gets the case directory `base` (the work directory is base/run; base
# itself is the parent that must not change) and returns extra arguments or
# None; a setup may start a process that must live during the case.


def _outside(base):
    outside = os.path.join(base, "outside")
    os.makedirs(outside, exist_ok=True)
    with open(os.path.join(outside, "elsewhere.csv"), "w", encoding="utf-8") as f:
        f.write("precious,data\n1,2\n")
    return outside


def link(entry, to_dir=False, under="run"):
    """`base/run/<entry>` is a link to a file (or directory) outside the workdir."""
    def setup(base, inputs):
        outside = _outside(base)
        path = os.path.join(base, under, entry)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        os.symlink(outside if to_dir else os.path.join(outside, "elsewhere.csv"), path)
    return setup


def write(relative, text):
    def setup(base, inputs):
        path = os.path.join(base, relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    return setup


_HOLDER = """
import importlib.util, sys, time
spec = importlib.util.spec_from_file_location("workdir", sys.argv[1])
workdir = importlib.util.module_from_spec(spec)
spec.loader.exec_module(workdir)
if sys.argv[3] == "dir":
    held = workdir.hold(sys.argv[2])
else:
    held = workdir.exclusive(sys.argv[2], "it")
with held:
    print("held", flush=True)
    time.sleep(600)
"""


def held(relative="run", kind="dir"):
    """Another live process holds the work directory (or a lock file) for the case."""
    def setup(base, inputs):
        proc = subprocess.Popen([sys.executable, "-c", _HOLDER, WORKDIR_MODULE,
                                 os.path.join(base, relative), kind], stdout=subprocess.PIPE,
                                text=True)
        assert proc.stdout.readline().strip() == "held"
        return proc
    return setup


def stale_lock_and_leftovers(base, inputs):
    """A lock file and temporaries left by a killed run (its pid is gone)."""
    run = os.path.join(base, "run")
    os.makedirs(os.path.join(run, "checkpoints", "ckpt-9_temp"))
    with open(os.path.join(run, "checkpoints", "ckpt-9_temp", "part-00000-of-00001.index"),
              "wb") as f:
        f.write(b"\0" * 100)
    with open(os.path.join(run, ".tmp-report"), "w", encoding="utf-8") as f:
        f.write('{"half')
    with open(os.path.join(run, ".workdir.lock"), "w", encoding="utf-8") as f:
        json.dump({"pid": 2 ** 22 + 1, "started": "2020-01-01T00:00:00+00:00"}, f)


def copy_preset(change):
    """base/preset: the tiny teacher preset, then `change(directory)`."""
    def setup(base, inputs):
        target = os.path.join(base, "preset")
        shutil.copytree(inputs["teacher"], target)
        change(target)
    return setup


def truncate_weights(preset):
    path = os.path.join(preset, "model.weights.h5")
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])


def more_layers_in_config(preset):
    path = os.path.join(preset, "config.json")
    with open(path, encoding="utf-8") as f:
        config = json.load(f)
    config["config"]["num_layers"] += 1
    with open(path, "w", encoding="utf-8") as f:
        json.dump(config, f)


def shorter_vocabulary(preset):
    path = os.path.join(preset, "assets", "tokenizer", "vocabulary.txt")
    with open(path, encoding="utf-8") as f:
        tokens = f.read().splitlines()
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(tokens[:-10]) + "\n")


def hf_dir(model_type="bert", weights_bytes=1 << 20):
    """base/hf: a Hugging Face model directory (the built-in teacher's
    config and vocabulary) with the first `weights_bytes` of its weights."""
    def setup(base, inputs):
        from minilm_tf.models.encoders import builtin_model_dir

        source, target = builtin_model_dir("all-minilm-l6-v2"), os.path.join(base, "hf")
        os.makedirs(target)
        for name in ("vocab.txt", "tokenizer_config.json"):
            shutil.copy(os.path.join(source, name), target)
        with open(os.path.join(source, "config.json"), encoding="utf-8") as f:
            config = dict(json.load(f), model_type=model_type)
        with open(os.path.join(target, "config.json"), "w", encoding="utf-8") as f:
            json.dump(config, f)
        with open(os.path.join(source, "model.safetensors"), "rb") as f:
            data = f.read(weights_bytes)
        with open(os.path.join(target, "model.safetensors"), "wb") as f:
            f.write(data)
    return setup


def special_files_only(base, inputs):
    corpus = os.path.join(base, "corpus")
    os.makedirs(corpus)
    os.mkfifo(os.path.join(corpus, "pipe.txt"))  # opening it would block forever
    server = socket.socket(socket.AF_UNIX)
    server.bind(os.path.join(corpus, "sock.txt"))
    server.close()
    os.symlink("loop.txt", os.path.join(corpus, "loop.txt"))
    os.symlink("missing.txt", os.path.join(corpus, "dangling.txt"))


def saved_run_config(base, inputs):
    """run_config.json of a run whose student was 32 wide."""
    sys.path.insert(0, REPO_ROOT)
    from configs import base as recipe

    config = recipe.get_config().to_dict()
    config["teacher"] = inputs["teacher"]
    config["student"].update(num_layers=1, hidden_dim=32, num_heads=2)
    config["data"]["seq_length"] = 16
    run = os.path.join(base, "run")
    os.makedirs(run)
    with open(os.path.join(run, "run_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f)


def unfinished_finetune(base, inputs):
    """An unfinished fine-tuning run recorded with another learning rate."""
    from minilm_tf.training.finetune_common import FinetuneConfig, config_dict
    from minilm_tf.training import resume

    run = os.path.join(base, "run")
    config = FinetuneConfig(model=inputs["teacher"], task="toy", workdir=run,
                               train_file=inputs["train"], validation_file=inputs["train"],
                               epochs=1, batch_size=8, sequence_length=12, learning_rate=1e-3,
                               latency_examples=0, jit_compile="false")
    checkpoints = os.path.join(run, resume.CHECKPOINT_DIR)
    resume.check_config(checkpoints, config_dict(config))
    with open(os.path.join(checkpoints, resume.STATE_FILE), "w", encoding="utf-8") as f:
        json.dump({"checkpoint": "ckpt-3", "epoch": 0, "batch": 3}, f)


def jsonl(relative, rows, raw_lines=()):
    def setup(base, inputs):
        path = os.path.join(base, relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
            f.writelines(raw_lines)
    return setup


def squad_misaligned(base, inputs):
    data = {"version": "1.1", "data": [{"title": "t", "paragraphs": [{
        "context": "Zurich is a city.", "qas": [
            {"id": "q-bad", "question": "Where?",
             "answers": [{"text": "Zurich", "answer_start": 3}]}]}]}]}
    with open(os.path.join(base, "squad.json"), "w", encoding="utf-8") as f:
        json.dump(data, f)


def combine(*setups):
    def setup(base, inputs):
        results = [s(base, inputs) for s in setups]
        return next((r for r in results if r is not None), None)
    return setup


def mkdir(relative):
    def setup(base, inputs):
        os.makedirs(os.path.join(base, relative))
    return setup


def full_disk_wrapper(command):
    """Files over 4 MB fail to write (EFBIG), as on a full disk."""
    return ["bash", "-c", 'ulimit -f 4096; trap "" XFSZ; exec "$@"', "bash", *command]


# --------------------------------------------------------------------------- the table


def _no_temporaries(base):
    found = [os.path.join(d, n) for d, dirs, files in os.walk(os.path.join(base, "run"))
             for n in dirs + files if n.endswith("_temp") or n.startswith(".tmp-")
             or n == ".workdir.lock"]
    assert not found, found


def _absent(base, relative):
    assert not os.path.lexists(os.path.join(base, relative)), relative


def _finished(base):
    _no_temporaries(base)
    assert os.path.isfile(os.path.join(base, "run", "report.json"))


@dataclasses.dataclass
class Case:
    id: str
    tool: str
    args: Callable  # (inputs, base) -> argv after the tool
    expect: Optional[str]  # text of the one `error:` line (None: success, no error line)
    setup: Optional[Callable] = None
    code: int = 1
    wrap: Optional[Callable] = None  # command -> command (e.g. a file-size limit)
    check: Optional[Callable] = None  # (base) -> None, more assertions after the run
    slow: bool = False


def _run_dir(base):
    return os.path.join(base, "run")


def D(id, extra=(), expect=None, **kw):
    """A tools/distill.py case; `extra` may use {base} and the inputs' keys."""
    return Case(id, "distill.py", lambda i, b: _distill(
        i, _run_dir(b), *[a.format(base=b, **i) for a in extra]), expect, **kw)


def F(id, extra=(), expect=None, train=None, **kw):
    return Case(id, "finetune.py", lambda i, b: _finetune(
        i, _run_dir(b), *[a.format(base=b, **i) for a in extra],
        train=train.format(base=b, **i) if train else None), expect, **kw)


def Y(id, extra=(), expect=None, **kw):
    return Case(id, "study.py", lambda i, b: _study(
        i, _run_dir(b), *[a.format(base=b, **i) for a in extra]), expect, **kw)


def T(id, args, expect, **kw):
    return Case(id, "export_tflite.py", lambda i, b: [
        a.format(base=b, run=_run_dir(b), **i) for a in args], expect, **kw)


def S(id, args, expect, **kw):
    return Case(id, "export_savedmodel.py", lambda i, b: [
        a.format(base=b, run=_run_dir(b), **i) for a in args], expect, **kw)


def H(id, args, expect, **kw):
    return Case(id, "export_hf.py", lambda i, b: [
        a.format(base=b, run=_run_dir(b), **i) for a in args], expect, **kw)


TFLITE = ["--model", "{finetuned}", "--output_dir", "{run}", "--modes", "float32",
          "--max_eval_examples", "4", "--latency_examples", "1"]
SAVEDMODEL = ["--model", "{teacher}", "--export_dir", "{run}", "--model_name", "student",
              "--num_verify_examples", "0"]
LOCKED = "another run (pid "
LINK = " in the work directory "

CASES = [
    # tools/distill.py: config values (checked before anything is loaded)
    D("distill-unknown-key", ["--config.train.stepz=3"],
      "error: unknown config key --config.train.stepz"),
    D("distill-unknown-nested-key", ["--config.train.steps.x=1"],
      "error: unknown config key --config.train.steps.x;", slow=True),
    D("distill-malformed-value", ["--config.train.steps=many"],
      "error: flag --config.train.steps=many: invalid literal for int()", slow=True),
    D("distill-zero-steps", ["--config.train.steps=0"], "train.steps must be positive, got 0"),
    D("distill-negative-batch", ["--config.train.batch_size=-4"],
      "train.batch_size must be positive, got -4", slow=True),
    D("distill-negative-lr", ["--config.train.learning_rate=-1e-4"],
      "train.learning_rate must be positive", slow=True),
    D("distill-short-sequence", ["--config.data.seq_length=4"], "is too short; use at least 8",
      slow=True),
    D("distill-heldout-fraction", ["--config.data.heldout_fraction=0"],
      "data.heldout_fraction must be in (0, 1)", slow=True),
    D("distill-jit-compile", ["--config.train.jit_compile=maybe"],
      "train.jit_compile must be one of", slow=True),
    D("distill-unknown-objective", ["--config.objective=attention"],
      "Unknown objective 'attention'"),
    D("distill-unknown-init", ["--config.student.init=copy"], "student.init must be one of",
      slow=True),
    D("distill-bad-assistant-flag", ["--assistant=maybe"], "error: flag --assistant=maybe"),
    D("distill-positional-argument", ["extra"], "error: Unexpected arguments: ['extra']"),
    D("distill-no-sources", ["--config.data.sources= , "], "data.sources is empty", slow=True),
    # tools/distill.py: the work directory
    D("distill-workdir-is-a-file", expect="exists and is a file; pass a directory",
      setup=write("run", "not a directory")),
    D("distill-metrics-csv-links-outside", expect="metrics.csv" + LINK,
      setup=link("metrics.csv")),
    D("distill-checkpoints-link-outside", expect="checkpoints" + LINK,
      setup=link("checkpoints", to_dir=True)),
    D("distill-tensorboard-links-outside", expect="tensorboard" + LINK,
      setup=link("tensorboard", to_dir=True), slow=True),
    D("distill-student-links-outside", expect="student" + LINK,
      setup=link("student", to_dir=True), slow=True),
    D("distill-nested-link-outside", expect="checkpoints/checkpoint" + LINK,
      setup=link("checkpoints/checkpoint"), slow=True),
    D("distill-workdir-in-use", expect=LOCKED, setup=held()),
    D("distill-restart-with-other-student", expect="student.hidden_dim: 32 in the saved run, "
      "16 now", setup=saved_run_config, slow=True),
    D("distill-stale-lock-and-leftovers", expect=None, code=0,
      setup=stale_lock_and_leftovers, check=_finished),
    # tools/distill.py: teacher and corpus
    D("distill-missing-teacher", ["--config.teacher={base}/nowhere/teacher"],
      "does not exist or is not a directory"),
    D("distill-teacher-without-config", ["--config.teacher={base}/empty_teacher"],
      "has no config.json", setup=mkdir("empty_teacher"), slow=True),
    D("distill-truncated-teacher-weights", ["--config.teacher={base}/preset"],
      "model.weights.h5 is damaged (truncated or not a valid HDF5 file)",
      setup=copy_preset(truncate_weights)),
    D("distill-teacher-config-disagrees-with-weights", ["--config.teacher={base}/preset"],
      "num_layers is 2 in config.json but 1 in model.weights.h5",
      setup=copy_preset(more_layers_in_config)),
    D("distill-teacher-vocabulary-wrong-size", ["--config.teacher={base}/preset"],
      "has 30512 tokens but the model's embeddings have 30522 rows",
      setup=copy_preset(shorter_vocabulary), slow=True),
    D("distill-unsupported-model-type", ["--config.teacher={base}/hf"], "model_type='gpt2'",
      setup=hf_dir(model_type="gpt2", weights_bytes=0), slow=True),
    D("distill-truncated-safetensors", ["--config.teacher={base}/hf"],
      "model.safetensors may be corrupt or truncated", setup=hf_dir()),
    D("distill-sequence-beyond-teacher", ["--config.data.seq_length=100000"],
      "data.seq_length=100000 exceeds the teacher's position embeddings (64)",
      check=lambda base: _absent(base, "run/run_config.json")),  # the rerun is not pinned
    D("distill-empty-corpus", ["--config.data.sources={base}/empty.txt"], "No text found",
      setup=write("empty.txt", "")),
    D("distill-corpus-of-fifo-socket-and-loops", ["--config.data.sources={base}/corpus"],
      "No text found", setup=special_files_only),
    D("distill-missing-corpus", ["--config.data.sources={base}/nowhere/*.txt"],
      "No file matches text source", slow=True),
    D("distill-full-disk", expect="Could not write checkpoint 2 in ", wrap=full_disk_wrapper,
      check=lambda base: _no_temporaries(base)),
    D("distill-nonfinite-loss", ["--config.train.learning_rate=1e12", "--config.train.clipnorm=0",
                                 "--config.train.steps=6"],
      "The loss became non-finite at step", slow=True),
    # tools/finetune.py
    F("finetune-missing-workdir", ["--workdir="],
      "error: Missing required settings (FinetuneConfig): --workdir."),
    F("finetune-bad-flag-value", ["--epochs=some"], "error: flag --epochs=some"),
    F("finetune-zero-epochs", ["--epochs", "0"], "epochs must be >= 1, got 0"),
    F("finetune-zero-lr", ["--learning_rate", "0"], "learning_rate must be > 0", slow=True),
    F("finetune-warmup-ratio", ["--warmup_ratio", "1.5"], "warmup_ratio must be in [0, 1)",
      slow=True),
    F("finetune-short-sequence", ["--sequence_length", "4"], "sequence_length must be >= 8",
      slow=True),
    F("finetune-bad-task-option", ["--task_option", "doc_stride"], "expected KEY=VALUE", slow=True),
    F("finetune-missing-train-file", train="{base}/nowhere.jsonl", expect="does not exist"),
    F("finetune-train-file-is-a-directory", train="{base}", expect="is a directory",
      slow=True),
    F("finetune-malformed-jsonl", train="{base}/bad.jsonl", expect="bad.jsonl:3: invalid JSON",
      setup=jsonl("bad.jsonl", [{"text": "a", "label": "x"}] * 2, ["{not json\n"])),
    F("finetune-missing-labels", train="{base}/bad.jsonl", expect="missing label",
      setup=jsonl("bad.jsonl", [{"text": "a", "label": "x"}, {"text": "b"}]), slow=True),
    F("finetune-all-texts-empty", train="{base}/empty.jsonl",
      expect="20 of 20 train examples have empty text",
      setup=jsonl("empty.jsonl", [{"text": " " * (i % 2), "label": i % 2} for i in range(20)])),
    F("finetune-unseen-label", ["--test_file", "{base}/test.jsonl"],
      expect="labels not seen in training: ['maybe']",
      setup=jsonl("test.jsonl", [{"text": "a film", "label": "maybe"}])),
    F("finetune-mixed-label-types", train="{base}/mixed.jsonl", expect="labels mix types",
      setup=jsonl("mixed.jsonl", [{"text": "a", "label": "pos"}, {"text": "b", "label": 1}]),
      slow=True),
    F("finetune-unknown-text-column", ["--text_column", "body"], "body", slow=True),
    F("finetune-workdir-is-a-file", expect="exists and is a file",
      setup=write("run", "not a directory")),
    F("finetune-previous-run", expect="already holds a previous run's outputs",
      setup=write("run/report.json", "{}")),
    F("finetune-checkpoints-link-outside", expect="checkpoints" + LINK,
      setup=link("checkpoints", to_dir=True)),
    F("finetune-workdir-in-use", expect=LOCKED, setup=held()),
    F("finetune-resume-with-other-settings", expect="learning_rate: 0.001 -> 5e-05",
      setup=unfinished_finetune),
    F("finetune-missing-model", ["--model", "{base}/nowhere"],
      "does not exist or is not a directory", slow=True),
    F("finetune-truncated-model-weights", ["--model", "{base}/preset"], "is damaged",
      setup=copy_preset(truncate_weights), slow=True),
    F("finetune-model-config-disagrees-with-weights", ["--model", "{base}/preset"],
      "num_layers is 2 in config.json but 1 in model.weights.h5",
      setup=copy_preset(more_layers_in_config), slow=True),
    F("finetune-kind-of-known-task", ["--task", "rotten_tomatoes", "--task_kind", "regression"],
      "is a classification task, not regression", slow=True),
    F("finetune-squad-misaligned-answers", ["--task", "my_qa", "--task_kind", "qa",
                                            "--validation_file", "{base}/squad.json",
                                            "--sequence_length", "64", "--task_option",
                                            "max_query_length=16", "--task_option",
                                            "doc_stride=16"],
      train="{base}/squad.json", expect="No training questions", setup=squad_misaligned,
      slow=True),
    # tools/study.py
    Y("study-missing-workdir", ["--workdir="], "error: --workdir is required."),
    Y("study-unknown-config-key", ["--config.train.stepz=3"],
      "error: unknown config key --config.train.stepz"),
    Y("study-bad-row", ["--rows=minilm"], "OBJECTIVE/INIT"),
    Y("study-bad-init", ["--rows=minilm/copy"], "init must be one of", slow=True),
    Y("study-task-without-train-file", ["--tasks=mine={base}"], "no train.jsonl"),
    Y("study-other-settings", expect="holds a study with other settings",
      setup=write("run/study_config.json", '{"steps": 999}')),
    Y("study-workdir-in-use", expect=LOCKED, setup=held()),
    Y("study-distill-links-outside", expect="distill" + LINK,
      setup=link("distill", to_dir=True)),
    # tools/export_tflite.py
    T("tflite-name-escapes", TFLITE + ["--name", "../../x"], "Invalid --name '../../x'"),
    T("tflite-unknown-mode", TFLITE[:-4] + ["--modes", "float8"], "Unknown modes ['float8']",
      slow=True),
    T("tflite-int8-with-tokenizer", TFLITE[:-4] + ["--modes", "int8", "--with_tokenizer"],
      "int8 needs token ids", slow=True),
    T("tflite-missing-output-dir", TFLITE[:2], "error: Missing required flags: --output_dir"),
    T("tflite-existing-report", TFLITE, "exist; pass --overwrite",
      setup=write("run/report.json", "{}"), slow=True),
    T("tflite-report-links-outside", TFLITE, "report.json" + LINK, setup=link("report.json")),
    T("tflite-output-dir-in-use", TFLITE, LOCKED, setup=held()),
    T("tflite-output-dir-is-a-file", TFLITE, "exists and is a file",
      setup=write("run", "x"), slow=True),
    # tools/export_savedmodel.py
    S("savedmodel-missing-export-dir", SAVEDMODEL[:2],
      "error: Missing required flags: --export_dir"),
    S("savedmodel-name-escapes", SAVEDMODEL[:5] + ["../x"], "Invalid model name '../x'"),
    S("savedmodel-existing-version", SAVEDMODEL + ["--version", "1"], "never overwritten",
      setup=mkdir("run/student/1"), slow=True),
    S("savedmodel-negative-version", SAVEDMODEL + ["--version", "-1"],
      "version must be a non-negative integer", slow=True),
    S("savedmodel-model-dir-in-use", SAVEDMODEL, LOCKED, setup=held("run/student")),
    S("savedmodel-version-links-outside", SAVEDMODEL, "7" + LINK,
      setup=link("student/7", to_dir=True)),
    S("savedmodel-missing-model", ["--model", "{base}/nowhere"] + SAVEDMODEL[2:],
      "nowhere", slow=True),
    # tools/export_hf.py
    H("hf-existing-output", ["--model", "{teacher}", "--output_dir", "{run}"],
      "already exists and is not empty", setup=write("run/config.json", "{}"), slow=True),
    H("hf-output-in-use", ["--model", "{teacher}", "--output_dir", "{run}"], LOCKED,
      setup=held(".run.lock", kind="file")),
    H("hf-missing-model", ["--model", "{base}/nowhere", "--output_dir", "{run}"],
      "does not exist or is not a directory", slow=True),
    # tools/compare.py
    Case("compare-bad-seeds", "compare.py", lambda i, b: [
        "--models", i["teacher"], "--task", "toy", "--workdir", _run_dir(b), "--seeds", "a"],
        "--seeds must be integers"),
    Case("compare-workdir-in-use", "compare.py", lambda i, b: [
        "--models", i["teacher"], "--task", "toy", "--train_file", i["train"],
        "--workdir", _run_dir(b)], LOCKED, setup=held(), slow=True),
    # tools/kill_campaign.py
    Case("kill-campaign-nonempty-workdir", "kill_campaign.py", lambda i, b: [
        "--workdir", b], "exists and is not an empty directory", setup=write("run/x", "")),
]


# --------------------------------------------------------------------------- running them


def _listing(base):
    """Everything under `base` except its work directory `base/run` (when
    that is a directory: a tool may create it)."""
    out = {}
    for directory, dirs, files in os.walk(base):
        rel_dir = os.path.relpath(directory, base)
        if rel_dir == "run" or rel_dir.startswith("run" + os.sep):
            dirs[:] = []
            continue
        for name in dirs + files:
            path = os.path.join(directory, name)
            rel = os.path.normpath(os.path.join(rel_dir, name))
            if rel == "run" and os.path.isdir(path) and not os.path.islink(path):
                continue
            st = os.lstat(path)
            if os.path.islink(path):
                out[rel] = ("link", os.readlink(path))
            elif os.path.isdir(path):
                out[rel] = ("dir",)
            else:
                out[rel] = ("file", st.st_size, st.st_mtime_ns, oct(st.st_mode))
    return out


def _run_case(case, inputs, base):
    os.makedirs(base)
    holder = case.setup(base, inputs) if case.setup else None
    before = _listing(base)
    command = [sys.executable, os.path.join(TOOLS_DIR, case.tool), *case.args(inputs, base)]
    if case.wrap:
        command = case.wrap(command)
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONUNBUFFERED="1")
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=420, cwd=REPO_ROOT,
                              env=env)
    finally:
        if holder is not None:
            holder.kill()
            holder.wait()
    after = _listing(base)
    if holder is not None:  # the holder's own lock file, removed with it, is not the tool's
        before = {k: v for k, v in before.items() if not k.endswith(".lock")}
        after = {k: v for k, v in after.items() if not k.endswith(".lock")}
    return proc, before, after


def _selected(request):
    ids = set()
    for item in request.session.items:
        if item.module is sys.modules[__name__] and hasattr(item, "callspec"):
            ids.add(item.callspec.params.get("case"))
    return [c for c in CASES if c.id in ids]


@pytest.fixture(scope="module")
def results(request, inputs, tmp_path_factory):
    """Runs every selected case, a few at a time; also lists the shared
    inputs before and after."""
    root = tmp_path_factory.mktemp("cases")
    cases = _selected(request)
    before = _listing(inputs["root"])
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.time()
    with concurrent.futures.ThreadPoolExecutor(max_workers=(os.cpu_count() or 2) + 1) as pool:
        futures = {c.id: pool.submit(_run_case, c, inputs, str(root / c.id)) for c in cases}
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"{len(cases)} cases: {time.time() - start:.0f} s wall, "
          f"{used.ru_utime + used.ru_stime - cpu.ru_utime - cpu.ru_stime:.0f} s CPU")
    runs = {k: (f, str(root / k)) for k, f in futures.items()}
    return {"runs": runs, "inputs": (before, _listing(inputs["root"]))}


def _param(case):
    return pytest.param(case.id, id=case.id, marks=[pytest.mark.slow] if case.slow else [])


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_bad_input(case, results):
    spec = next(c for c in CASES if c.id == case)
    future, base = results["runs"][case]
    proc, before, after = future.result()
    output = proc.stdout + proc.stderr
    tail = output[-3000:]
    assert proc.returncode == spec.code, tail
    assert "Traceback" not in output, tail
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    print(case, errors)
    if spec.expect is None:
        assert errors == [], tail
    else:
        assert len(errors) == 1, tail
        assert spec.expect in errors[0], errors[0]
    assert after == before, "written outside the work directory"
    if spec.check:
        spec.check(base)


def test_the_table_is_big_enough():
    assert len(CASES) >= 45
    assert len([c for c in CASES if not c.slow]) >= 45
    assert len({c.id for c in CASES}) == len(CASES)


def test_shared_inputs_are_unchanged(results):
    """The inputs the cases read (teacher, corpus, task files) are left alone."""
    before, after = results["inputs"]
    assert after == before


def test_a_second_distillation_in_the_same_workdir_is_refused(inputs, tmp_path):
    """Two tools/distill.py on one work directory, started 2 s apart: one
    trains, the other exits with one error line naming the first one's pid
    (without the lock both trained from step 0 and metrics.csv held every
    step twice)."""
    run = tmp_path / "run"
    command = [sys.executable, os.path.join(TOOLS_DIR, "distill.py"),
               *_distill(inputs, run, "--config.train.log_every=1", steps=40)]
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2")
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             cwd=REPO_ROOT, env=env)
    try:
        first.wait(timeout=2)
    except subprocess.TimeoutExpired:
        pass
    second = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              cwd=REPO_ROOT, env=env)
    outputs = {p.pid: "".join(p.communicate(timeout=600)) for p in (first, second)}
    codes = sorted((p.returncode, p.pid) for p in (first, second))
    (ok_code, winner), (refused_code, loser) = codes
    assert (ok_code, refused_code) == (0, 1), outputs
    assert "Traceback" not in outputs[loser]
    errors = [line for line in outputs[loser].splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith(f"error: another run (pid {winner}, started ")
    assert errors[0].endswith(f"holds the work directory {run}; wait for it to finish, or use "
                              "another directory.")
    rows = (run / "metrics.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == list(range(1, 41))
    assert json.loads((run / "report.json").read_text())["steps"] == 40
    assert not (run / ".workdir.lock").exists()
