"""The Keras side of the Hugging Face parity check: what the Keras encoder
computes for `PARITY_TEXTS` (token ids, last hidden states, pooled output,
sentence embeddings), written to an `.npz` that `tools/check_hf_parity.py`
compares with transformers / sentence-transformers (this module needs
neither), and the texts the two tokenizers are known to split differently.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from minilm_tf.export import source as src
from minilm_tf.export.hf_configs import check_encoder, is_sentence_encoder, model_type
# Renamed: keras_parity_reference's `max_seq_length` argument would shadow it.
from minilm_tf.export.hf_configs import max_seq_length as _max_seq_length
from minilm_tf.models.encoders import LoadedEncoder

# Texts for the Keras <-> transformers / sentence-transformers parity check:
# accents, punctuation, numbers, long words, Chinese, an empty and a
# whitespace-only string, a text longer than max_seq_length (truncated).
# Characters that keras-hub and Hugging Face tokenise differently are left
# out on purpose: see KNOWN_TOKENIZER_DIFFERENCES.
PARITY_TEXTS = (
    "A great movie, with a wonderful cast.",
    "Caf\u00e9 cr\u00e8me br\u00fbl\u00e9e in Z\u00fcrich: "
    "na\u00efve r\u00e9sum\u00e9s & \u00c5ngstr\u00f6m!",
    "Prices rose 3.75% to $1,299.99 on 2024-03-15 (up from 1,100 in Q4).",
    "Pneumonoultramicroscopicsilicovolcanoconiosis and "
    "antidisestablishmentarianism are long words.",
    "What?! No... really?? \"Yes\" -- she said; (maybe) [not] {sure} <ok> #1 @home ~50/50",
    "",
    "   ",
    "\u6211\u559c\u6b22\u8fd9\u90e8\u7535\u5f71 and the Champs-\u00c9lys\u00e9es in M\u00fcnchen?",
    "UPPER lower MiXeD CaSe t3xt w1th d1g1ts, e-mail: someone@example.com",
    " ".join(f"word{i} is number {i}," for i in range(120)),
)


# Texts that keras-hub's BertTokenizer and Hugging Face's BertTokenizer
# (what an export loads with) tokenise differently: keras-hub lowercases by
# NFKC case folding (ß -> ss, final sigma -> sigma, ligatures, full-width
# and compatibility forms -> their plain letters), splits words on ASCII
# whitespace only, keeps control and format characters inside words,
# recomposes Hangul after accent stripping, and does not match special
# tokens written in the text. tests/export/test_export_hf.py checks that these, and
# only these, differ, so this list stays true.
KNOWN_TOKENIZER_DIFFERENCES = (
    "Stra\u00dfe",  # keras-hub: st ##ras ##se; HF: st ##raße
    "wait\u2026 what",  # keras-hub: ...; HF: …
    "\ud55c\uad6d\uc5b4 text",  # keras-hub: [UNK]; HF: jamo pieces
    "a\u00a0b",  # no-break space: keras-hub [UNK] (one word); HF a b
    "a\u3000b",  # ideographic space
    "zero\u200bwidth",  # zero-width space: a boundary in keras-hub, deleted in HF
    "soft\u00adhyphen",
    "ctrl\x07char",
    "\uff21\uff22\uff23 full width",  # keras-hub: abc; HF: [UNK]
    "\ufb01ne ligature",  # keras-hub: fine; HF: ﬁ ##ne
    "\u03bb\u03cc\u03b3\u03bf\u03c2",  # keras-hub: ##ο ##σ; HF: ##ος
    "\u2103 \u2460\u2461 \u2167",  # ℃ ①② Ⅷ: keras-hub °c 12 viii; HF [UNK]
    "[CLS] literal [SEP]",  # HF: special tokens; keras-hub: [ cl ##s ] ...
)


def keras_parity_reference(encoder: LoadedEncoder, path: str,
                           texts: Sequence[str] = PARITY_TEXTS,
                           max_seq_length: int | None = None) -> dict:
    """Writes what the Keras encoder computes for `texts` to `path` (.npz).

    Arrays: `texts`, `token_ids`, `padding_mask` `[N, L]` (keras-hub
    preprocessor, `[CLS] text [SEP]` or `<s> text </s>`, truncated to the export's
    max_seq_length, trimmed to the longest text), `last_hidden_state`
    `[N, L, H]`, `pooler_output` `[N, H]` (BERT; `[N, 0]` otherwise), `embedding` `[N, D]` (the
    sentence-transformers pooling and normalisation of the export; mean +
    L2 for encoders without a pooling config), `max_seq_length`,
    `pooling`, `normalize`. Returns the arrays.
    """
    check_encoder(encoder)
    length = _max_seq_length(encoder, max_seq_length)
    if is_sentence_encoder(encoder):
        modes = src.pooling_from_metadata(encoder.metadata)
        normalize = bool(encoder.metadata.get("normalize", False))
    else:
        modes, normalize = ("mean",), True
    source = src.encoder_source(encoder, sequence_length=length, pooling=list(modes),
                                normalize=normalize)
    features = src.keras_tokenize(source, list(texts))
    width = max(1, int(features["padding_mask"].sum(axis=1).max())) if len(texts) else 1
    features = {k: v[:, :width] for k, v in features.items()}
    out = encoder.backbone(features, training=False)
    # RoBERTa, XLM-R and DistilBERT backbones return the sequence alone.
    seq = np.asarray(out["sequence_output"] if isinstance(out, dict) else out, dtype=np.float32)
    # Only BERT's Hugging Face model has keras-hub's pooler (ELECTRA's has none,
    # RoBERTa's is not keras-hub's): the others get an empty pooler reference.
    pooled = (np.asarray(out["pooled_output"], dtype=np.float32) if model_type(encoder) == "bert"
              else np.zeros((len(seq), 0), np.float32))
    arrays = {
        "texts": np.array(list(texts), dtype=str),
        "token_ids": features["token_ids"],
        "padding_mask": features["padding_mask"],
        "last_hidden_state": seq,
        "pooler_output": pooled,
        "embedding": src.pool_numpy(seq, features["padding_mask"], modes, normalize),
        "max_seq_length": np.array(length),
        "pooling": np.array(list(modes), dtype=str),
        "normalize": np.array(normalize),
    }
    np.savez(path, **arrays)
    return arrays
