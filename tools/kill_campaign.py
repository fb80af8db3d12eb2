r"""Kill campaign: SIGKILL a distillation and a fine-tuning run again and again,
resume each time, and check that nothing was lost or corrupted.

    python tools/kill_campaign.py --workdir runs/kill_campaign --kills 20 --seed 0

Half the kills go to tools/distill.py, half to tools/finetune.py (both on
tiny inputs built in <workdir>/inputs: a random 2-layer BERT teacher with the
real vocabulary, a 400-line corpus, a toy sentiment task). For each tool:

1. an uninterrupted run (the reference);
2. the same command in another work directory, started again after every
   SIGKILL. The kills are aimed at seeded random points across the run: a
   target step drawn uniformly from the whole run, then a random delay
   (--jitter_s) after the session's log reaches it; a share of them
   (--write_share) instead waits there until a checkpoint write has begun
   (a `ckpt-N_temp/` directory exists) and kills then; the last kill waits
   for the last step's checkpoint and kills before the report is written.
   The session after the last kill runs to the end.

Checks (each failure is listed; exit status 1 if any):

- the final weights (every array of every `*.weights.h5` of the student /
  fine-tuned model) equal the uninterrupted run's within
  |a - b| <= --atol + --rtol * |b|; the largest difference is reported;
- no kill lost more than one checkpoint interval: the last step the killed
  session logged minus the step the next session resumed from (its
  "Resumed from" / "resuming from" line) is at most train.checkpoint_every
  (distillation) or one epoch (fine-tuning);
- nothing partial is left: no temporary names (`minilm_tf.utils.workdir`), no lock
  file, no checkpoint file the checkpoint index does not name, no
  `checkpoints/` after the finished fine-tuning, and metrics.csv lists every
  step once, in order.

Writes <workdir>/campaign.json (also printed).
"""

import glob
import json
import os
import random
import re
import signal
import subprocess
import sys
import time

from absl import app, flags, logging

import _cli  # tools/_cli.py: one error line for bad flags
import _kill_checks  # tools/_kill_checks.py: the checks of a finished campaign

_TOOLS = os.path.dirname(os.path.abspath(__file__))
_REPO = os.path.dirname(_TOOLS)

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Campaign directory (must not exist or be empty).")
flags.DEFINE_integer("kills", 20, "SIGKILLs in all, half per tool (distillation gets the odd one).")
flags.DEFINE_integer("seed", 0, "Seed of the kill points (the runs themselves use seed 0).")
flags.DEFINE_float("write_share", 0.3, "Share of kills aimed at a checkpoint write.")
flags.DEFINE_float("jitter_s", 0.2, "Largest delay after a kill point's step is logged.")
flags.DEFINE_integer("distill_steps", 40, "Distillation steps.")
flags.DEFINE_integer("checkpoint_every", 4, "Distillation checkpoint interval (steps).")
flags.DEFINE_integer("finetune_epochs", 10, "Fine-tuning epochs (a checkpoint after each).")
flags.DEFINE_integer("finetune_examples", 64, "Toy training examples (batch size 8).")
flags.DEFINE_float("rtol", 1e-5, "Relative tolerance of the final-weights comparison.")
flags.DEFINE_float("atol", 1e-6, "Absolute tolerance of the final-weights comparison.")
flags.DEFINE_integer("session_timeout_s", 900, "Longest a session may run.")

_BATCH = 8


# --------------------------------------------------------------------------- inputs


