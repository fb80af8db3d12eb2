"""Keras layers that expose one encoder layer's self-attention internals.

`SelfAttentionRelations` wraps a keras-hub encoder backbone (BERT, RoBERTa,
XLM-RoBERTa, DistilBERT, ELECTRA: any functional backbone whose
`transformer_layers` are `keras_hub.layers.TransformerEncoder`s) and returns
the chosen layer's queries, keys, values and attention probabilities. They are
recomputed from that layer's input hidden states with the layer's own
projection weights. The backbone is not copied: a truncated functional view of
it (sharing its layers and weights) computes the layer's input, so layers above
the chosen one never run.
"""

from typing import Any

import keras
import tensorflow as tf

from minilm_tf import _compat


# Backbones whose layers cannot give MiniLM relations, and why.
_UNSUPPORTED = {
    "DebertaV3Backbone": "its disentangled attention adds relative-position terms, so "
    "softmax(Q K^T) is not its attention distribution",
    "AlbertBackbone": "it shares one set of layer weights across depth, so a layer "
    "cannot be read or trained on its own",
    "FNetBackbone": "it mixes tokens with Fourier transforms and has no self-attention",
}


def _encoder_layers(backbone: keras.Model) -> list:
    reason = _UNSUPPORTED.get(type(backbone).__name__)
    if reason:
        raise ValueError(f"MiniLM cannot distill {type(backbone).__name__}: {reason}.")
    layers = getattr(backbone, "transformer_layers", None)
    if not layers:
        raise ValueError(
            f"{type(backbone).__name__} has no `transformer_layers`; MiniLM "
            "needs an encoder backbone built from keras-hub TransformerEncoder "
            "layers (BERT, RoBERTa, XLM-RoBERTa, DistilBERT, ELECTRA)."
        )
    for layer in layers:
        if not hasattr(layer, _compat.SELF_ATTENTION):
            raise ValueError(
                f"Layer {layer.name} of {type(backbone).__name__} is not a "
                "keras-hub TransformerEncoder; its self-attention cannot be "
                "read."
            )
    return layers


def resolve_layer_index(backbone: keras.Model, layer_index: int) -> int:
    """Turns a (possibly negative) layer index into a 0-based one.

    Args:
        backbone: an encoder backbone.
        layer_index: 0-based index, or negative to count from the top
            (-1 is the last layer).

    Returns:
        The 0-based index.
    """
    num_layers = len(_encoder_layers(backbone))
    index = layer_index + num_layers if layer_index < 0 else layer_index
    if not 0 <= index < num_layers:
        raise ValueError(
            f"Layer index {layer_index} is out of range for a backbone with "
            f"{num_layers} transformer layers (use 0..{num_layers - 1}, or "
            f"-1..-{num_layers} counting from the top)."
        )
    return index


def attention_heads(backbone: keras.Model, layer_index: int = -1) -> int:
    """The number of attention heads of one transformer layer."""
    layer = _encoder_layers(backbone)[resolve_layer_index(backbone, layer_index)]
    return _compat.self_attention(layer).num_heads


def truncated_encoder(backbone: keras.Model, layer_index: int) -> keras.Model:
    """A functional view of `backbone` that outputs one layer's input.

    The returned model shares the backbone's layers and weights; it contains
    only the operations needed to compute the input hidden states of
    transformer layer `layer_index`, so no layer at or above it runs.
    """
    index = resolve_layer_index(backbone, layer_index)
    return keras.Model(
        inputs=backbone.input,
        outputs=_layer_input(backbone, index),
        name=f"{backbone.name}_below_layer_{index}",
    )


def _layer_input(backbone: keras.Model, index: int):
    """The symbolic input hidden states of transformer layer `index`."""
    return _compat.call_input(_encoder_layers(backbone)[index])


