"""Model cards (`README.md`) that travel with what the runs write: a
distilled student's preset (teacher, objective, shape, relation heads,
corpus and tokens, steps, held-out loss before and after, initialisation)
and a fine-tuned model (base model, task, labels, validation and test
metrics, settings). Built from the runs' reports; each says how to load the
model in Keras and how to take it to transformers / sentence-transformers
(`tools/export_hf.py`). Local paths are reduced to their last component:
a card travels, a machine's paths should not."""

from __future__ import annotations

import os
from typing import Any, Dict, List

from minilm_tf.tasks.comparison import metrics_table
from minilm_tf.utils.fileio import atomic_write_text


def _name(spec: Any) -> str:
    spec = str(spec or "?")
    return os.path.basename(os.path.normpath(spec)) if os.sep in spec else spec


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return "-" if value is None else str(value)


def _losses(before: Dict[str, float] | None, after: Dict[str, float] | None) -> List[str]:
    if not before:
        return ["- Held-out distillation loss: not measured (no distillation steps)."]
    lines = ["| held-out loss | before | after |", "|---|---:|---:|"]
    for key in before:
        lines.append(f"| {key} | {_fmt(before.get(key))} | {_fmt((after or {}).get(key))} |")
    return lines


def distillation_card(report: Dict[str, Any], directory_name: str = "student") -> str:
    """The README.md of a distillation run's student preset."""
    config = report.get("config") or {}
    student = config.get("student") or {}
    corpus = (report.get("corpus") or {}).get("sources") or {}
    init = report.get("student_init") or {}
    objective = config.get("objective", "?")
    heads = config.get("num_relation_heads")
    lines = [
        "---",
        "library_name: keras-hub",
        "tags:",
        "- minilm_tf",
        "- knowledge-distillation",
        "- feature-extraction",
        "---",
        "",
        f"# {directory_name}",
        "",
        f"A {student.get('num_layers', '?')}-layer student of `{_name(config.get('teacher'))}`, "
        f"distilled with minilm_tf (`tools/distill.py`, objective `{objective}`).",
        "",
        "## Distillation",
        "",
        "| | |",
        "|---|---|",
        f"| teacher | `{_name(config.get('teacher'))}` ({_fmt(report.get('teacher_params'))} "
        "parameters) |",
        f"| student | {student.get('num_layers', '?')} layers x {student.get('hidden_dim', '?')} "
        f"hidden x {student.get('num_heads', '?')} heads "
        f"({_fmt(report.get('student_params'))} parameters) |",
        f"| objective | `{objective}` (teacher layer {config.get('teacher_layer', -1)}"
        + (f", {heads} relation heads" if heads else "") + ") |",
        f"| initialisation | `{init.get('mode', '?')}`"
        + (f", teacher layers {init['teacher_layers']}" if init.get("teacher_layers") else "")
        + " |",
        f"| steps | {_fmt(report.get('steps', 0))} x {(config.get('train') or {}).get('batch_size', '?')}"
        f" x {(config.get('data') or {}).get('seq_length', '?')} tokens = "
        f"{_fmt(report.get('tokens_seen'))} tokens |",
        f"| precision | {(config.get('train') or {}).get('precision', '?')} |",
        "",
        "Corpus:",
        "",
    ]
    lines += ([f"- `{_name(name)}`: {_fmt(s.get('documents'))} documents, "
               f"{_fmt(s.get('tokens'))} tokens" for name, s in corpus.items()]
              or ["- (not recorded)"])
    lines += ["", *_losses(report.get("heldout_loss_before"), report.get("heldout_loss_after")),
              "", *_usage(directory_name)]
    return "\n".join(lines) + "\n"


def _usage(directory_name: str) -> List[str]:
    return [
        "## Usage",
        "",
        "Keras (the activation and pooling the student was trained with):",
        "",
        "```python",
        "import minilm_tf",
        "",
        f'encoder = minilm_tf.load_encoder("{directory_name}")',
        "encoder.backbone, encoder.tokenizer",
        "```",
        "",
        f"Fine-tune it: `tools/finetune.py --model {directory_name} --task TASK --workdir DIR`.",
        f"transformers / sentence-transformers: `tools/export_hf.py --model {directory_name} "
        "--output_dir DIR`, then `AutoModel.from_pretrained(DIR)` or "
        "`SentenceTransformer(DIR)`.",
        "",
    ]


def finetune_card(report: Dict[str, Any], directory_name: str = "model") -> str:
    """The README.md of a fine-tuned model (`<workdir>/model/`)."""
    metrics = report.get("metrics") or {k: v.get("metrics") for k, v in
                                        (report.get("results") or {}).items()}
    settings = report.get("hyperparameters") or report.get("config") or {}
    labels = report.get("label_vocab")
    kind = report.get("task_kind", "seq2seq" if "results" in report else "?")
    lines = [
        "---",
        "library_name: keras-hub",
        "tags:",
        "- minilm_tf",
        f"- {kind}",
        "---",
        "",
        f"# {directory_name}",
        "",
        f"`{_name(report.get('model'))}` fine-tuned with minilm_tf on `{report.get('task', '?')}`"
        f" ({kind}).",
        "",
        "## Results",
        "",
    ]
    lines += metrics_table(metrics)
    lines += [
        "",
        "## Settings",
        "",
        *[f"- {key}: {_fmt(settings.get(key))}" for key in
          ("epochs", "batch_size", "learning_rate", "sequence_length", "max_source_length",
           "max_target_length", "max_train_examples", "seed") if key in settings],
    ]
    if labels:
        lines += [f"- labels (in the order of the outputs): {', '.join(map(str, labels))}"]
    kd = report.get("task_distillation")
    if kd:
        lines += [f"- task-stage distillation: the logits of the fine-tuned teacher "
                  f"`{_name(kd.get('teacher_model') or kd.get('teacher_run'))}` "
                  f"({kd.get('teacher_class')}) besides the "
                  f"labels, weight {_fmt(kd.get('alpha'))}, temperature "
                  f"{_fmt(kd.get('temperature'))}"]
    lines += ["", "## Usage", "", "```python"]
    if kind == "seq2seq":
        lines += ["from minilm_tf.training.seq2seq import load_generation_model",
                  "from minilm_tf.tasks.generation.decoding import generate_texts", "",
                  'model, packer, decoding = load_generation_model("RUN_DIR/model")',
                  'generate_texts(model, packer, ["A source text."], decoding).texts', "```",
                  "", "`tools/finetune_seq2seq.py --export_saved_model` also writes a "
                  "SavedModel with a `generate` signature (strings in, strings out).", ""]
    else:
        lines += ["from minilm_tf.tasks.finetuned import load_finetuned", "",
                  'model, preprocessor, labels = load_finetuned("RUN_DIR")', "```", "",
                  "A BERT, RoBERTa, XLM-R, DistilBERT or ELECTRA classifier or regressor "
                  "goes to transformers as its `*ForSequenceClassification` with "
                  "`tools/export_hf.py --finetuned RUN_DIR --output_dir DIR`.", ""]
    return "\n".join(lines)


def write_card(model_dir: str, report: Dict[str, Any]) -> None:
    """Writes `finetune_card(report)` as `<model_dir>/README.md` when the run
    saved its model there (before report.json, which marks a finished run)."""
    if os.path.isdir(model_dir):
        atomic_write_text(os.path.join(model_dir, "README.md"), finetune_card(report))