def build_inputs(directory: str) -> dict:
    """A tiny teacher preset, a corpus and a toy task under `directory`."""
    import keras
    import keras_hub

    from minilm_tf.models.encoders import LoadedEncoder, builtin_model_dir, save_encoder

    os.makedirs(directory, exist_ok=True)
    # The real vocabulary, tiny random weights (2 layers, width 32).
    tokenizer = keras_hub.models.BertTokenizer(
        vocabulary=os.path.join(builtin_model_dir("all-minilm-l6-v2"), "vocab.txt"),
        lowercase=True, strip_accents=True)
    teacher = os.path.join(directory, "teacher")
    if not os.path.isdir(teacher):
        keras.utils.set_random_seed(0)
        backbone = keras_hub.models.BertBackbone(
            vocabulary_size=tokenizer.vocabulary_size(), num_layers=2, num_heads=2,
            hidden_dim=32, intermediate_dim=64, max_sequence_length=64)
        save_encoder(LoadedEncoder(backbone, tokenizer, "tiny-teacher", "gelu_approximate"),
                     teacher)
    rng = random.Random(0)
    topics = ["cats", "markets", "music", "football", "science", "weather", "trains"]
    corpus = os.path.join(directory, "corpus.txt")
    with open(corpus, "w", encoding="utf-8") as f:
        for i in range(400):
            f.write(f"Sentence {i} talks about {rng.choice(topics)} and {rng.choice(topics)} "
                    f"in town {i % 9}, said the {rng.choice(['mayor', 'cook', 'pilot'])}.\n")
    good, bad = ["good", "great", "excellent", "wonderful", "love"], [
        "bad", "awful", "terrible", "boring", "hate"]
    fill = "the movie was really quite a film and story with actors plot".split()
    files = {}
    for split, n in (("train", FLAGS.finetune_examples), ("dev", 32)):
        path = os.path.join(directory, f"{split}.jsonl")
        with open(path, "w", encoding="utf-8") as f:
            for i in range(n):
                words = rng.sample(fill, 4)
                words.insert(rng.randrange(5), rng.choice(good if i % 2 else bad))
                f.write(json.dumps({"text": " ".join(words),
                                    "label": "positive" if i % 2 else "negative"}) + "\n")
        files[split] = path
    return {"teacher": teacher, "corpus": corpus, **files}


def distill_command(inputs: dict, workdir: str) -> list[str]:
    return [
        sys.executable, os.path.join(_TOOLS, "distill.py"), f"--workdir={workdir}",
        f"--config={os.path.join(_REPO, 'configs', 'base.py')}",
        f"--config.teacher={inputs['teacher']}",
        f"--config.data.sources={inputs['corpus']}", "--config.data.mode=lines",
        "--config.student.num_layers=1", "--config.student.hidden_dim=32",
        "--config.student.num_heads=2", "--config.student.dropout=0.1",
        "--config.train.batch_size=4", "--config.data.seq_length=32",
        "--config.data.heldout_fraction=0.2", "--config.data.shuffle_buffer=64",
        "--config.eval.heldout_batches=1", "--config.train.warmup_steps=2",
        "--config.train.log_every=1", "--config.train.jit_compile=false",
        f"--config.train.checkpoint_every={FLAGS.checkpoint_every}",
        f"--config.train.steps={FLAGS.distill_steps}",
    ]


def finetune_command(inputs: dict, workdir: str) -> list[str]:
    return [
        sys.executable, os.path.join(_TOOLS, "finetune.py"), "--model", inputs["teacher"],
        "--task", "toy", "--train_file", inputs["train"], "--validation_file", inputs["dev"],
        "--workdir", workdir, "--epochs", str(FLAGS.finetune_epochs),
        "--batch_size", str(_BATCH), "--sequence_length", "16", "--learning_rate", "5e-3",
        "--dropout", "0.1", "--early_stopping_patience", "0", "--latency_examples", "0",
        "--log_every", "1", "--jit_compile", "false",
    ]


# --------------------------------------------------------------------------- the two tools


class Tool:
    """A tool's command, its step counts, and how its log shows progress
    (`progress`: a regex whose match -> the global step) and the step a
    session resumed from (`resumed`: likewise; no match: step 0)."""

    def __init__(self, name, command, total_steps, interval, progress, resumed, last_saved):
        self.name, self.command = name, command
        self.total_steps, self.interval = total_steps, interval
        self.progress, self.resumed = progress, resumed
        self.last_saved = last_saved  # workdir -> whether the last step's checkpoint exists

    def steps_logged(self, log: str) -> list[int]:
        regex, step = self.progress
        return [step(m) for m in regex.finditer(log)]

    def resumed_from(self, log: str) -> int:
        regex, step = self.resumed
        match = regex.search(log)
        return step(match) if match else 0


