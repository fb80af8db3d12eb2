"""TF Model Garden BERT encoders: read into keras-hub, write for Model Garden.

A Model Garden encoder directory holds:

- a TF2 checkpoint of `official.nlp.modeling.networks.BertEncoder` (or
  `BertEncoderV2`) written as `tf.train.Checkpoint(encoder=bert_encoder)`,
  found through its `checkpoint` state file or as the one `*.index` file;
- its config: `encoder_config.json`, Model Garden's
  `EncoderConfig(...).as_dict()` (`{"type": "bert", "bert": {...}}`) or the
  inner `BertEncoderConfig` dict, or else `bert_config.json` in original
  BERT's format (what Model Garden's pretrained BERT downloads carry);
- `vocab.txt`, the WordPiece vocabulary (lowercased when it holds no
  upper-case token).

`load_model_garden_encoder(directory)`, which `load_teacher(directory)` calls,
maps the encoder's variables by their object names (`_embedding_layer`,
`_transformer_layers/<i>/_attention_layer/_query_dense`, ...) in the
checkpoint's object graph into a keras-hub `BertBackbone`. It never imports
tf-models-official, which pins an older TensorFlow. `save_model_garden_encoder`
writes a keras-hub BERT encoder (a distilled student) in the same layout, which
`BertEncoder` restores.

Refused, each with its reason: Model Garden's other encoders (ALBERT,
MobileBERT, EncoderScaffold, BigBird, ...), pre-LayerNorm blocks
(`norm_first`), factorised embeddings (`embedding_size` other than
`hidden_size`), activations other than gelu and relu, and TF1 name-based BERT
checkpoints. `output_range` is accepted: the backbone computes every position,
the first `output_range` of which are Model Garden's outputs.
"""

import json
import os

import keras
import keras_hub
import numpy as np
import tensorflow as tf

from minilm_tf import _compat
from minilm_tf.models.loaded_encoder import LoadedEncoder, set_feedforward_activation

from minilm_tf.models.model_garden_config import (  # noqa: F401  (part of this module's API)
    BERT_CONFIG_FILE,
    BERT_TYPES,
    CONFIG_FILE,
    ROOT,
    VOCAB_FILE,
    BertEncoderConfig,
    _ACTIVATIONS,
    checkpoint_path,
    config_path,
    is_model_garden_dir,
    read_config,
)


class _ObjectGraph:
    """Named edges between a TF2 checkpoint's objects and their variables' keys."""

    def __init__(self, graph):
        self._nodes = graph.nodes

    def children(self, node: int) -> dict[str, int]:
        return {child.local_name: child.node_id for child in self._nodes[node].children}

    def find(self, path: str, node: int = 0) -> int | None:
        for name in path.split("/"):
            node = self.children(node).get(name)
            if node is None:
                return None
        return node

    def variable_key(self, node: int) -> str | None:
        for attribute in self._nodes[node].attributes:
            if attribute.name == "VARIABLE_VALUE":
                return attribute.checkpoint_key
        return None

    def variable_keys(self, node: int) -> set[str]:
        """The keys of every variable reachable from `node`."""
        keys, seen, todo = set(), set(), [node]
        while todo:
            current = todo.pop()
            if current in seen:
                continue
            seen.add(current)
            key = self.variable_key(current)
            if key:
                keys.add(key)
            todo.extend(self.children(current).values())
        return keys


def _variable_pairs(backbone: keras.Model) -> list[tuple[str, keras.Variable]]:
    """(Model Garden object path under the encoder, the BertBackbone variable)."""
    pairs = [
        ("_embedding_layer/embeddings", backbone.token_embedding.embeddings),
        ("_position_embedding_layer/embeddings", backbone.position_embedding.position_embeddings),
        ("_type_embedding_layer/embeddings", backbone.segment_embedding.embeddings),
        ("_embedding_norm_layer/gamma", backbone.embeddings_layer_norm.gamma),
        ("_embedding_norm_layer/beta", backbone.embeddings_layer_norm.beta),
    ]
    for i, block in enumerate(backbone.transformer_layers):
        prefix = f"_transformer_layers/{i}/"
        attention = _compat.self_attention(block)
        dense = [
            ("_attention_layer/_query_dense", attention.query_dense),
            ("_attention_layer/_key_dense", attention.key_dense),
            ("_attention_layer/_value_dense", attention.value_dense),
            ("_attention_layer/_output_dense", attention.output_dense),
            ("_intermediate_dense", _compat.feedforward_intermediate(block)),
            ("_output_dense", _compat.feedforward_output(block)),
        ]
        for name, layer in dense:
            pairs += [(f"{prefix}{name}/kernel", layer.kernel),
                      (f"{prefix}{name}/bias", layer.bias)]
        for name, norm in (("_attention_layer_norm", _compat.self_attention_norm(block)),
                           ("_output_layer_norm", _compat.feedforward_norm(block))):
            pairs += [(f"{prefix}{name}/gamma", norm.gamma), (f"{prefix}{name}/beta", norm.beta)]
    pairs += [("_pooler_layer/kernel", backbone.pooled_dense.kernel),
              ("_pooler_layer/bias", backbone.pooled_dense.bias)]
    return pairs


