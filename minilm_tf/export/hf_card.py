"""The model card (`README.md`) of a Hugging Face export: architecture,
parameters, initialisation and provenance from `encoder.metadata` /
`encoder.spec`, and how to load it in transformers, sentence-transformers
and Keras."""

from __future__ import annotations

import json
import os

from minilm_tf.export.hf_configs import pooling_names
from minilm_tf.export.hf_tokenizers import family
from minilm_tf.models.encoders import LoadedEncoder
from minilm_tf.tasks.comparison import metrics_table


# config.json field -> DistilBERT's name for it.
_DISTILBERT_FIELDS = {"num_hidden_layers": "n_layers", "hidden_size": "dim",
                      "num_attention_heads": "n_heads", "intermediate_size": "hidden_dim",
                      "hidden_act": "activation"}
_VOCABULARIES = {"wordpiece": "WordPiece", "bpe": "byte-level BPE",
                 "sentencepiece": "SentencePiece"}


def _field(config: dict, name: str):
    return config.get(name, config.get(_DISTILBERT_FIELDS.get(name, name)))


def _architecture(encoder: LoadedEncoder, config: dict, parameters: int) -> list[str]:
    """The card's architecture table."""
    kind = family(encoder.tokenizer)
    vocabulary = f"| vocabulary | {config['vocab_size']} {_VOCABULARIES[kind]} tokens"
    if kind == "wordpiece":
        vocabulary += (f" (lowercase: {encoder.lowercase}, strip accents: "
                       f"{bool(getattr(encoder.tokenizer, 'strip_accents', False))})")
    return [
        "## Architecture",
        "",
        "| | |",
        "|---|---|",
        f"| model | `{config['architectures'][0]}` (`model_type: {config['model_type']}`) |",
        f"| layers | {_field(config, 'num_hidden_layers')} |",
        f"| hidden size | {_field(config, 'hidden_size')} |",
        f"| attention heads | {_field(config, 'num_attention_heads')} |",
        f"| feed-forward size | {_field(config, 'intermediate_size')} |",
        f"| activation | `{_field(config, 'hidden_act')}` (minilm_tf: `{encoder.hidden_act}`) |",
        vocabulary + " |",
        f"| max positions | {config['max_position_embeddings']} |",
        f"| parameters | {parameters:,} (weights stored as float32) |",
    ]


def distillation_section(source_dir: str | None) -> list[str] | None:
    """The "## Distillation" section of the model card a distillation run
    wrote beside the student (`student/README.md`), when there is one."""
    path = os.path.join(source_dir or "", "README.md")
    if not source_dir or not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if "\n## Distillation\n" not in text:
        return None
    section = text.split("\n## Distillation\n", 1)[1].split("\n## ", 1)[0]
    return ["## Distillation", *section.rstrip().splitlines(), ""]


def model_card(encoder: LoadedEncoder, config: dict, parameters: int, sentence: dict | None,
               directory_name: str) -> str:
    """A README.md for the export."""
    init = encoder.metadata.get("init")
    tags = ["minilm_tf", config["model_type"], "feature-extraction"]
    library = "transformers"
    if sentence:
        tags += ["sentence-transformers", "sentence-similarity"]
        library = "sentence-transformers"
    lines = [
        "---",
        f"library_name: {library}",
        f"pipeline_tag: {'sentence-similarity' if sentence else 'feature-extraction'}",
        "tags:",
        *[f"- {t}" for t in tags],
        "---",
        "",
        f"# {directory_name}",
        "",
        f"A `{config['model_type']}` encoder exported by minilm_tf "
        "(`minilm_tf.export.hf.export_hf` / `tools/export_hf.py`) from Keras "
        f"(keras-hub `{type(encoder.backbone).__name__}`).",
        "",
    ] + _architecture(encoder, config, parameters)
    if sentence:
        lines += [
            f"| sentence embedding | {', '.join(pooling_names(sentence['pooling']))} pooling"
            f"{' + L2 normalisation' if sentence['normalize'] else ''}, "
            f"max_seq_length {sentence['max_seq_length']} |",
        ]
    # The spec's last path component only: a model card travels, local paths should not.
    spec = encoder.spec
    origin = os.path.basename(os.path.normpath(spec)) if os.sep in spec else spec
    lines += ["", "## Provenance", "", f"- Exported from: `{origin}`"]
    if init:
        mode = init.get("mode", "?")
        lines.append(f"- Initialisation (`metadata[\"init\"]`): `{mode}`")
        if init.get("teacher_layers"):
            lines.append(f"  - teacher layers copied: {init['teacher_layers']}")
        if init.get("copied"):
            lines.append(f"  - weights copied from the teacher: {len(init['copied'])} layers "
                         f"({', '.join(init['copied'][:8])}"
                         f"{', ...' if len(init['copied']) > 8 else ''})")
        if mode == "random":
            lines.append("  - no teacher weight copied: random initialisation")
    else:
        lines.append("- Initialisation: not recorded (a pretrained checkpoint or an encoder "
                     "loaded from disk)")
    other = {k: v for k, v in encoder.metadata.items()
             if k not in ("init", "pooling", "normalize", "hidden_act")}
    if other:
        lines.append(f"- Other metadata: `{json.dumps(other, sort_keys=True, default=str)}`")
    distilled = distillation_section(encoder.source_dir)
    lines += [""] + (distilled or [
        "Whether (and how) it was distilled or fine-tuned is what the spec and "
        "initialisation above say; see the run that produced it for its training "
        "data and evaluation.",
        ""]) + [
        "## Usage",
        "",
        "transformers:",
        "",
        "```python",
        "from transformers import AutoModel, AutoTokenizer",
        "",
        f'tokenizer = AutoTokenizer.from_pretrained("{directory_name}")',
        f'model = AutoModel.from_pretrained("{directory_name}")',
        'batch = tokenizer(["A sentence."], padding=True, truncation=True, return_tensors="pt")',
        "last_hidden_state = model(**batch).last_hidden_state",
        "```",
        "",
    ]
    if sentence:
        lines += [
            "sentence-transformers:",
            "",
            "```python",
            "from sentence_transformers import SentenceTransformer",
            "",
            f'model = SentenceTransformer("{directory_name}")',
            'embeddings = model.encode(["A sentence.", "Another one."])',
            "```",
            "",
        ]
    lines += [
        "Keras (minilm_tf restores the activation named in config.json):",
        "",
        "```python",
        "import minilm_tf",
        "",
        f'encoder = minilm_tf.load_teacher("{directory_name}")',
        "encoder.backbone, encoder.tokenizer",
        "```",
        "",
    ]
    if config["model_type"] == "bert":
        lines += [
            f'`keras_hub.models.BertBackbone.from_preset("{directory_name}")` also loads it, '
            "but keras-hub always builds its BERT layers with the tanh approximation of "
            "GELU"
            + (", which is what this model uses." if config["hidden_act"] != "gelu" else
               "; this model uses exact GELU (`hidden_act: gelu`), so call "
               "`minilm_tf.models.encoders.set_feedforward_activation(backbone, \"gelu\")` "
               "after loading it that way."),
            "",
        ]
    return "\n".join(lines)



