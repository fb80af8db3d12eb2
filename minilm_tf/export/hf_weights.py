"""A keras-hub encoder's weights under Hugging Face names.

One mapping per architecture, each the inverse of keras-hub's own importer
(`keras_hub/src/utils/transformers/convert_<arch>.py`): dense kernels are
transposed to torch's `[out, in]`, attention kernels `[hidden, heads,
head_dim]` flattened first.

* BERT (`BertModel`) and ELECTRA (`ElectraModel`, plus `embeddings_project`
  when the embeddings are narrower than the layers) share the layer names;
  ELECTRA's Hugging Face model has no pooler, so keras-hub's `pooled_dense`
  is not exported.
* RoBERTa / XLM-RoBERTa (`RobertaModel` / `XLMRobertaModel`): Hugging Face
  counts positions from `pad_token_id + 1`, so two rows are put in front of
  the position table (zeros; only padded positions read row 1); the single
  token-type row is zeros (keras-hub adds none); keras-hub has no pooler, so
  the exported pooler is zeros (`pooler_output` is 0).
* DistilBERT (`DistilBertModel`): its own names (`q_lin`, `sa_layer_norm`,
  `ffn.lin1`, ...), no token types, no pooler.

RoBERTa and DistilBERT names carry their base-model prefix (`roberta.`,
`distilbert.`), as the Hub's checkpoints of them do, so that keras-hub's
importers read the export back as well as transformers does.

Every backbone weight is read exactly once (`hf_state_dict` checks it), so
a weight a mapping forgot is an error, not a silent omission. Everything is
float32 numpy: no torch.
"""

from __future__ import annotations

import numpy as np

from minilm_tf import _compat

# Hugging Face RoBERTa position ids start after the padding index (1).
ROBERTA_POSITION_OFFSET = 2
# keras-hub weights a Hugging Face model of that architecture does not have.
NOT_EXPORTED = {"ElectraBackbone": ("pooled_dense",)}
# Names stored under the base-model prefix, as the Hub's RoBERTa and
# DistilBERT checkpoints store them: keras-hub's importers of those two
# architectures only read prefixed names; transformers reads both.
CHECKPOINT_PREFIX = {"RobertaBackbone": "roberta.", "DistilBertBackbone": "distilbert."}


class _Reader:
    """Reads Keras variables as float32 numpy, remembering which were read."""

    def __init__(self):
        self.read_ids: set[int] = set()

    def __call__(self, variable) -> np.ndarray:
        self.read_ids.add(id(variable))
        return np.asarray(variable.numpy(), dtype=np.float32)

    def dense(self, kernel, fan_in: int | None = None, fan_out: int | None = None) -> np.ndarray:
        """Keras kernel `[in..., out...]` -> torch Linear weight `[out, in]`
        (the inverse of keras-hub's `np.reshape(np.transpose(w), kernel.shape)`)."""
        k = self(kernel)
        if fan_in is not None:
            k = k.reshape(fan_in, -1)
        elif fan_out is not None:
            k = k.reshape(-1, fan_out)
        return k.T

    def linear(self, name: str, layer, **fans) -> dict[str, np.ndarray]:
        return {f"{name}.weight": self.dense(layer.kernel, **fans),
                f"{name}.bias": self(layer.bias).reshape(-1)}

    def norm(self, name: str, layer) -> dict[str, np.ndarray]:
        return {f"{name}.weight": self(layer.gamma), f"{name}.bias": self(layer.beta)}


def _bert_layers(read: _Reader, backbone, prefix: str = "encoder.layer") -> dict:
    """The keras-hub `TransformerEncoder`s under BERT's layer names (also
    RoBERTa's, XLM-R's and ELECTRA's)."""
    hidden = int(backbone.hidden_dim)
    w = {}
    for i, block in enumerate(backbone.transformer_layers):
        attn = _compat.self_attention(block)
        p = f"{prefix}.{i}."
        for name, dense in (("query", attn.query_dense), ("key", attn.key_dense),
                            ("value", attn.value_dense)):
            w.update(read.linear(f"{p}attention.self.{name}", dense, fan_in=hidden))
        w.update(read.linear(f"{p}attention.output.dense", attn.output_dense, fan_out=hidden))
        w.update(read.norm(f"{p}attention.output.LayerNorm", _compat.self_attention_norm(block)))
        w.update(read.linear(f"{p}intermediate.dense", _compat.feedforward_intermediate(block)))
        w.update(read.linear(f"{p}output.dense", _compat.feedforward_output(block)))
        w.update(read.norm(f"{p}output.LayerNorm", _compat.feedforward_norm(block)))
    return w