@keras.saving.register_keras_serializable(package="minilm_tf")
class SelfAttentionRelations(keras.layers.Layer):
    """Queries, keys, values and attention of one encoder layer.

    Given the backbone's usual input dict, computes the chosen layer's input
    hidden states (running only the layers below it), applies that layer's attention pre-normalisation
    when it has one, then its own query/key/value projections.

    Args:
        backbone: a keras-hub encoder backbone.
        layer_index: int. Which transformer layer, 0-based; negative counts
            from the top. Defaults to -1, the last layer.
        return_attention_probs: bool. Also return the post-softmax,
            pre-dropout attention probabilities. Defaults to False (the losses
            recompute them in float32).
        return_relations: bool. Return the layer's queries, keys and values.
            Defaults to True.
        return_sequence_output: bool. Also return the backbone's last hidden
            states (then every layer runs). Defaults to False.

    Call returns a dict:
        `queries`, `keys`, `values` (with `return_relations`):
            [batch, seq, num_heads, head_dim].
        `attention_probs` (optional): [batch, num_heads, seq, seq].
        `sequence_output` (optional): [batch, seq, hidden_dim].
        `padding_mask`: the input padding mask, [batch, seq].

    Examples:
    ```python
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=100, num_layers=4, num_heads=2, hidden_dim=16,
        intermediate_dim=32)
    relations = SelfAttentionRelations(backbone, layer_index=2)
    out = relations({"token_ids": np.ones((1, 8), "int32"),
                     "segment_ids": np.zeros((1, 8), "int32"),
                     "padding_mask": np.ones((1, 8), "int32")})
    out["queries"].shape  # (1, 8, 2, 8)
    ```
    """

    def __init__(
        self,
        backbone: keras.Model,
        layer_index: int = -1,
        return_attention_probs: bool = False,
        return_relations: bool = True,
        return_sequence_output: bool = False,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        if not (return_relations or return_sequence_output):
            raise ValueError("Ask for relations, the sequence output, or both.")
        if return_attention_probs and not return_relations:
            raise ValueError("return_attention_probs needs return_relations=True.")
        self.backbone = backbone
        self.layer_index = layer_index
        self.return_attention_probs = return_attention_probs
        self.return_relations = return_relations
        self.return_sequence_output = return_sequence_output
        self.resolved_index = resolve_layer_index(backbone, layer_index)
        self.encoder_layer = _encoder_layers(backbone)[self.resolved_index]
        outputs = {}
        if return_relations:
            outputs["layer_input"] = _layer_input(backbone, self.resolved_index)
        if return_sequence_output:
            outputs["sequence_output"] = backbone.output["sequence_output"]
        # A functional view sharing the backbone's layers: only what the
        # outputs need runs.
        self.below = keras.Model(backbone.input, outputs, name=f"{backbone.name}_features")

    @property
    def num_heads(self) -> int:
        return _compat.self_attention(self.encoder_layer).num_heads

    @property
    def hidden_dim(self) -> int:
        attention = _compat.self_attention(self.encoder_layer)
        return attention.num_heads * attention.key_dim

    @property
    def trainable_variables_used(self) -> list:
        """The trainable variables that the outputs depend on."""
        attention = _compat.self_attention(self.encoder_layer)
        used = list(self.below.trainable_variables)
        if not self.return_relations:
            return used
        if self.encoder_layer.normalize_first:
            used += _compat.self_attention_norm(self.encoder_layer).trainable_variables
        for dense in (attention.query_dense, attention.key_dense, attention.value_dense):
            used += dense.trainable_variables
        return used

    def call(self, inputs: dict, training: bool | None = None) -> dict:
        # Backbones without segment embeddings (RoBERTa, DistilBERT) ignore
        # `segment_ids`, so one data pipeline serves every architecture.
        below = self.below({name: inputs[name] for name in self.below.input}, training=training)
        outputs = {"padding_mask": inputs["padding_mask"]}
        if self.return_sequence_output:
            outputs["sequence_output"] = below["sequence_output"]
        if not self.return_relations:
            return outputs
        x = below["layer_input"]
        if self.encoder_layer.normalize_first:
            x = _compat.self_attention_norm(self.encoder_layer)(x)
        attention = _compat.self_attention(self.encoder_layer)
        outputs["queries"] = attention.query_dense(x)
        outputs["keys"] = attention.key_dense(x)
        outputs["values"] = attention.value_dense(x)
        if self.return_attention_probs:
            outputs["attention_probs"] = attention_probabilities(
                outputs["queries"], outputs["keys"], inputs["padding_mask"]
            )
        return outputs

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "backbone": keras.saving.serialize_keras_object(self.backbone),
                "layer_index": self.layer_index,
                "return_attention_probs": self.return_attention_probs,
                "return_relations": self.return_relations,
                "return_sequence_output": self.return_sequence_output,
            }
        )
        return config

    @classmethod
    def from_config(cls, config: dict) -> "SelfAttentionRelations":
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls(**config)


def attention_probabilities(
    queries: tf.Tensor, keys: tf.Tensor, padding_mask: tf.Tensor
) -> tf.Tensor:
    """softmax(Q K^T / sqrt(d)) over real keys; [B, T, H, d] in, [B, H, T, T] out."""
    scale = 1.0 / float(queries.shape[-1]) ** 0.5
    logits = tf.einsum("bqhd,bkhd->bhqk", queries, keys) * tf.cast(scale, queries.dtype)
    key_mask = tf.cast(padding_mask, tf.bool)[:, tf.newaxis, tf.newaxis, :]
    logits = tf.where(key_mask, tf.cast(logits, tf.float32), -1e9)
    return tf.nn.softmax(logits, axis=-1)

