"""UniLM's sequence-to-sequence self-attention mask and position ids.

The input of a seq2seq model is `[source (padded to S)] [target (padded to T)]`
in one sequence of length S + T. UniLM (Dong et al. 2019) lets one
bidirectional Transformer act as encoder and decoder through its mask:

- a source token attends to every real source token (bidirectional);
- a target token attends to every real source token and to the real target
  tokens at or before its own position (left to right);
- padding attends nowhere and is attended to by nobody.

Positions continue from the source's real length into the target (source
token i is at position i, target token j at `source_length + j`), so the
padding between them leaves no gap in the position ids, as in UniLM's s2s-ft.
"""

from __future__ import annotations

import tensorflow as tf


def seq2seq_attention_mask(source_mask, target_mask) -> tf.Tensor:
    """The [B, S + T, S + T] attention mask (1: may attend) of a seq2seq batch.

    Args:
        source_mask: [B, S], 1 for real source tokens, 0 for padding.
        target_mask: [B, T], 1 for real target tokens, 0 for padding.

    Returns:
        int32 [B, S + T, S + T]: entry (b, i, j) is 1 when position i of
        example b may attend to position j.
    """
    source_mask = tf.cast(source_mask, tf.int32)
    target_mask = tf.cast(target_mask, tf.int32)
    s = tf.shape(source_mask)[1]
    t = tf.shape(target_mask)[1]
    # Structure shared by the batch: rows are queries, columns keys.
    source_rows = tf.concat([tf.ones([s, s], tf.int32), tf.zeros([s, t], tf.int32)], axis=1)
    causal = tf.linalg.band_part(tf.ones([t, t], tf.int32), -1, 0)  # key <= query
    target_rows = tf.concat([tf.ones([t, s], tf.int32), causal], axis=1)
    structure = tf.concat([source_rows, target_rows], axis=0)
    real = tf.concat([source_mask, target_mask], axis=1)
    return structure[None] * real[:, None, :] * real[:, :, None]


def seq2seq_position_ids(source_mask, target_length) -> tf.Tensor:
    """[B, S + T] position ids: 0..S-1 over the source, `source_length + j` for
    target token j (padded source positions keep their index; nobody sees them)."""
    source_mask = tf.cast(source_mask, tf.int32)
    s = tf.shape(source_mask)[1]
    batch = tf.shape(source_mask)[0]
    source_positions = tf.tile(tf.range(s)[None], [batch, 1])
    lengths = tf.reduce_sum(source_mask, axis=1, keepdims=True)
    target_positions = lengths + tf.range(target_length)[None]
    return tf.concat([source_positions, target_positions], axis=1)
