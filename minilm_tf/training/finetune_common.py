"""What every fine-tuning run shares: its config, task kind, optimizer,
work directory rules and the common part of its report."""

import dataclasses
import logging
import os
import shutil
from typing import Any, Dict, Optional

from minilm_tf.optimizers.adamw import make_adamw
from minilm_tf.tasks import finetuned
from minilm_tf.tasks.classification import data as classification_data
from minilm_tf.tasks.classification.registry import get_task_spec, load_capped_task, normalize_task_name
from minilm_tf.tasks.classification.model import DEFAULT_SEQUENCE_LENGTH, POOLING_CHOICES
from minilm_tf.training import resume

logger = logging.getLogger(__name__)

QA_TASK_NAMES = ("squad", "squad_v1", "squad_v1.1", "squad1", "squad_v2", "squad_v2.0",
                 "squad2", "squad/v1.1", "squad/v2.0", "qa", "mlqa")


@dataclasses.dataclass
class FinetuneConfig:
    """Everything a fine-tuning run needs (the CLI flags map 1:1 onto it)."""

    model: str
    task: str
    workdir: str
    task_kind: Optional[str] = None  # classification / regression / qa
    train_file: Optional[str] = None
    validation_file: Optional[str] = None
    test_file: Optional[str] = None
    file_format: Optional[str] = None
    text_key: Optional[str] = None
    text_pair_key: Optional[str] = None
    label_key: Optional[str] = None
    tfds_data_dir: Optional[str] = None
    tfds_download: bool = True
    epochs: int = 3
    batch_size: int = 32
    eval_batch_size: int = 64
    learning_rate: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    clipnorm: Optional[float] = 1.0
    sequence_length: Optional[int] = None  # None: 128 (QA: the QA module's default)
    dropout: float = 0.1
    # Classifier head: `cls` (the backbone's keras-hub text classifier, BERT's
    # pooled [CLS]), `mean` / `max` over real tokens (a sentence encoder's
    # pooling) or `auto` (the checkpoint's sentence-transformers pooling, else cls).
    pooling: str = "cls"
    early_stopping_patience: Optional[int] = 2  # epochs without improvement; None: off
    seed: int = 0
    max_train_examples: Optional[int] = None
    max_eval_examples: Optional[int] = None
    log_every: int = 50  # training progress line every N steps (and at each epoch's end)
    latency_examples: int = 256  # 0 disables the latency measurement
    latency_batch_size: Optional[int] = None  # None: eval_batch_size
    save_model: bool = True
    overwrite: bool = False
    strategy: str = "default"  # minilm_tf.training.distribute.STRATEGIES
    tpu_address: str = ""
    precision: str = "float32"  # or mixed_bfloat16 / mixed_float16
    jit_compile: bool | str = "auto"  # XLA for the train and predict steps; see resolve_jit_compile
    # Trace the steps with minilm_tf.layers.fast_paths; None: only steps that
    # are not XLA-compiled (inside XLA they cost time, docs/performance.md).
    fast_paths: Optional[bool] = None
    # Task-stage distillation (classification / regression): a fine-tuning run
    # of a teacher on the same task (its workdir) whose logits the student
    # learns besides the labels (minilm_tf.losses.logits); None: labels only.
    teacher_run: Optional[str] = None
    kd_alpha: float = 0.5  # weight of the teacher term (0: labels only, 1: teacher only)
    kd_temperature: float = 2.0
    extra: Dict[str, Any] = dataclasses.field(default_factory=dict)  # task-specific

    def resolved_sequence_length(self) -> int:
        return self.sequence_length or DEFAULT_SEQUENCE_LENGTH

    def validate(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}.")
        if self.batch_size < 1 or self.eval_batch_size < 1:
            raise ValueError("batch sizes must be >= 1.")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}.")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}.")
        if self.sequence_length is not None and self.sequence_length < 8:
            raise ValueError(f"sequence_length must be >= 8, got {self.sequence_length}.")
        if self.max_train_examples is not None and self.max_train_examples < 1:
            raise ValueError("max_train_examples must be >= 1.")
        if self.max_eval_examples is not None and self.max_eval_examples < 1:
            raise ValueError("max_eval_examples must be >= 1.")
        if self.pooling not in POOLING_CHOICES:
            raise ValueError(f"pooling must be one of {POOLING_CHOICES}, got {self.pooling!r}.")
        if self.log_every < 1:
            raise ValueError(f"log_every must be >= 1, got {self.log_every}.")
        if not 0.0 <= self.kd_alpha <= 1.0:
            raise ValueError(f"kd_alpha must be in [0, 1], got {self.kd_alpha}.")
        if not self.kd_temperature > 0:
            raise ValueError(f"kd_temperature must be > 0, got {self.kd_temperature}.")

