"""Numerical building blocks; nothing else of `minilm_tf` is imported here.

- `attention`: query-first attention scores, fused masked softmax, 16-bit dropout.
- `normalization`: LayerNorm with an XLA-fused forward and gradient.
- `activations`: exact and tanh GELU, and their XLA-fused dense forms.
- `xla`: `xla_function`, compiling a small function as one XLA cluster.
- `native`: the C++ relation-KL TensorFlow op, built for this machine.
"""