def distill_tool(inputs) -> Tool:
    step = lambda m: int(m.group(1))  # noqa: E731
    return Tool("distillation", lambda w: distill_command(inputs, w), FLAGS.distill_steps,
                FLAGS.checkpoint_every,
                progress=(re.compile(r"\] step (\d+)/\d+ "), step),
                resumed=(re.compile(r"Resumed from \S+ at step (\d+)\."), step),
                last_saved=lambda w: _read(os.path.join(w, "checkpoints", "checkpoint")).startswith(
                    f'model_checkpoint_path: "ckpt-{FLAGS.distill_steps}"'))


def finetune_tool(inputs) -> Tool:
    spe = -(-FLAGS.finetune_examples // _BATCH)  # steps per epoch: the interval
    # Both lines count epochs from 1: "epoch E step D/SPE" after step D of
    # epoch E, and "resuming from ckpt-N: epoch E, batch B" (E: the next one).
    step = lambda m: (int(m.group(1)) - 1) * spe + int(m.group(2))  # noqa: E731
    return Tool("fine-tuning", lambda w: finetune_command(inputs, w),
                spe * FLAGS.finetune_epochs, spe,
                progress=(re.compile(r"\] epoch (\d+) step (\d+)/\d+ "), step),
                resumed=(re.compile(r"resuming from \S+: epoch (\d+), batch (\d+)"), step),
                last_saved=lambda w: f'"epoch": {FLAGS.finetune_epochs},' in _read(
                    os.path.join(w, "checkpoints", "state.json")))


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        return ""


# --------------------------------------------------------------------------- sessions


def _env() -> dict:
    return dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2",
                PYTHONUNBUFFERED="1")


def _temp_dirs(workdir: str) -> list[str]:
    return glob.glob(os.path.join(glob.escape(workdir), "**", "ckpt-*_temp"), recursive=True)


class Session:
    """One start of a tool, its output in a log file."""

    def __init__(self, command, log_path):
        self.log_path = log_path
        self._log = open(log_path, "w", encoding="utf-8")
        self.proc = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT,
                                     env=_env(), cwd=_REPO)
        self.started = time.time()

    def text(self) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def wait_for_step(self, tool: Tool, step: int, timeout: float) -> bool:
        """Until the log shows `step` (True) or the process ends (False)."""
        while time.time() - self.started < timeout:
            if max(tool.steps_logged(self.text()), default=-1) >= step:
                return True
            if self.proc.poll() is not None:
                return False
            time.sleep(0.02)
        raise TimeoutError(f"{self.log_path}: step {step} not reached in {timeout:.0f} s")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.finish()

    def finish(self, timeout=None) -> int:
        code = self.proc.wait(timeout=timeout)
        self._log.close()
        return code