def task_kind(task: str, kind: Optional[str] = None) -> str:
    """classification / regression / qa for a task name (+ optional override)."""
    name = normalize_task_name(task)
    if name in QA_TASK_NAMES:
        if kind and kind != classification_data.QA:
            raise ValueError(f"Task {task!r} is a qa task, not {kind}.")
        return classification_data.QA
    if kind == classification_data.QA:
        return classification_data.QA
    return get_task_spec(task, kind).kind

def uses_fast_paths(config: FinetuneConfig, jit_compile: bool) -> bool:
    """Whether the run's steps trace with `minilm_tf.layers.fast_paths`."""
    return config.fast_paths if config.fast_paths is not None else not jit_compile


def make_optimizer(learning_rate: float, total_steps: int, warmup_ratio: float = 0.1,
                   weight_decay: float = 0.01, clipnorm: Optional[float] = 1.0):
    """AdamW with BERT's schedule (`minilm_tf.optimizers.adamw.make_adamw`): linear
    warm-up over `warmup_ratio` of the steps, linear decay to 0; no weight
    decay on biases and LayerNorm; global gradient-norm clipping."""
    warmup_steps = int(round(total_steps * warmup_ratio))
    return make_adamw(learning_rate, total_steps, warmup_steps, weight_decay=weight_decay,
                      clipnorm=clipnorm)


def load_task_data(config: FinetuneConfig) -> classification_data.TaskData:
    """The task's data with `max_train_examples` / `max_eval_examples` applied."""
    return load_capped_task(
        config.task, train_file=config.train_file, validation_file=config.validation_file,
        test_file=config.test_file, kind=config.task_kind,
        tfds_data_dir=config.tfds_data_dir, tfds_download=config.tfds_download,
        file_format=config.file_format, text_key=config.text_key,
        text_pair_key=config.text_pair_key, label_key=config.label_key,
        max_train_examples=config.max_train_examples,
        max_eval_examples=config.max_eval_examples, seed=config.seed,
        task_options=config.extra or None)


def clear_previous_run(workdir: str, overwrite: bool = False) -> None:
    """In a held work directory (`minilm_tf.utils.workdir.hold`): refuses a
    previous run's outputs unless `overwrite` (then they are deleted first,
    and logged). An unfinished run (checkpoints, no report.json) is kept for
    `run_finetune` to resume; the outputs it had begun to write are removed
    (they are written again)."""
    existing = [n for n in finetuned.RUN_OUTPUTS if os.path.lexists(os.path.join(workdir, n))]
    unfinished = (os.path.isdir(os.path.join(workdir, resume.CHECKPOINT_DIR))
                  and finetuned.REPORT_FILE not in existing)
    if existing and not overwrite and not unfinished:
        raise FileExistsError(
            f"workdir {workdir} already holds a previous run's outputs ({existing}); "
            "use a new `workdir` or pass `overwrite=True` to replace them."
        )
    if overwrite:
        existing.append(resume.CHECKPOINT_DIR)
    for n in existing:
        path = os.path.join(workdir, n)
        if not os.path.lexists(path):
            continue
        logger.warning("%s: removing %s", "overwrite" if overwrite else "resume", path)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.remove(path)



def config_dict(config: FinetuneConfig) -> Dict[str, Any]:
    d = dataclasses.asdict(config)
    d.pop("overwrite", None)
    return d
