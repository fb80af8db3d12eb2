"""`PooledTextClassifier`: a text classifier over the token states pooled
the way a sentence encoder pools them.

keras-hub's text classifiers read one vector per example off the encoder:
BERT's pooled [CLS] (a dense + tanh layer trained by next-sentence
prediction), RoBERTa's and ELECTRA's first token. A sentence-transformers
encoder (all-MiniLM-L6-v2 and the students distilled from it) was trained to
carry the sentence in the mean of its token states instead, and its [CLS]
pooler was never trained for that. This head pools the final token states
over real tokens (`mean` or `max`, `minilm_tf.layers.TokenPooling`) -> dropout
-> dense, on any keras-hub backbone; the backbone's own pooler, unused, is
frozen.

It is a registered Keras serialisable (package `minilm_tf`) and saves as a
keras-hub task preset with its preprocessor; load it back with
`PooledTextClassifier.from_preset(path)` (or `minilm_tf.tasks.finetuned.load_finetuned`),
which read the preset through keras-hub's public loaders. A plain
`keras_hub.models.TextClassifier.from_preset` picks the backbone's own
classifier class instead and would build a fresh [CLS] head.
"""

import json
import os

import keras
import keras_hub

from minilm_tf.layers.pooling import TokenPooling

TASK_CONFIG_FILE = "task.json"
TASK_WEIGHTS_FILE = "task.weights.h5"


def saved_task_name(preset_dir: str) -> str | None:
    """The registered class name in a task preset's `task.json` (or None)."""
    path = os.path.join(preset_dir, TASK_CONFIG_FILE)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        config = json.load(f)
    return config.get("registered_name") or config.get("class_name")


@keras.saving.register_keras_serializable(package="minilm_tf")
class PooledTextClassifier(keras_hub.models.TextClassifier):
    """A classification (or one-output regression) head on pooled token states.

    Args:
        backbone: any keras-hub text backbone with a `padding_mask` input.
        num_classes: the number of logits.
        preprocessor: the backbone's `TextClassifierPreprocessor`, or None when
            the inputs are already token ids and a padding mask.
        pooling: `mean` or `max` over real tokens.
        activation: applied to the logits (None: raw logits).
        dropout: applied before the dense layer.
    """

    backbone_cls = None  # any backbone; never picked by keras-hub's class search
    preprocessor_cls = None

    def __init__(self, backbone, num_classes, preprocessor=None, pooling="mean",
                 activation=None, dropout=0.1, **kwargs):
        if pooling not in ("mean", "max"):
            raise ValueError(f"PooledTextClassifier pools with 'mean' or 'max', got {pooling!r} "
                             "(the [CLS] head is the backbone's own keras-hub classifier).")
        self.backbone = backbone
        self.preprocessor = preprocessor
        if "pooled_dense" in [layer.name for layer in backbone.layers]:
            backbone.get_layer("pooled_dense").trainable = False  # unused by this head
        policy = backbone.dtype_policy
        self.token_pooling = TokenPooling(pooling, dtype=policy, name=f"{pooling}_pooling")
        self.output_dropout = keras.layers.Dropout(dropout, dtype=policy, name="output_dropout")
        self.output_dense = keras.layers.Dense(num_classes, activation=activation,
                                               dtype=policy, name="logits")
        inputs = backbone.input
        outputs = backbone(inputs)
        sequence = outputs["sequence_output"] if isinstance(outputs, dict) else outputs
        x = self.token_pooling(sequence, inputs["padding_mask"])
        x = self.output_dropout(x)
        outputs = self.output_dense(x)
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self.num_classes = num_classes
        self.pooling = pooling
        self.activation = keras.activations.get(activation)
        self.dropout = dropout

    def get_config(self):
        config = super().get_config()
        config.update({"num_classes": self.num_classes, "pooling": self.pooling,
                       "activation": keras.activations.serialize(self.activation),
                       "dropout": self.dropout})
        return config

    @classmethod
    def from_preset(cls, preset, load_weights=True, **kwargs):
        """Loads a preset saved by `save_to_preset`: the backbone and the
        preprocessor through keras-hub's loaders, the head from `task.json`
        and `task.weights.h5`."""
        name = saved_task_name(preset)
        if name is None or not name.endswith("PooledTextClassifier"):
            raise ValueError(f"{preset} holds no PooledTextClassifier ({TASK_CONFIG_FILE}: "
                             f"{name}); load it with keras_hub.models.TextClassifier.from_preset.")
        with open(os.path.join(preset, TASK_CONFIG_FILE), encoding="utf-8") as f:
            config = dict(json.load(f)["config"])
        config.pop("backbone", None)
        config.pop("preprocessor", None)
        config.update(kwargs)
        backbone = keras_hub.models.Backbone.from_preset(preset, load_weights=load_weights)
        preprocessor = keras_hub.models.TextClassifierPreprocessor.from_preset(preset)
        model = cls(backbone=backbone, preprocessor=preprocessor, **config)
        weights = os.path.join(preset, TASK_WEIGHTS_FILE)
        if load_weights and "num_classes" not in kwargs and os.path.isfile(weights):
            model.load_task_weights(weights)
        return model