def _bert_embeddings(read: _Reader, backbone) -> dict:
    """Token, position and segment embeddings and their LayerNorm (BERT, ELECTRA)."""
    return {
        "embeddings.word_embeddings.weight": read(backbone.get_layer("token_embedding").embeddings),
        "embeddings.position_embeddings.weight": read(
            backbone.get_layer("position_embedding").position_embeddings),
        "embeddings.token_type_embeddings.weight": read(
            backbone.get_layer("segment_embedding").embeddings),
        **read.norm("embeddings.LayerNorm", backbone.get_layer("embeddings_layer_norm")),
    }


def _bert(read: _Reader, backbone) -> dict:
    return {**_bert_embeddings(read, backbone), **_bert_layers(read, backbone),
            **read.linear("pooler.dense", backbone.get_layer("pooled_dense"))}


def _electra(read: _Reader, backbone) -> dict:
    w = _bert_embeddings(read, backbone)
    if getattr(backbone, "embeddings_projection", None) is not None:
        w.update(read.linear("embeddings_project", backbone.embeddings_projection))
    w.update(_bert_layers(read, backbone))
    return w


def _roberta(read: _Reader, backbone) -> dict:
    embedding = backbone.get_layer("embeddings")
    hidden = int(backbone.hidden_dim)
    positions = read(embedding.position_embedding.position_embeddings)
    w = {
        "embeddings.word_embeddings.weight": read(embedding.token_embedding.embeddings),
        "embeddings.position_embeddings.weight": np.concatenate(
            [np.zeros((ROBERTA_POSITION_OFFSET, hidden), np.float32), positions]),
        "embeddings.token_type_embeddings.weight": np.zeros((1, hidden), np.float32),
        **read.norm("embeddings.LayerNorm", backbone.get_layer("embeddings_layer_norm")),
    }
    w.update(_bert_layers(read, backbone))
    w["pooler.dense.weight"] = np.zeros((hidden, hidden), np.float32)
    w["pooler.dense.bias"] = np.zeros((hidden,), np.float32)
    return w


def _distilbert(read: _Reader, backbone) -> dict:
    embedding = backbone.get_layer("token_and_position_embedding")
    hidden = int(backbone.hidden_dim)
    w = {
        "embeddings.word_embeddings.weight": read(embedding.token_embedding.embeddings),
        "embeddings.position_embeddings.weight": read(
            embedding.position_embedding.position_embeddings),
        **read.norm("embeddings.LayerNorm", backbone.get_layer("embeddings_layer_norm")),
    }
    for i, block in enumerate(backbone.transformer_layers):
        attn = _compat.self_attention(block)
        p = f"transformer.layer.{i}."
        for name, dense in (("q_lin", attn.query_dense), ("k_lin", attn.key_dense),
                            ("v_lin", attn.value_dense)):
            w.update(read.linear(f"{p}attention.{name}", dense, fan_in=hidden))
        w.update(read.linear(f"{p}attention.out_lin", attn.output_dense, fan_out=hidden))
        w.update(read.norm(f"{p}sa_layer_norm", _compat.self_attention_norm(block)))
        w.update(read.linear(f"{p}ffn.lin1", _compat.feedforward_intermediate(block)))
        w.update(read.linear(f"{p}ffn.lin2", _compat.feedforward_output(block)))
        w.update(read.norm(f"{p}output_layer_norm", _compat.feedforward_norm(block)))
    return w


# keras-hub backbone class name -> its mapping. XLM-RoBERTa's backbone is a
# RobertaBackbone subclass with the same layers.
MAPPINGS = {
    "BertBackbone": _bert,
    "ElectraBackbone": _electra,
    "RobertaBackbone": _roberta,
    "XLMRobertaBackbone": _roberta,
    "DistilBertBackbone": _distilbert,
}


def hf_state_dict(backbone) -> dict[str, np.ndarray]:
    """The backbone's weights under Hugging Face names (float32, C order).

    Raises ValueError for a backbone without a mapping, or when a mapping
    left a backbone weight unread (other than the `NOT_EXPORTED` ones).
    """
    kind = type(backbone).__name__
    if kind not in MAPPINGS:
        raise ValueError(f"No Hugging Face weight mapping for a {kind}; mapped: "
                         f"{sorted(MAPPINGS)}.")
    read = _Reader()
    weights = MAPPINGS[kind](read, backbone)
    skipped = {id(v) for name in NOT_EXPORTED.get(kind, ())
               for v in backbone.get_layer(name).weights}
    missed = [v.path for v in backbone.weights
              if id(v) not in read.read_ids and id(v) not in skipped]
    if missed:
        raise ValueError(f"The {kind} mapping did not export {missed}.")
    prefix = CHECKPOINT_PREFIX.get(kind, "")
    return {prefix + k: np.ascontiguousarray(v) for k, v in weights.items()}


def exported_parameters(backbone) -> int:
    """The backbone's parameters that the export carries (all but `NOT_EXPORTED`)."""
    skipped = sum(int(np.prod(v.shape)) for name in NOT_EXPORTED.get(type(backbone).__name__, ())
                  for v in backbone.get_layer(name).weights)
    return int(backbone.count_params()) - skipped