def _results(report: dict | None) -> list[str]:
    """The fine-tuning run's validation and test metrics, as a table."""
    metrics = {split: values for split, values in ((report or {}).get("metrics") or {}).items()
               if isinstance(values, dict) and split in ("validation", "test") and values}
    if not metrics:
        return ["- Evaluation: not recorded (no `report.json` beside the model)."]
    return [f"Evaluated by the fine-tuning run (`report.json`; "
            f"{', '.join(f'{k}: {v}' for k, v in (report.get('num_examples') or {}).items())}"
            " examples):", "", *metrics_table(metrics)]


def classifier_card(encoder: LoadedEncoder, config: dict, parameters: int, labels: dict,
                    directory_name: str, report: dict | None = None) -> str:
    """A README.md for a `*ForSequenceClassification` export (`report`: the
    fine-tuning run's report.json, for its results)."""
    regression = config["problem_type"] == "regression"
    architecture = config["architectures"][0]
    family = architecture[:-len("ForSequenceClassification")]
    head = {"Bert": "pooled [CLS] (BERT pooler) -> dropout -> dense",
            "DistilBert": "[CLS] -> dense + ReLU -> dropout -> dense",
            "Electra": "[CLS] -> dropout -> dense + GELU -> dropout -> dense"}.get(
                family, "<s> -> dropout -> dense + tanh -> dropout -> dense")
    spec = encoder.spec
    origin = os.path.basename(os.path.normpath(spec)) if os.sep in spec else spec
    lines = [
        "---",
        "library_name: transformers",
        "pipeline_tag: text-classification",
        "tags:",
        "- minilm_tf",
        f"- {config['model_type']}",
        "- text-classification",
        "---",
        "",
        f"# {directory_name}",
        "",
        f"A {family} {'regressor' if regression else 'classifier'} fine-tuned with minilm_tf "
        f"(`tools/finetune.py`) on `{labels.get('task', '?')}`"
        f"{' (sentence pairs)' if labels.get('is_pair') else ''}, exported as "
        f"`{architecture}` (`minilm_tf.export.hf_classifier`, "
        "`tools/export_hf.py --finetuned`).",
        "",
    ] + _architecture(encoder, config, parameters) + [
        f"| head | {head}, {config['num_labels']} "
        f"output{'s' if config['num_labels'] > 1 else ''} |",
        f"| labels | {', '.join(config['label2id']) if not regression else 'one score'} |",
        f"| fine-tuned on | {labels.get('sequence_length', '?')} tokens per example |",
        "",
        "## Provenance",
        "",
        f"- Encoder fine-tuned: `{origin}`",
        "",
        "## Results",
        "",
        *_results(report),
        "",
        "## Usage",
        "",
        "transformers:",
        "",
        "```python",
        "from transformers import pipeline",
        "",
        f'classifier = pipeline("text-classification", model="{directory_name}")',
        'classifier(["A sentence."])',
        "```",
        "",
        "Keras (the run's own directory):",
        "",
        "```python",
        "from minilm_tf.tasks.finetuned import load_finetuned",
        "",
        'model, _, labels = load_finetuned("RUN_DIR")',
        'model.predict(["A sentence."])',
        "```",
        "",
    ]
    return "\n".join(lines)