def run_campaign(tool: Tool, root: str, kills: int, rng: random.Random) -> dict:
    """The reference run, then the killed one; returns the figures."""
    logs = os.path.join(root, "logs", tool.name)
    os.makedirs(logs, exist_ok=True)
    straight = os.path.join(root, tool.name.replace("-", "") + "_uninterrupted")
    killed = os.path.join(root, tool.name.replace("-", "") + "_killed")
    t0 = time.time()
    reference = Session(tool.command(straight), os.path.join(logs, "uninterrupted.log"))
    code = reference.finish(timeout=FLAGS.session_timeout_s)
    if code != 0:
        raise RuntimeError(f"the uninterrupted {tool.name} run failed; see {reference.log_path}")
    straight_s = time.time() - t0

    targets = sorted(rng.randint(1, tool.total_steps) for _ in range(kills))
    records, sessions, t0 = [], 0, time.time()
    for i, target in enumerate(targets):
        session = Session(tool.command(killed), os.path.join(logs, f"session{i:02d}.log"))
        sessions += 1
        # False: the session ended first (it resumed after the last step).
        reached = session.wait_for_step(tool, target, FLAGS.session_timeout_s)
        aim = "checkpoint write" if rng.random() < FLAGS.write_share else "random"
        delay = rng.uniform(0, FLAGS.jitter_s)
        if i == len(targets) - 1:  # the last kill: after the last checkpoint, before the report
            aim = "after the last checkpoint"
        if reached and aim == "random":
            deadline = time.time() + delay
            while time.time() < deadline and session.proc.poll() is None:
                time.sleep(0.005)
        elif reached and aim == "checkpoint write":
            while not _temp_dirs(killed) and session.proc.poll() is None:
                time.sleep(0.001)
        elif reached:
            while not tool.last_saved(killed) and session.proc.poll() is None:
                time.sleep(0.001)
        finished = session.proc.poll() is not None
        if not finished:
            session.kill()
        records.append({"target_step": target, "aim": aim, "finished_first": finished,
                        "returncode": session.proc.returncode,
                        "killed_mid_write": bool(_temp_dirs(killed)),
                        "last_step_logged": max(tool.steps_logged(session.text()), default=0),
                        "log": session.log_path})
        if finished:
            if session.finish() != 0:
                raise RuntimeError(f"{session.log_path}: the session failed")
            break
    next_logs = [r["log"] for r in records[1:]]
    if not records or not records[-1]["finished_first"]:
        final = Session(tool.command(killed), os.path.join(logs, "final.log"))
        sessions += 1
        if final.finish(timeout=FLAGS.session_timeout_s) != 0:
            raise RuntimeError(f"the last {tool.name} session failed; see {final.log_path}")
        next_logs.append(final.log_path)
    killed_s = time.time() - t0

    # What each next session resumed from, from its own log.
    for record, path in zip([r for r in records if not r["finished_first"]], next_logs):
        with open(path, encoding="utf-8", errors="replace") as f:
            record["resumed_from"] = tool.resumed_from(f.read())
        record["steps_lost"] = max(0, record["last_step_logged"] - record["resumed_from"])
    return {
        "straight": straight, "killed": killed, "straight_wall_s": round(straight_s, 1),
        "killed_wall_s": round(killed_s, 1), "sessions": sessions, "records": records,
    }


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if not FLAGS.workdir:
        raise app.UsageError("--workdir is required.")
    if FLAGS.kills < 0 or not 0 <= FLAGS.write_share <= 1 or FLAGS.checkpoint_every < 1:
        raise app.UsageError("--kills must be >= 0, --write_share in [0, 1], "
                                  "--checkpoint_every >= 1.")
    root = os.path.abspath(FLAGS.workdir)
    if os.path.exists(root) and (not os.path.isdir(root) or os.listdir(root)):
        raise app.UsageError(f"--workdir {root} exists and is not an empty directory.")
    rng = random.Random(FLAGS.seed)
    inputs = build_inputs(os.path.join(root, "inputs"))
    summary = {"command": [os.path.relpath(a, _REPO) if a.startswith(_REPO) else a
                           for a in sys.argv], "seed": FLAGS.seed, "failures": []}
    for tool, kills, model in ((distill_tool(inputs), FLAGS.kills - FLAGS.kills // 2, "student"),
                               (finetune_tool(inputs), FLAGS.kills // 2, "model")):
        logging.info("%s: %d kills", tool.name, kills)
        result = run_campaign(tool, root, kills, rng)
        summary["failures"] += _kill_checks.check(tool, result, model, FLAGS.rtol, FLAGS.atol)
        summary[tool.name] = result
    summary["ok"] = not summary["failures"]
    with open(os.path.join(root, "campaign.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
    print(json.dumps(summary, indent=2))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    _cli.run(main)
