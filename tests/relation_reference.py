"""Numpy references of the relation losses, and random inputs for them."""

import numpy as np


def np_relation(a, b, heads, length):
    """Per-head softmax(a b^T / sqrt(d)) over the first `length` positions."""
    d = a.shape[-1] // heads
    out = []
    for h in range(heads):
        ah, bh = a[:length, h * d:(h + 1) * d], b[:length, h * d:(h + 1) * d]
        logits = ah @ bh.T / np.sqrt(d)
        logits -= logits.max(-1, keepdims=True)
        p = np.exp(logits)
        out.append(p / p.sum(-1, keepdims=True))
    return np.stack(out)  # [heads, L, L]


def np_kl_loss(ta, tb, sa, sb, heads, mask):
    """Mean over examples of (mean over heads and real rows of KL(t || s))."""
    per_example = []
    for i in range(ta.shape[0]):
        length = int(mask[i].sum())
        pt = np_relation(ta[i], tb[i], heads, length)
        ps = np_relation(sa[i], sb[i], heads, length)
        kl = (pt * (np.log(pt) - np.log(ps))).sum(-1)  # [heads, L]
        per_example.append(kl.mean())
    return np.array(per_example)


def make(batch, length, dim, seed, scale=1.0):
    rng = np.random.default_rng(seed)
    return rng.normal(scale=scale, size=(batch, length, dim)).astype("float32")


def make_mask(batch, length, seed):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, length + 1, size=batch)
    lengths[0] = length
    return (np.arange(length)[None] < lengths[:, None]).astype("int32")
