"""`Seq2SeqLM`: UniLM-style sequence-to-sequence generation on any encoder.

UniLM (Dong et al. 2019) and its fine-tuning toolkit s2s-ft turn one
bidirectional Transformer into an encoder-decoder through the self-attention
mask alone (`minilm_tf.tasks.generation.mask`). This model runs a keras-hub
backbone's own embedding and `TransformerEncoder` layers with that full
[B, L, L] mask (`TransformerEncoder.call(attention_mask=...)`), and predicts
target tokens with a language-model head tied to the token embeddings
(dense + activation + LayerNorm + the transposed embedding matrix + a bias,
as BERT's MLM head). The head is freshly initialised: keras-hub's converters
do not read a checkpoint's MLM head, and all-MiniLM-L6-v2 has none.

Objective (the "next token" variant of s2s-ft): the target input is
`[start] y1 .. yn` (start: the tokenizer's [CLS] / <s>), its labels
`y1 .. yn [end]`, so target position j predicts token j + 1 from the whole
source and target tokens 0..j. s2s-ft's own objective instead replaces target
tokens by [MASK] (with "pseudo masks" so that one pass trains every position);
the next-token variant trains every target position in one pass without
pseudo masks, and decoding is exactly the training computation run one token
at a time, so a key/value cache is exact (`decode_step`); UniLM's masked
variant needs two positions per step (the real previous token and a new
[MASK]).

Segment ids are 0 for the source and 1 for the target where the
architecture has segment embeddings (BERT); RoBERTa / XLM-R / DistilBERT
have none.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from minilm_tf import _compat
from minilm_tf.models.loaded_encoder import set_feedforward_activation
from minilm_tf.ops import activations
from minilm_tf.tasks.generation.mask import seq2seq_attention_mask, seq2seq_position_ids

# Activation names (Hugging Face `hidden_act`) -> the LM head's activation.
HEAD_ACTIVATIONS = {
    "gelu": activations.gelu_exact,
    "gelu_new": activations.gelu_tanh,
    "gelu_pytorch_tanh": activations.gelu_tanh,
    "gelu_approximate": activations.gelu_tanh,
    "relu": keras.activations.relu,
}

# Label id of target padding (ignored by the loss).
IGNORE_LABEL = -100


def _has_segments(backbone) -> bool:
    return hasattr(backbone, "segment_embedding")


def _token_embedding(backbone):
    return backbone.token_embedding


def check_backbone(backbone) -> None:
    """Raises a ValueError unless `backbone` is a keras-hub encoder whose layers
    this model can run (BERT-style or RoBERTa-style embeddings and
    `TransformerEncoder` blocks)."""
    import keras_hub

    blocks = getattr(backbone, "transformer_layers", None)
    embeds = (hasattr(backbone, "position_embedding") or hasattr(backbone, "embeddings"))
    if (not blocks or not embeds or not hasattr(backbone, "token_embedding")
            or not hasattr(backbone, "embeddings_layer_norm")
            or not all(isinstance(b, keras_hub.layers.TransformerEncoder) for b in blocks)):
        raise ValueError(
            f"{type(backbone).__name__} is not supported for generation: Seq2SeqLM needs a "
            "keras-hub encoder with token/position embeddings, an embedding LayerNorm and "
            "keras_hub.layers.TransformerEncoder blocks (BERT, RoBERTa, XLM-RoBERTa, "
            "DistilBERT).")


@keras.saving.register_keras_serializable(package="minilm_tf")
class Seq2SeqLM(keras.Model):
    """A UniLM sequence-to-sequence model: a keras-hub encoder + tied LM head.

    Args:
        backbone: a keras-hub encoder backbone (e.g. `LoadedEncoder.backbone`).
        hidden_act: the feed-forward activation of the checkpoint (`gelu`,
            `gelu_approximate`, `relu`...); it is set on the backbone and used
            by the LM head.
        head_initializer_range: stddev of the head's dense kernel init.

    Inputs (`call`): a dict of `source_ids`, `source_mask` [B, S] and
    `target_ids`, `target_mask` [B, T]; output: float32 logits [B, T, V] of
    the token after each target position.

    Examples:
    ```python
    encoder = minilm_tf.load_encoder("all-minilm-l6-v2")
    model = Seq2SeqLM(encoder.backbone, hidden_act=encoder.hidden_act)
    ```
    """

    def __init__(self, backbone, hidden_act: str = "gelu",
                 head_initializer_range: float = 0.02, **kwargs):
        check_backbone(backbone)
        if hidden_act not in HEAD_ACTIVATIONS:
            raise ValueError(f"Unsupported activation {hidden_act!r}; supported: "
                             f"{sorted(HEAD_ACTIVATIONS)}.")
        kwargs.setdefault("dtype", backbone.dtype_policy)
        super().__init__(**kwargs)
        # === Layers ===
        self.backbone = backbone
        set_feedforward_activation(backbone, hidden_act)
        # BERT's pooler is not on the generation path: frozen, so training
        # does not warn about its missing gradients.
        for layer in backbone.layers:
            if layer.name == "pooled_dense":
                layer.trainable = False
        hidden = backbone.hidden_dim
        self.lm_dense = keras.layers.Dense(
            hidden, activation=HEAD_ACTIVATIONS[hidden_act],
            kernel_initializer=keras.initializers.TruncatedNormal(stddev=head_initializer_range),
            dtype=backbone.dtype_policy, name="lm_head_dense")
        self.lm_norm = keras.layers.LayerNormalization(
            epsilon=1e-12, dtype=backbone.dtype_policy, name="lm_head_norm")
        # === Config ===
        self.hidden_act = hidden_act
        self.head_initializer_range = head_initializer_range
        self.vocabulary_size = backbone.vocabulary_size
        self.max_sequence_length = backbone.max_sequence_length
        self.build()

    def build(self, input_shape=None):
        if self.built:
            return
        self.lm_dense.build((None, self.backbone.hidden_dim))
        self.lm_norm.build((None, self.backbone.hidden_dim))
        self.lm_bias = self.add_weight(shape=(self.vocabulary_size,), initializer="zeros",
                                       name="lm_head_bias")
        self.built = True

    def get_build_config(self):
        return {}

    def build_from_config(self, config):
        self.build()

    # --- pieces -----------------------------------------------------------

    def embed(self, token_ids, position_ids, segment_ids, training=None):
        """The backbone's own embeddings at explicit positions (and segments)."""
        bb = self.backbone
        if _has_segments(bb):
            tokens = bb.token_embedding(token_ids)
            positions = bb.position_embedding(tokens, positions=position_ids)
            x = bb.embeddings_add((tokens, positions, bb.segment_embedding(segment_ids)))
        else:
            x = bb.embeddings(token_ids, positions=position_ids)
        x = bb.embeddings_layer_norm(x)
        return bb.embeddings_dropout(x, training=training)

    def lm_logits(self, hidden):
        """float32 logits of the tied LM head for hidden states [..., H]."""
        h = self.lm_norm(self.lm_dense(hidden))
        logits = _token_embedding(self.backbone)(h, reverse=True)
        return tf.cast(logits, tf.float32) + tf.cast(self.lm_bias, tf.float32)

    def call(self, inputs, training=None):
        s = tf.shape(inputs["source_ids"])[1]
        t = tf.shape(inputs["target_ids"])[1]
        return self.lm_logits(self.sequence_output(inputs, training=training)[:, s:s + t])

    def sequence_output(self, inputs, training=None):
        """Final hidden states [B, S + T, H] of source and target positions."""
        source_ids, source_mask = inputs["source_ids"], inputs["source_mask"]
        target_ids, target_mask = inputs["target_ids"], inputs["target_mask"]
        t = tf.shape(target_ids)[1]
        token_ids = tf.concat([source_ids, target_ids], axis=1)
        segments = tf.concat([tf.zeros_like(source_ids), tf.ones_like(target_ids)], axis=1)
        positions = seq2seq_position_ids(source_mask, t)
        positions = tf.minimum(positions, self.max_sequence_length - 1)
        mask = seq2seq_attention_mask(source_mask, target_mask)
        # Padded query rows attend to themselves instead of nowhere: an
        # all-zero row is a softmax over nothing (NaN in some attention
        # kernels). Nobody attends to them, so nothing else changes.
        mask = tf.maximum(mask, _padding_diagonal(tf.concat([source_mask, target_mask], 1)))
        x = self.embed(token_ids, positions, segments, training=training)
        for block in self.backbone.transformer_layers:
            x = block(x, attention_mask=mask, training=training)
        return x

    # --- incremental decoding (key/value cache) ----------------------------

    def encode_source(self, source_ids, source_mask):
        """Runs the source once; returns each layer's source keys and values
        ([N, S, heads, head_dim] pairs), which every target step attends to."""
        source_mask = tf.cast(source_mask, tf.int32)
        n, s = tf.shape(source_ids)[0], tf.shape(source_ids)[1]
        positions = tf.tile(tf.range(s)[None], [n, 1])
        x = self.embed(source_ids, positions, tf.zeros_like(source_ids), training=False)
        mask = source_mask[:, None, :] * source_mask[:, :, None]
        mask = tf.maximum(mask, _padding_diagonal(source_mask))
        caches = []
        for block in self.backbone.transformer_layers:
            attention = _compat.self_attention(block)
            h = _compat.self_attention_norm(block)(x) if block.normalize_first else x
            caches.append((attention.key_dense(h), attention.value_dense(h)))
            x = block(x, attention_mask=mask, training=False)
        return caches

    def init_target_cache(self, batch, max_length: int):
        """Zero target key/value caches, one (keys, values) pair per layer."""
        out = []
        for block in self.backbone.transformer_layers:
            attention = _compat.self_attention(block)
            heads, dim = attention.num_heads, attention.key_dim
            zeros = tf.zeros([batch, max_length, heads, dim], self.backbone.compute_dtype)
            out.append((zeros, tf.zeros([batch, max_length, heads, attention.value_dim or dim],
                                        self.backbone.compute_dtype)))
        return out

    def decode_step(self, token, position, step, source_cache, source_mask, target_cache):
        """Logits for the token after target position `step`.

        Args:
            token: [N] int32, the target token at position `step`.
            position: [N] its position id (source length + step).
            step: scalar int32 target index.
            source_cache: `encode_source`'s keys/values; source_mask [N, S].
            target_cache: keys/values of target positions < step (per layer).

        Returns:
            (float32 logits [N, V], the target cache with position `step` written).
        """
        token = token[:, None]
        segment = tf.ones_like(token)
        x = self.embed(token, position[:, None], segment, training=False)
        max_length = tf.shape(target_cache[0][0])[1]
        write = tf.one_hot(step, max_length, dtype=x.dtype)[None, :, None, None]
        visible = tf.cast(tf.range(max_length) <= step, tf.float32)[None, :]
        source_visible = tf.cast(source_mask, tf.float32)
        new_cache = []
        for block, (sk, sv), (tk, tv) in zip(self.backbone.transformer_layers, source_cache,
                                             target_cache):
            attention = _compat.self_attention(block)
            norm = _compat.self_attention_norm(block)
            residual = x
            h = norm(x) if block.normalize_first else x
            q = attention.query_dense(h)  # [N, 1, heads, dim]
            tk = tk * (1 - write) + attention.key_dense(h) * write
            tv = tv * (1 - write) + attention.value_dense(h) * write
            new_cache.append((tk, tv))
            keys = tf.concat([sk, tk], axis=1)
            values = tf.concat([sv, tv], axis=1)
            scale = 1.0 / math.sqrt(float(attention.key_dim))
            scores = tf.einsum("nqhd,nkhd->nhqk", tf.cast(q, tf.float32) * scale,
                               tf.cast(keys, tf.float32))
            allowed = tf.concat([source_visible, tf.tile(visible, [tf.shape(x)[0], 1])], 1)
            scores += (1.0 - allowed)[:, None, None, :] * -1e9
            probs = tf.cast(tf.nn.softmax(scores, axis=-1), values.dtype)
            context = tf.einsum("nhqk,nkhd->nqhd", probs, values)
            h = attention.output_dense(context)
            x = h + residual
            if not block.normalize_first:
                x = norm(x)
            residual = x
            h = _compat.feedforward_norm(block)(x) if block.normalize_first else x
            h = _compat.feedforward_output(block)(_compat.feedforward_intermediate(block)(h))
            x = h + residual
            if not block.normalize_first:
                x = _compat.feedforward_norm(block)(x)
        return self.lm_logits(x[:, 0]), new_cache

    # === Config ===

    def get_config(self):
        return {
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "hidden_act": self.hidden_act,
            "head_initializer_range": self.head_initializer_range,
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls(**config)


def _padding_diagonal(mask):
    """[B, L, L]: 1 on the diagonal of padded positions."""
    padded = 1 - tf.cast(mask, tf.int32)
    return tf.linalg.diag(padded)