def _encoder_node(graph: _ObjectGraph, path: str, config: BertEncoderConfig) -> int:
    """The encoder object, checked to be a BertEncoder of `config`'s depth."""
    encoder = graph.find(ROOT)
    if encoder is None:
        raise ValueError(
            f"{path} has no {ROOT!r} object (top-level objects: {sorted(graph.children(0))}); "
            f"minilm_tf reads encoders saved as tf.train.Checkpoint({ROOT}=bert_encoder).")
    children = graph.children(encoder)
    refuse = f"{path} is not a BertEncoder checkpoint, which minilm_tf needs:"
    if "_hidden_layers" in children or "_embedding_network" in children:
        raise ValueError(f"{refuse} it is an EncoderScaffold, whose embedding and hidden layers "
                         "are user-supplied classes with no fixed variable layout.")
    if "_embedding_projection" in children:
        raise ValueError(f"{refuse} it has an embedding projection (factorised embeddings, as "
                         "in ALBERT); BertBackbone has none.")
    if "_transformer_layers" not in children:
        below = {name for child in children.values() for name in graph.children(child)}
        if "block_layers" in below:
            reason = "it is a MobileBERT encoder (bottleneck blocks)"
        elif "_embedding_layer" in children:
            reason = "it has no per-layer _transformer_layers (ALBERT shares one layer)"
        else:
            reason = "it has none of BertEncoder's named layers (_transformer_layers, ...)"
        raise ValueError(f"{refuse} {reason}.")
    layers = graph.children(children["_transformer_layers"])
    if len(layers) != config.num_layers:
        raise ValueError(f"{path} has {len(layers)} transformer layers but its config says "
                         f"num_layers={config.num_layers}.")
    block = graph.children(layers["0"]) if "0" in layers else {}
    if "_attention_layer" not in block or "_intermediate_dense" not in block:
        raise ValueError(f"{refuse} its layers are not TransformerEncoderBlocks (MobileBERT and "
                         f"other custom blocks are refused; found {sorted(block)}).")
    return encoder


def _tokenizer(directory: str, vocab_size: int, lowercase: bool | None):
    path = os.path.join(directory, VOCAB_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{directory} has no {VOCAB_FILE}: a Model Garden encoder needs "
                                "its WordPiece vocabulary beside the checkpoint.")
    with open(path, encoding="utf-8") as f:
        tokens = [line.rstrip("\n") for line in f]
    if len(tokens) != vocab_size:
        raise ValueError(f"{path} has {len(tokens)} tokens but the encoder's embeddings have "
                         f"vocab_size={vocab_size} rows; the vocabulary does not belong to it.")
    if lowercase is None:  # uncased BERT vocabularies hold no upper-case word piece
        lowercase = not any(c.isupper() for t in tokens if not t.startswith("[") for c in t)
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=path, lowercase=lowercase)
    tokenizer.strip_accents = lowercase  # as BERT's uncased tokenizer
    return tokenizer


def load_model_garden_encoder(directory: str, lowercase: bool | None = None) -> LoadedEncoder:
    """Loads a Model Garden BERT encoder directory into a keras-hub BertBackbone.

    Args:
        directory: checkpoint + encoder_config.json (or bert_config.json) +
            vocab.txt, as described in the module doc.
        lowercase: whether the tokenizer lowercases (and strips accents);
            by default, when the vocabulary holds no upper-case token.

    Returns:
        A `LoadedEncoder` computing what the Model Garden encoder computes.

    Examples:
    ```python
    teacher = minilm_tf.load_teacher("path/to/model_garden_bert")  # same as:
    teacher = minilm_tf.models.model_garden.load_model_garden_encoder("path/to/model_garden_bert")
    ```
    """
    config = read_config(directory)
    path = checkpoint_path(directory)
    if path is None:
        raise FileNotFoundError(f"{directory} has no TF checkpoint (a `checkpoint` state file "
                                "or exactly one *.index file).")
    reader = tf.train.load_checkpoint(path)
    graph = _compat.checkpoint_object_graph(reader)
    if graph is None:
        raise ValueError(f"{path} is a TF1 name-based checkpoint (e.g. original BERT's), not a "
                         "Model Garden TF2 one: convert it with Model Garden's "
                         "tf2_encoder_checkpoint_converter, or load a Hugging Face copy.")
    graph = _ObjectGraph(graph)
    encoder = _encoder_node(graph, path, config)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=config.vocab_size, num_layers=config.num_layers,
        num_heads=config.num_attention_heads, hidden_dim=config.hidden_size,
        intermediate_dim=config.intermediate_size, dropout=config.dropout_rate,
        max_sequence_length=config.max_position_embeddings,
        num_segments=config.type_vocab_size)
    used = set()
    for name, variable in _variable_pairs(backbone):
        node = graph.find(name, encoder)
        key = graph.variable_key(node) if node is not None else None
        if key is None:
            raise ValueError(f"{path} has no variable {ROOT}/{name}, which a BertEncoder has.")
        value = reader.get_tensor(key)
        if tuple(value.shape) != tuple(variable.shape):
            raise ValueError(f"{path}: {ROOT}/{name} has shape {tuple(value.shape)}, but "
                             f"{config_path(directory)} implies "
                             f"{tuple(variable.shape)}; the config does not belong to it.")
        variable.assign(value)
        used.add(key)
    extra = sorted(graph.variable_keys(encoder) - used)
    if extra:
        raise ValueError(f"{path} holds {len(extra)} encoder variables a BertEncoder of this "
                         f"config does not have (e.g. {extra[0]}); it is another architecture.")
    hidden_act = _ACTIVATIONS[config.hidden_activation.lower()]
    set_feedforward_activation(backbone, hidden_act)
    tokenizer = _tokenizer(directory, config.vocab_size, lowercase)
    metadata = {"source_format": "model_garden", "model_garden_checkpoint": os.path.basename(path)}
    return LoadedEncoder(backbone, tokenizer, directory, hidden_act, directory, metadata)


