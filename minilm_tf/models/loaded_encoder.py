"""`LoadedEncoder` (a backbone with its tokenizer) and what every loader shares.

The loaders (`minilm_tf.models.encoders` for Hugging Face and keras-hub,
`minilm_tf.models.model_garden` for TF Model Garden) build on these.
"""

import dataclasses
import json
from typing import Any

import keras

from minilm_tf import _compat
from minilm_tf.ops import activations

# Hugging Face `hidden_act` / `activation` values -> Keras activations.
_ACTIVATIONS = {
    "gelu": activations.gelu_exact,
    "gelu_new": activations.gelu_tanh,
    "gelu_pytorch_tanh": activations.gelu_tanh,
    "gelu_approximate": activations.gelu_tanh,
    "relu": keras.activations.relu,
}


@dataclasses.dataclass
class LoadedEncoder:
    """An encoder backbone with the tokenizer that feeds it.

    Attributes:
        backbone: the keras-hub backbone (e.g. `BertBackbone`).
        tokenizer: the matching keras-hub tokenizer.
        spec: the spec it was loaded from.
        hidden_act: the feed-forward activation in use (`gelu`, `gelu_new`...).
        source_dir: the local directory it was read from, when there is one.
        metadata: extra facts (e.g. sentence-transformers pooling) when known.
    """

    backbone: keras.Model
    tokenizer: Any
    spec: str
    hidden_act: str
    source_dir: str | None = None
    metadata: dict = dataclasses.field(default_factory=dict)

    @property
    def lowercase(self) -> bool:
        return bool(getattr(self.tokenizer, "lowercase", False))


def set_feedforward_activation(backbone: keras.Model, hidden_act: str) -> None:
    """Makes every transformer layer use the activation `hidden_act`."""
    if hidden_act not in _ACTIVATIONS:
        raise ValueError(
            f"Unsupported activation {hidden_act!r}; supported: {sorted(_ACTIVATIONS)}."
        )
    activation = _ACTIVATIONS[hidden_act]
    for layer in backbone.transformer_layers:
        _compat.feedforward_intermediate(layer).activation = activation


def read_json(path: str) -> dict:
    """A JSON file's content; invalid JSON is a ValueError naming the file."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from e
