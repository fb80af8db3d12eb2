"""A TF Model Garden BERT encoder directory's config and checkpoint files:
which config file describes it (`encoder_config.json`, Model Garden's
`EncoderConfig` or inner `BertEncoderConfig` dict, else original BERT's
`bert_config.json`), what it says, and which encoders cannot map onto
keras-hub's `BertBackbone` (each refused with its reason). Loading and
saving the weights is `minilm_tf.models.model_garden`."""

import dataclasses
import glob
import os

import tensorflow as tf

from minilm_tf.models.loaded_encoder import read_json

CONFIG_FILE = "encoder_config.json"
BERT_CONFIG_FILE = "bert_config.json"
VOCAB_FILE = "vocab.txt"
# The name Model Garden gives the encoder in its checkpoints.
ROOT = "encoder"
BERT_TYPES = ("bert", "bert_v2")

# Model Garden activation names -> this package's (loaded_encoder.py). Model
# Garden's "gelu" is the tanh approximation (official.modeling.activations).
_ACTIVATIONS = {"gelu": "gelu_approximate", "relu": "relu"}

# Why each other Model Garden encoder type has no BertBackbone counterpart.
_REFUSED_TYPES = {
    "albert": "ALBERT shares one transformer layer across depth and factorises its embeddings",
    "mobilebert": "MobileBERT's bottleneck blocks and no-norm layers differ from BERT's",
    "bigbird": "BigBird's block-sparse attention differs from BERT's full attention",
    "funnel": "Funnel Transformer pools the sequence between layers",
    "kernel": "kernel attention replaces softmax attention",
    "xlnet": "XLNet uses two-stream relative attention",
    "fnet": "FNet replaces attention with Fourier transforms",
    "sparse_mixer": "Sparse Mixer mixes tokens without attention",
    "reuse": "it reuses attention scores across layers",
    "query_bert": "its query-side layers have no BertBackbone counterpart",
    "any": "its layers come from a user-supplied builder",
}


@dataclasses.dataclass(frozen=True)
class BertEncoderConfig:
    """The architecture of a Model Garden BERT encoder (`BertEncoderConfig` names)."""

    vocab_size: int
    hidden_size: int
    num_layers: int
    num_attention_heads: int
    intermediate_size: int
    hidden_activation: str = "gelu"
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    dropout_rate: float = 0.1
    embedding_size: int | None = None
    output_range: int | None = None
    norm_first: bool = False

    def as_encoder_config(self) -> dict:
        """Model Garden's `EncoderConfig(type="bert", bert=...).as_dict()` layout."""
        return {"type": "bert", "bert": dataclasses.asdict(self)}


_REQUIRED = ("vocab_size", "hidden_size", "num_layers", "num_attention_heads",
             "intermediate_size")
# Original BERT's bert_config.json names -> BertEncoderConfig's.
_BERT_CONFIG_NAMES = {"num_hidden_layers": "num_layers", "hidden_act": "hidden_activation",
                      "hidden_dropout_prob": "dropout_rate"}


def _config_from(values: dict, path: str) -> BertEncoderConfig:
    missing = [key for key in _REQUIRED if values.get(key) is None]
    if missing:
        raise ValueError(f"{path} lacks {', '.join(missing)}: it does not describe a BERT "
                         "encoder (Model Garden's EncoderConfig or BertEncoderConfig).")
    fields = {f.name for f in dataclasses.fields(BertEncoderConfig)}
    config = BertEncoderConfig(**{k: v for k, v in values.items() if k in fields})
    _check_supported(config, path)
    return config


def _check_supported(config: BertEncoderConfig, path: str) -> None:
    refuse = f"{path}: minilm_tf cannot load this Model Garden encoder into a BertBackbone:"
    if config.norm_first:
        raise ValueError(f"{refuse} norm_first=true (pre-LayerNorm blocks); BertBackbone's "
                         "blocks normalise after attention and feed-forward.")
    if config.embedding_size not in (None, config.hidden_size):
        raise ValueError(f"{refuse} embedding_size={config.embedding_size} factorises the "
                         f"embeddings (hidden_size={config.hidden_size}); BertBackbone has no "
                         "embedding projection.")
    if config.hidden_activation.lower() not in _ACTIVATIONS:
        raise ValueError(f"{refuse} hidden_activation={config.hidden_activation!r}; supported: "
                         f"{sorted(_ACTIVATIONS)}.")
    if config.hidden_size % config.num_attention_heads:
        raise ValueError(f"{path}: hidden_size={config.hidden_size} is not divisible by "
                         f"num_attention_heads={config.num_attention_heads}.")


def config_path(directory: str) -> str:
    """`directory`'s encoder_config.json, else its bert_config.json."""
    path = os.path.join(directory, CONFIG_FILE)
    return path if os.path.exists(path) else os.path.join(directory, BERT_CONFIG_FILE)


def read_config(directory: str) -> BertEncoderConfig:
    """The encoder config in `directory` (encoder_config.json or bert_config.json)."""
    path = config_path(directory)
    if os.path.basename(path) == CONFIG_FILE:
        values = read_json(path)
        if "type" in values:
            kind = values["type"]
            if kind not in BERT_TYPES:
                reason = _REFUSED_TYPES.get(kind, "it is not a BERT encoder")
                raise ValueError(f"{path} describes a {kind!r} encoder, which minilm_tf does not "
                                 f"load: {reason}. Only types {', '.join(BERT_TYPES)} map onto "
                                 "keras-hub's BertBackbone.")
            values = values.get(kind) or {}
        return _config_from(values, path)
    values = read_json(path)
    if "num_hidden_groups" in values or "inner_group_num" in values:
        raise ValueError(f"{path} is an ALBERT config, which minilm_tf does not load: "
                         f"{_REFUSED_TYPES['albert']}.")
    if "intra_bottleneck_size" in values or "use_bottleneck" in values:
        raise ValueError(f"{path} is a MobileBERT config, which minilm_tf does not load: "
                         f"{_REFUSED_TYPES['mobilebert']}.")
    return _config_from({_BERT_CONFIG_NAMES.get(k, k): v for k, v in values.items()}, path)


def checkpoint_path(directory: str) -> str | None:
    """The checkpoint prefix in `directory`: the state file's, else the one `*.index`."""
    path = tf.train.latest_checkpoint(directory)
    if path:
        return path
    indexes = sorted(glob.glob(os.path.join(directory, "*.index")))
    return indexes[0][: -len(".index")] if len(indexes) == 1 else None


def is_model_garden_dir(directory: str) -> bool:
    """Whether `directory` looks like a Model Garden encoder (config + TF checkpoint)."""
    has_config = os.path.exists(config_path(directory))
    return has_config and bool(glob.glob(os.path.join(directory, "*.index")))
