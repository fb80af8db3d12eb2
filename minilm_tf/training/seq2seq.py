"""Fine-tune and evaluate a sequence-to-sequence generator (UniLM s2s-ft style).

`run_seq2seq(config)` is load -> build -> fit -> evaluate -> save -> report,
each a short function below. The work directory (`minilm_tf.utils.workdir.hold`:
created, locked, cleaned) receives

- `report.json`: the settings, the data (sizes, truncated sources/targets),
  training (loss per epoch, examples/s), ROUGE-1/2/L and BLEU-4 on
  validation and test, generation speed (generated tokens/s, end tokens
  included, tracing excluded) and the decoding settings;
- `samples.jsonl`: the first `num_samples` predictions of each split, with
  their source and reference;
- `model/`: `model.keras` (the `Seq2SeqLM`, `keras.saving.load_model`), the
  fine-tuned encoder with its tokenizer as a keras-hub preset (what
  `load_encoder(dir)` reads; the backbone weights are stored twice), and
  `generation.json` (the packing and decoding settings);
- `checkpoints/`: `minilm_tf.training.resume`'s checkpoints. A run killed
  (SIGKILL) or stopped (SIGTERM/SIGINT) resumes when rerun with the same
  settings; they are checked (`resume.check_config`).

References are compared with predictions after the tokenizer's round trip
(`Seq2SeqPacker.normalise`: e.g. lower-cased, punctuation split for BERT's
uncased vocabulary), since that is the only form the model can produce.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import time
from typing import Any, Callable, Dict, Optional

import keras
import tensorflow as tf

from minilm_tf.models.encoders import load_encoder, save_encoder
from minilm_tf.models.loaded_encoder import LoadedEncoder
from minilm_tf.optimizers.adamw import make_adamw
from minilm_tf.tasks.finetuned import MODEL_DIR, REPORT_FILE
from minilm_tf.tasks.generation.data import Seq2SeqPacker, load_seq2seq_task
from minilm_tf.tasks.generation.decoding import DecodingConfig, generate_texts
from minilm_tf.tasks.generation.losses import SmoothedTokenCrossEntropy
from minilm_tf.tasks.generation.metrics import generation_metrics
from minilm_tf.tasks.generation.model import Seq2SeqLM
from minilm_tf.training import resume
from minilm_tf.training.distribute import hold_for_worker, make_strategy
from minilm_tf.training.model_cards import write_card
from minilm_tf.utils import fileio
from minilm_tf.utils.seeding import set_random_seed
from minilm_tf.utils.versions import library_versions

SAMPLES_FILE = "samples.jsonl"
MODEL_FILE = "model.keras"
GENERATION_FILE = "generation.json"


@dataclasses.dataclass
class Seq2SeqConfig:
    """Settings of a seq2seq fine-tuning run (the tool's flags)."""

    model: str
    task: str
    workdir: str
    train_file: Optional[str] = None
    validation_file: Optional[str] = None
    test_file: Optional[str] = None
    source_key: str = "source"
    target_key: str = "target"
    tfds_data_dir: Optional[str] = None
    tfds_download: bool = True
    max_source_length: int = 256
    max_target_length: int = 32
    epochs: int = 3
    batch_size: int = 16
    eval_batch_size: int = 32
    learning_rate: float = 1e-4
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    clipnorm: float = 1.0
    label_smoothing: float = 0.1
    seed: int = 0
    max_train_examples: Optional[int] = None
    max_eval_examples: Optional[int] = None
    beam_size: int = 1
    length_penalty: float = 1.0
    min_length: int = 0
    max_length: Optional[int] = None  # generated tokens; default max_target_length
    no_repeat_ngram_size: int = 0
    num_samples: int = 20
    strategy: str = "default"
    precision: str = "float32"
    log_every: int = 50
    save_model: bool = True
    overwrite: bool = False

    def decoding(self) -> DecodingConfig:
        return DecodingConfig(max_length=self.max_length or self.max_target_length,
                              min_length=self.min_length, beam_size=self.beam_size,
                              length_penalty=self.length_penalty,
                              no_repeat_ngram_size=self.no_repeat_ngram_size)


def _identity(config: Seq2SeqConfig) -> Dict[str, Any]:
    """The settings a resumed run must share, in `resume.check_config`'s keys."""
    return {
        "model": config.model, "task": config.task, "task_kind": "seq2seq",
        "train_file": config.train_file, "validation_file": config.validation_file,
        "test_file": config.test_file, "epochs": config.epochs,
        "batch_size": config.batch_size, "learning_rate": config.learning_rate,
        "weight_decay": config.weight_decay, "warmup_ratio": config.warmup_ratio,
        "clipnorm": config.clipnorm,
        "sequence_length": [config.max_source_length, config.max_target_length],
        "seed": config.seed, "max_train_examples": config.max_train_examples,
        "precision": config.precision,
        "extra": {"label_smoothing": config.label_smoothing, "source_key": config.source_key,
                  "target_key": config.target_key},
    }


# --- load -------------------------------------------------------------------


def load_data(config: Seq2SeqConfig, log) -> Dict[str, Any]:
    """The splits, subsampled as configured (train by `seed`, eval by 0)."""
    splits = load_seq2seq_task(config.task, train_file=config.train_file,
                               validation_file=config.validation_file,
                               test_file=config.test_file, source_key=config.source_key,
                               target_key=config.target_key,
                               tfds_data_dir=config.tfds_data_dir,
                               tfds_download=config.tfds_download)
    splits["train"] = splits["train"].subsample(config.max_train_examples, config.seed)
    for name in ("validation", "test"):
        if splits.get(name) is not None:
            splits[name] = splits[name].subsample(config.max_eval_examples, 0)
    log("data: " + ", ".join(f"{k} {len(v)}" for k, v in splits.items() if v is not None))
    return splits


# --- build ------------------------------------------------------------------


def build_model(config: Seq2SeqConfig, total_steps: int):
    """(compiled Seq2SeqLM, packer); call inside the strategy's scope."""
    encoder = load_encoder(config.model)
    if encoder.tokenizer is None:
        raise ValueError(f"{config.model} has no tokenizer; generation needs one.")
    packer = Seq2SeqPacker(encoder.tokenizer, config.max_source_length,
                           config.max_target_length, encoder.backbone.max_sequence_length)
    set_random_seed(config.seed, encoder.tokenizer)
    model = Seq2SeqLM(encoder.backbone, hidden_act=encoder.hidden_act)
    model.compile(optimizer=make_adamw(config.learning_rate, total_steps,
                                       int(round(total_steps * config.warmup_ratio)),
                                       weight_decay=config.weight_decay,
                                       clipnorm=config.clipnorm),
                  loss=SmoothedTokenCrossEntropy(config.label_smoothing), jit_compile=False)
    return model, packer


# --- fit --------------------------------------------------------------------


def fit(model, features, labels, config: Seq2SeqConfig, directory: str, log):
    """Trains with `resume.fit_resumable` (checkpointed, resumable)."""
    n = len(labels)
    steps = math.ceil(n / config.batch_size)

    def epoch_dataset(epoch, first_batch):
        order = resume.epoch_order(n, config.seed, epoch)[first_batch * config.batch_size:]
        x = {k: v[order] for k, v in features.items()}
        ds = tf.data.Dataset.from_tensor_slices((x, labels[order])).batch(config.batch_size)
        return ds.prefetch(2), len(order)

    return resume.fit_resumable(model, epoch_dataset, epochs=config.epochs,
                                steps_per_epoch=steps, directory=directory, log=log,
                                log_every=config.log_every, batch_size=config.batch_size)


# --- evaluate ---------------------------------------------------------------


def evaluate(model, packer, split, config: Seq2SeqConfig) -> Dict[str, Any]:
    """Decodes a split; its metrics, speed and predictions."""
    result = generate_texts(model, packer, split.sources, config.decoding(),
                            batch_size=config.eval_batch_size)
    references = packer.normalise(split.targets)
    return {
        "examples": len(split),
        "metrics": generation_metrics(result.texts, references),
        "generated_tokens": result.generated_tokens,
        "decode_seconds": result.seconds,
        "trace_seconds": result.compile_seconds,
        "tokens_per_second": result.tokens_per_second,
        "_predictions": result.texts,
        "_references": references,
    }


# --- save and report ------------------------------------------------------


def save_model(model, packer, config: Seq2SeqConfig, directory: str) -> str:
    """Writes `model/` atomically (the model, its tokenizer, the settings)."""
    with fileio.atomic_directory(directory, overwrite=True) as tmp:
        model.save(os.path.join(tmp, MODEL_FILE))
        # A keras-hub preset of the fine-tuned encoder and its tokenizer
        # (`load_encoder(dir)` reads it; the tokenizer is loaded from it).
        save_encoder(LoadedEncoder(model.backbone, packer.tokenizer, config.model,
                                   model.hidden_act), tmp)
        fileio.atomic_write_json(os.path.join(tmp, GENERATION_FILE), {
            "max_source_length": config.max_source_length,
            "max_target_length": config.max_target_length,
            "decoding": dataclasses.asdict(config.decoding()),
            "start_id": packer.start_id, "end_id": packer.end_id, "pad_id": packer.pad_id,
        })
    return directory


def load_generation_model(directory: str):
    """(Seq2SeqLM, Seq2SeqPacker, DecodingConfig) from a saved `model/` dir."""
    import keras_hub

    with open(os.path.join(directory, GENERATION_FILE), encoding="utf-8") as f:
        settings = json.load(f)
    model = keras.saving.load_model(os.path.join(directory, MODEL_FILE))
    tokenizer = keras_hub.tokenizers.Tokenizer.from_preset(directory)
    packer = Seq2SeqPacker(tokenizer, settings["max_source_length"],
                           settings["max_target_length"], model.max_sequence_length)
    return model, packer, DecodingConfig(**settings["decoding"])


def write_samples(path: str, splits, results, n: int) -> None:
    lines = []
    for name, result in results.items():
        for i in range(min(n, result["examples"])):
            lines.append(json.dumps({"split": name, "source": splits[name].sources[i][:500],
                                     "reference": result["_references"][i],
                                     "prediction": result["_predictions"][i]}))
    fileio.atomic_write_text(path, "\n".join(lines) + "\n")



def _clear_previous(wd, overwrite: bool) -> None:
    if not os.path.exists(wd.path(REPORT_FILE)):
        return
    if not overwrite:
        raise FileExistsError(f"{wd.root} holds a finished run ({REPORT_FILE}); use a new "
                              "`workdir` or pass `overwrite=True`.")
    for name in (REPORT_FILE, SAMPLES_FILE):
        if os.path.exists(wd.path(name)):
            os.remove(wd.path(name))
    for name in (MODEL_DIR, resume.CHECKPOINT_DIR):
        shutil.rmtree(wd.path(name), ignore_errors=True)


def run_seq2seq(config: Seq2SeqConfig,
                log_fn: Callable[[str], None] = print) -> Dict[str, Any]:
    """Load -> build -> fit -> evaluate -> save -> report (see the module doc)."""
    t_start = time.perf_counter()
    previous_policy = keras.mixed_precision.global_policy()
    # Before any other TensorFlow op (MultiWorkerMirroredStrategy needs that).
    strategy = make_strategy(config.strategy)
    with hold_for_worker(config.workdir, strategy) as (wd, checkpoints):
        _clear_previous(wd, config.overwrite)
        resume.check_config(checkpoints, _identity(config))
        splits = load_data(config, log_fn)
        steps = math.ceil(len(splits["train"]) / config.batch_size) * config.epochs
        keras.mixed_precision.set_global_policy(config.precision)
        try:
            with strategy.scope():
                model, packer = build_model(config, steps)
            features, labels, train_stats = packer.pack(splits["train"])
            fit_result = fit(model, features, labels, config, checkpoints, log_fn)
            results, pack_stats = {}, {"train": train_stats.as_dict()}
            for name in ("validation", "test"):
                if splits.get(name) is None:
                    continue
                pack_stats[name] = packer.pack(splits[name])[2].as_dict()
                results[name] = evaluate(model, packer, splits[name], config)
                log_fn(f"{name}: " + " ".join(f"{k}={v:.2f}" for k, v in
                                               results[name]["metrics"].items())
                       + f" tokens/s={results[name]['tokens_per_second']:.1f}")
        finally:
            keras.mixed_precision.set_global_policy(previous_policy)
        if config.save_model:
            save_model(model, packer, config, wd.path(MODEL_DIR))
        write_samples(wd.path(SAMPLES_FILE), splits, results, config.num_samples)
        report = {
            "task": config.task, "model": config.model, "objective": "next-token (causal "
            "target, UniLM seq2seq mask)", "config": dataclasses.asdict(config),
            "data": {"sizes": {k: len(v) for k, v in splits.items() if v is not None},
                     "origin": {k: v.origin for k, v in splits.items() if v is not None},
                     "packing": pack_stats},
            "parameters": int(model.count_params()),
            "train": {"fit_seconds": fit_result.fit_seconds,
                      "examples_trained_this_process": fit_result.examples_trained,
                      "examples_per_second": (fit_result.examples_trained
                                              / max(fit_result.fit_seconds, 1e-9)),
                      "epoch_logs": fit_result.epoch_logs},
            "decoding": dataclasses.asdict(config.decoding()),
            "results": results,
            "generation_tokens_per_second": {k: v["tokens_per_second"]
                                             for k, v in results.items()},
            "model_dir": wd.path(MODEL_DIR) if config.save_model else None,
            "wall_seconds": time.perf_counter() - t_start,
            "versions": library_versions(),
        }
        write_card(wd.path(MODEL_DIR), report)
        fileio.atomic_write_json(wd.path(REPORT_FILE), report, clean=True)
    return report
