"""ELECTRA's text classifier, which keras-hub does not ship.

`ElectraTextClassifier` computes what Hugging Face's
`ElectraForSequenceClassification` computes (and what the ELECTRA authors
fine-tuned with): the first token's final hidden state -> dropout ->
dense (hidden width) -> exact GELU -> dropout -> dense (logits). Its layer
names are those of keras-hub's RoBERTa classifier (`pooled_dense`,
`logits`), so the exporter maps them the same way (`classifier.dense`,
`classifier.out_proj`). The backbone's own pooler (`pooled_dense` inside
`ElectraBackbone`) is not used, as in Hugging Face, and is frozen (it gets
no gradient).

Both classes are registered Keras serializables (package `minilm_tf`): a
saved preset loads back with `keras_hub.models.TextClassifier.from_preset`
once `minilm_tf` is imported.
"""

import keras
import keras_hub


@keras.saving.register_keras_serializable(package="minilm_tf")
class ElectraTextClassifierPreprocessor(keras_hub.models.TextClassifierPreprocessor):
    """keras-hub's text-classifier preprocessor for `ElectraTokenizer`:
    `[CLS] a [SEP] (b [SEP])`, with segment ids, as `ElectraTokenizer` in
    Hugging Face."""

    backbone_cls = keras_hub.models.ElectraBackbone
    tokenizer_cls = keras_hub.models.ElectraTokenizer


@keras.saving.register_keras_serializable(package="minilm_tf")
class ElectraTextClassifier(keras_hub.models.TextClassifier):
    """A classification (or one-output regression) head on an
    `ElectraBackbone`.

    Args:
        backbone: a `keras_hub.models.ElectraBackbone`.
        num_classes: the number of logits.
        preprocessor: an `ElectraTextClassifierPreprocessor`, or None when the
            inputs are already token ids, segment ids and a padding mask.
        activation: applied to the logits (None: raw logits).
        hidden_dim: the first dense layer's width (default: the backbone's).
        dropout: applied before each dense layer.
    """

    backbone_cls = keras_hub.models.ElectraBackbone
    preprocessor_cls = ElectraTextClassifierPreprocessor

    def __init__(self, backbone, num_classes, preprocessor=None, activation=None,
                 hidden_dim=None, dropout=0.1, **kwargs):
        self.backbone = backbone
        self.preprocessor = preprocessor
        backbone.get_layer("pooled_dense").trainable = False  # unused by this head
        policy = backbone.dtype_policy
        self.pooled_dropout = keras.layers.Dropout(dropout, dtype=policy,
                                                   name="pooled_dropout")
        hidden_dim = hidden_dim or backbone.hidden_dim
        init = keras.initializers.TruncatedNormal(stddev=0.02)
        self.pooled_dense = keras.layers.Dense(
            hidden_dim, activation="gelu",  # Keras 3: exact (erf) GELU
            kernel_initializer=init, dtype=policy, name="pooled_dense")
        self.output_dropout = keras.layers.Dropout(dropout, dtype=policy,
                                                   name="output_dropout")
        self.output_dense = keras.layers.Dense(num_classes, activation=activation,
                                               kernel_initializer=init, dtype=policy,
                                               name="logits")
        inputs = backbone.input
        x = backbone(inputs)["sequence_output"][:, 0, :]
        x = self.pooled_dropout(x)
        x = self.pooled_dense(x)
        x = self.output_dropout(x)
        outputs = self.output_dense(x)
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self.num_classes = num_classes
        self.activation = keras.activations.get(activation)
        self.hidden_dim = hidden_dim
        self.dropout = dropout

    def get_config(self):
        config = super().get_config()
        config.update({"num_classes": self.num_classes,
                       "activation": keras.activations.serialize(self.activation),
                       "hidden_dim": self.hidden_dim, "dropout": self.dropout})
        return config
