"""The classification / regression model for any encoder backbone.

* `build_task_model(backbone, num_outputs)`: keras-hub `TextClassifier` for
  the backbone (e.g. `BertTextClassifier`: pooled [CLS] -> dropout -> dense;
  ELECTRA: this package's `ElectraTextClassifier`), without a preprocessor,
  so tokenisation happens in `tf.data`; a first-token head for backbones
  with no text classifier; `pooling="mean"` / `"max"`: this package's
  `PooledTextClassifier` (token states pooled over real tokens -> dropout ->
  dense, a sentence encoder's pooling). Regression: one output, MSE.
* `build_preprocessor(tokenizer, sequence_length)`: the keras-hub
  `TextClassifierPreprocessor` (pairs: `(text, text_pair)` tuples).
* `compile_task_model`: loss and metric for the task kind; with
  `distillation`, the labels-plus-teacher-logits loss
  (`minilm_tf.losses.logits`) and the same metric read off the labels.
"""

import logging

import keras
import keras_hub

from minilm_tf.losses.logits import LogitDistillationLoss, label_column
from minilm_tf.models.distiller import embedding_settings
from minilm_tf.tasks.classification import data as classification_data
from minilm_tf.tasks.classification.electra import ElectraTextClassifier
from minilm_tf.tasks.classification.pooled import PooledTextClassifier

# Text classifiers this package adds for backbones keras-hub has none for.
OWN_TASKS = (ElectraTextClassifier,)

logger = logging.getLogger(__name__)

DEFAULT_SEQUENCE_LENGTH = 128
# Classifier heads: `cls` is the backbone's own keras-hub text classifier
# (BERT: pooled [CLS]); `mean` / `max` a `PooledTextClassifier`; `auto` the
# checkpoint's own sentence pooling (`head_pooling`).
HEAD_POOLINGS = ("cls", "mean", "max")
POOLING_CHOICES = ("auto",) + HEAD_POOLINGS


def head_pooling(pooling: str, encoder) -> str:
    """The head a fine-tune builds: `pooling` itself, or for `auto` the
    pooling of a sentence-transformers checkpoint (its `1_Pooling` config,
    which distilled students inherit from their teacher: mean for
    all-MiniLM-L6-v2) and `cls` for any other encoder."""
    if pooling not in POOLING_CHOICES:
        raise ValueError(f"Unknown head pooling {pooling!r}; use one of {POOLING_CHOICES}.")
    if pooling != "auto":
        return pooling
    if not (getattr(encoder, "metadata", None) or {}).get("pooling"):
        return "cls"
    return embedding_settings(encoder)[0]


def _keras_hub_task_class(backbone):
    """The keras-hub `TextClassifier` subclass made for this backbone class
    (keras-hub's own first, then `OWN_TASKS`)."""
    candidates = []
    for name in dir(keras_hub.models):
        obj = getattr(keras_hub.models, name)
        if (isinstance(obj, type) and issubclass(obj, keras_hub.models.TextClassifier)
                and getattr(obj, "backbone_cls", None) is type(backbone)):
            candidates.append((not name.endswith("TextClassifier"), name, obj))
    if candidates:
        return sorted(candidates)[0][2]
    return next((cls for cls in OWN_TASKS if cls.backbone_cls is type(backbone)), None)

class _PooledHead:
    """Fallback head for backbones without a keras-hub TextClassifier: first
    token of `sequence_output` -> dropout -> dense."""

    @staticmethod
    def build(backbone, num_outputs, dropout):
        inputs = backbone.input
        outputs = backbone(inputs)
        if isinstance(outputs, dict):
            pooled = outputs.get("pooled_output")
            if pooled is None:
                pooled = outputs["sequence_output"][:, 0, :]
        else:
            pooled = outputs[:, 0, :]
        x = keras.layers.Dropout(dropout, name="classifier_dropout")(pooled)
        logits = keras.layers.Dense(num_outputs, name="logits")(x)
        return keras.Model(inputs, logits, name="text_classifier")

def build_task_model(backbone, num_outputs: int, dropout: float = 0.1,
                     pooling: str = "cls"):
    """Backbone + classification head emitting `num_outputs` logits (1 for
    regression). `pooling="cls"`: the backbone's keras-hub `TextClassifier`
    (e.g. `BertTextClassifier(backbone, num_classes, preprocessor=None)`) when
    there is one, else a plain Keras model with a first-token head; `mean` /
    `max`: a `PooledTextClassifier` on any backbone."""
    if pooling not in HEAD_POOLINGS:
        raise ValueError(f"Unknown head pooling {pooling!r}; use one of {HEAD_POOLINGS}.")
    if pooling != "cls":
        return PooledTextClassifier(backbone=backbone, num_classes=num_outputs,
                                    preprocessor=None, pooling=pooling, dropout=dropout)
    cls = _keras_hub_task_class(backbone)
    if cls is not None:
        try:
            return cls(backbone=backbone, num_classes=num_outputs, preprocessor=None,
                       dropout=dropout)
        except TypeError as e:
            logger.warning("%s(...) failed (%s); using a generic head.", cls.__name__, e)
    return _PooledHead.build(backbone, num_outputs, dropout)

def build_preprocessor(tokenizer, sequence_length: int = DEFAULT_SEQUENCE_LENGTH,
                       task_model=None):
    """The keras-hub text-classifier preprocessor for `tokenizer`."""
    cls = None
    if task_model is not None:
        cls = getattr(type(task_model), "preprocessor_cls", None)
    if cls is None:
        for name in dir(keras_hub.models):
            obj = getattr(keras_hub.models, name)
            if (isinstance(obj, type)
                    and issubclass(obj, keras_hub.models.TextClassifierPreprocessor)
                    and getattr(obj, "tokenizer_cls", None) is type(tokenizer)):
                cls = obj
                break
    if cls is None:
        cls = keras_hub.models.TextClassifierPreprocessor
    return cls(tokenizer=tokenizer, sequence_length=sequence_length)

class _OnLabels:
    """A metric of `[label, teacher logits...]` targets, computed on the labels."""

    def update_state(self, y_true, y_pred, sample_weight=None):
        return super().update_state(label_column(y_true), y_pred, sample_weight)


@keras.saving.register_keras_serializable(package="minilm_tf")
class LabelAccuracy(_OnLabels, keras.metrics.SparseCategoricalAccuracy):
    pass


@keras.saving.register_keras_serializable(package="minilm_tf")
class LabelMeanAbsoluteError(_OnLabels, keras.metrics.MeanAbsoluteError):
    pass


def compile_task_model(model, kind: str, optimizer, jit_compile: bool = True,
                       distillation: dict | None = None) -> None:
    """Loss and metric for the task kind. `jit_compile`: XLA-compile the
    train/predict steps (Keras's "auto" leaves XLA off on CPU-only machines).
    `distillation` (`{"alpha": a, "temperature": T}`): the targets are
    `[label, teacher logits...]` rows and the loss is `LogitDistillationLoss`."""
    regression = kind == classification_data.REGRESSION
    if distillation is not None:
        loss = LogitDistillationLoss(kind, **distillation)
        metric = (LabelMeanAbsoluteError(name="mae") if regression
                  else LabelAccuracy(name="accuracy"))
    elif regression:
        loss, metric = keras.losses.MeanSquaredError(), keras.metrics.MeanAbsoluteError(name="mae")
    else:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        metric = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
    model.compile(optimizer=optimizer, loss=loss, metrics=[metric], jit_compile=jit_compile)
