"""A keras-hub `BertBackbone`'s weights under Hugging Face `BertModel` names.

The mapping is the inverse of keras-hub's own importer
(`keras_hub/src/utils/transformers/convert_bert.py`): dense kernels are
transposed to torch's `[out, in]`, attention kernels `[hidden, heads,
head_dim]` flattened first. Everything is float32 numpy: no torch.
"""

from __future__ import annotations

import numpy as np

from minilm_tf import _compat


def _np(variable) -> np.ndarray:
    return np.asarray(variable.numpy() if hasattr(variable, "numpy") else variable,
                      dtype=np.float32)


def _dense_kernel(kernel, fan_in: int | None = None, fan_out: int | None = None) -> np.ndarray:
    """Keras kernel `[in..., out...]` -> torch Linear weight `[out, in]`.

    The inverse of keras-hub's `np.reshape(np.transpose(w), kernel.shape)`.
    """
    k = _np(kernel)
    if fan_in is not None:
        k = k.reshape(fan_in, -1)
    elif fan_out is not None:
        k = k.reshape(-1, fan_out)
    return np.ascontiguousarray(k.T)


def hf_state_dict(backbone) -> dict[str, np.ndarray]:
    """The backbone's weights under Hugging Face `BertModel` names (float32)."""
    hidden = int(backbone.hidden_dim)
    w = {
        "embeddings.word_embeddings.weight": _np(backbone.get_layer("token_embedding").embeddings),
        "embeddings.position_embeddings.weight": _np(
            backbone.get_layer("position_embedding").position_embeddings),
        "embeddings.token_type_embeddings.weight": _np(
            backbone.get_layer("segment_embedding").embeddings),
        "embeddings.LayerNorm.weight": _np(backbone.get_layer("embeddings_layer_norm").gamma),
        "embeddings.LayerNorm.bias": _np(backbone.get_layer("embeddings_layer_norm").beta),
    }
    for i, block in enumerate(backbone.transformer_layers):
        attn = _compat.self_attention(block)
        p = f"encoder.layer.{i}."
        for name, dense in (("query", attn.query_dense), ("key", attn.key_dense),
                            ("value", attn.value_dense)):
            w[f"{p}attention.self.{name}.weight"] = _dense_kernel(dense.kernel, fan_in=hidden)
            w[f"{p}attention.self.{name}.bias"] = _np(dense.bias).reshape(-1)
        w[f"{p}attention.output.dense.weight"] = _dense_kernel(attn.output_dense.kernel,
                                                               fan_out=hidden)
        w[f"{p}attention.output.dense.bias"] = _np(attn.output_dense.bias).reshape(-1)
        w[f"{p}attention.output.LayerNorm.weight"] = _np(_compat.self_attention_norm(block).gamma)
        w[f"{p}attention.output.LayerNorm.bias"] = _np(_compat.self_attention_norm(block).beta)
        intermediate = _compat.feedforward_intermediate(block)
        output = _compat.feedforward_output(block)
        w[f"{p}intermediate.dense.weight"] = _dense_kernel(intermediate.kernel)
        w[f"{p}intermediate.dense.bias"] = _np(intermediate.bias)
        w[f"{p}output.dense.weight"] = _dense_kernel(output.kernel)
        w[f"{p}output.dense.bias"] = _np(output.bias)
        w[f"{p}output.LayerNorm.weight"] = _np(_compat.feedforward_norm(block).gamma)
        w[f"{p}output.LayerNorm.bias"] = _np(_compat.feedforward_norm(block).beta)
    pooled = backbone.get_layer("pooled_dense")
    w["pooler.dense.weight"] = _dense_kernel(pooled.kernel)
    w["pooler.dense.bias"] = _np(pooled.bias)
    return {k: np.ascontiguousarray(v) for k, v in w.items()}
