"""Seeding that keeps SentencePiece tokenizers usable.

`keras.utils.set_random_seed` (through `tf.random.set_seed`) and
`keras.backend.clear_session` invalidate the TensorFlow Text resource of a
SentencePiece tokenizer (XLM-R's) created before them: the next `tf.data`
pipeline that tokenizes fails with "Resource .../SentencepieceOp ... does
not exist". `set_random_seed(seed, *tokenizers)` seeds and then rebuilds
that resource for each tokenizer given; other tokenizers are left alone.
"""

from __future__ import annotations

import keras
import keras_hub


def refresh_tokenizer(tokenizer) -> None:
    """Recreates a SentencePiece tokenizer's resource from its own proto."""
    if (isinstance(tokenizer, keras_hub.tokenizers.SentencePieceTokenizer)
            and tokenizer.proto is not None):
        tokenizer.set_proto(tokenizer.proto)


def set_random_seed(seed: int, *tokenizers) -> None:
    """`keras.utils.set_random_seed(seed)`, then `refresh_tokenizer` on each
    of `tokenizers` (None entries are skipped)."""
    keras.utils.set_random_seed(seed)
    for tokenizer in tokenizers:
        if tokenizer is not None:
            refresh_tokenizer(tokenizer)