def _child(node, name: str, holds_list: bool):
    """`node`'s attribute (or list element) `name`, created when missing."""
    if name.isdigit():  # an element of a tracked list (`_transformer_layers/0`)
        while len(node) <= int(name):
            node.append(tf.Module())
        return node[int(name)]
    if not hasattr(node, name):
        setattr(node, name, [] if holds_list else tf.Module())
    return getattr(node, name)


def _trackable(values: dict[str, np.ndarray]) -> tf.Module:
    """Objects with Model Garden's attribute names holding `values` (path -> array):
    what `tf.train.Checkpoint` writes is then what BertEncoder's object graph reads."""
    root = tf.Module()
    for path, value in values.items():
        *parents, leaf = path.split("/")
        node = root
        for i, name in enumerate(parents):
            node = _child(node, name, i + 1 < len(parents) and parents[i + 1].isdigit())
        setattr(node, leaf, tf.Variable(value, name=leaf))
    return root


def _model_garden_activation(encoder: LoadedEncoder, approximate_gelu: bool) -> str:
    if encoder.hidden_act in ("gelu_approximate", "gelu_new", "gelu_pytorch_tanh"):
        return "gelu"
    if encoder.hidden_act == "relu":
        return "relu"
    if encoder.hidden_act == "gelu" and approximate_gelu:
        return "gelu"
    if encoder.hidden_act == "gelu":
        raise ValueError("The encoder uses exact GELU, but Model Garden's 'gelu' is the tanh "
                         "approximation (outputs differ by about 1e-3): pass "
                         "approximate_gelu=True to write it anyway.")
    raise ValueError(f"The encoder's activation {encoder.hidden_act!r} has no Model Garden "
                     "name; only gelu and relu encoders can be written.")


def save_model_garden_encoder(encoder: LoadedEncoder, directory: str, *,
                              approximate_gelu: bool = False) -> str:
    """Writes a keras-hub BERT encoder as a Model Garden encoder directory.

    `tf.train.Checkpoint(encoder=bert_encoder).read(path)` restores it into the
    `official.nlp.modeling.networks.BertEncoder` that encoder_config.json
    describes (`encoders.build_encoder`), and `load_teacher(directory)` reads it
    back.

    Args:
        encoder: a `LoadedEncoder` whose backbone is a keras-hub `BertBackbone`
            (a teacher, or a student from `build_student`).
        directory: where to write; must not exist or be empty.
        approximate_gelu: write an exact-GELU encoder with Model Garden's
            `gelu`, the tanh approximation (a small change of its outputs).

    Returns:
        The checkpoint prefix written.
    """
    if not isinstance(encoder.backbone, keras_hub.models.BertBackbone):
        raise ValueError(f"Only keras-hub BertBackbone encoders can be written for Model "
                         f"Garden's BertEncoder, not {type(encoder.backbone).__name__}.")
    if os.path.exists(directory) and os.listdir(directory):
        raise FileExistsError(f"{directory} is not empty: pick a new directory.")
    backbone = encoder.backbone
    config = BertEncoderConfig(
        vocab_size=backbone.vocabulary_size, hidden_size=backbone.hidden_dim,
        num_layers=backbone.num_layers, num_attention_heads=backbone.num_heads,
        intermediate_size=backbone.intermediate_dim,
        hidden_activation=_model_garden_activation(encoder, approximate_gelu),
        max_position_embeddings=backbone.max_sequence_length,
        type_vocab_size=backbone.num_segments, dropout_rate=backbone.dropout)
    os.makedirs(directory, exist_ok=True)
    values = {name: keras.ops.convert_to_numpy(v) for name, v in _variable_pairs(backbone)}
    path = tf.train.Checkpoint(**{ROOT: _trackable(values)}).save(os.path.join(directory, "ckpt"))
    with open(os.path.join(directory, CONFIG_FILE), "w", encoding="utf-8") as f:
        json.dump(config.as_encoder_config(), f, indent=2)
    if encoder.tokenizer is not None:
        with open(os.path.join(directory, VOCAB_FILE), "w", encoding="utf-8") as f:
            f.write("\n".join(encoder.tokenizer.get_vocabulary()) + "\n")
    return path
