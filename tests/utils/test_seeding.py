"""Seeding keeps SentencePiece tokenizers usable (minilm_tf/utils/seeding.py):
a tokenizer created before `keras.utils.set_random_seed` must still tokenize
in `tf.data` afterwards, e.g. an XLM-R teacher's after `build_student` seeds."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import export_fixtures
from minilm_tf import build_student
from minilm_tf.data.corpus import build_pretraining_dataset
from minilm_tf.utils.seeding import set_random_seed

TEXTS = list(export_fixtures.ARCHITECTURE_TEXTS[:3])


def _tokenize_in_tf_data(tokenizer):
    ds = tf.data.Dataset.from_tensor_slices(TEXTS).map(tokenizer)
    return [np.asarray(t).tolist() for t in ds]


def test_plain_seeding_breaks_a_sentencepiece_tokenizer_and_ours_does_not():
    tokenizer = export_fixtures.xlm_roberta_tokenizer()
    expected = [np.asarray(t).tolist() for t in tokenizer(TEXTS)]
    keras.utils.set_random_seed(0)  # why the helper exists
    with pytest.raises(tf.errors.NotFoundError, match="SentencepieceOp"):
        _tokenize_in_tf_data(tokenizer)
    set_random_seed(0, tokenizer, None)
    assert _tokenize_in_tf_data(tokenizer) == expected


def test_an_xlm_r_teacher_feeds_the_corpus_pipeline_after_build_student():
    teacher = export_fixtures.architecture_encoder("xlm_roberta", sentence=False)
    student = build_student(teacher, 1, 16, 2, seed=3)
    assert student.tokenizer is teacher.tokenizer
    ds = build_pretraining_dataset(TEXTS * 4, tokenizer=teacher.tokenizer, seq_length=12,
                                   batch_size=2, seed=0, shuffle_buffer=1, repeat=False)
    batch = next(iter(ds))
    assert batch["token_ids"].shape == (2, 12) and int(batch["token_ids"][0, 0]) == 0  # <s>
