"""Shared test fixtures: tiny random encoders and batches."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras_hub  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from minilm_tf.models.encoders import LoadedEncoder  # noqa: E402

VOCAB = 120


def tiny_bert(num_layers=2, hidden_dim=32, num_heads=4, seed=0, name=None):
    """A small randomly initialised BERT backbone."""
    import keras

    keras.utils.set_random_seed(seed)
    return keras_hub.models.BertBackbone(
        vocabulary_size=VOCAB,
        num_layers=num_layers,
        num_heads=num_heads,
        hidden_dim=hidden_dim,
        intermediate_dim=2 * hidden_dim,
        max_sequence_length=64,
        name=name,
    )


def tiny_encoder(**kwargs) -> LoadedEncoder:
    return LoadedEncoder(tiny_bert(**kwargs), tokenizer=None, spec="tiny", hidden_act="gelu_approximate")


def random_batch(batch=4, length=12, seed=0, min_len=3):
    """Token ids with right padding of random lengths (first example full)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(min_len, length + 1, size=batch)
    lengths[0] = length
    mask = (np.arange(length)[None, :] < lengths[:, None]).astype("int32")
    ids = rng.integers(5, VOCAB, size=(batch, length)).astype("int32") * mask
    segments = np.zeros_like(ids)
    return {"token_ids": ids, "segment_ids": segments, "padding_mask": mask}


@pytest.fixture(scope="session")
def all_minilm():
    from minilm_tf import load_teacher

    return load_teacher("all-minilm-l6-v2")


def _read_until(proc, needle):
    """Reads a subprocess's output until a line contains `needle`; returns
    all lines read (an AssertionError with the tail if it never appears)."""
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if needle in line:
            return "".join(seen)
    raise AssertionError(f"{needle!r} never appeared:\n" + "".join(seen)[-3000:])


@pytest.fixture
def read_until():
    """`read_until(proc, needle)`: see `_read_until`."""
    return _read_until

