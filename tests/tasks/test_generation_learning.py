"""A tiny Seq2SeqLM learns to reverse short sequences (greedy and beam)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import pytest  # noqa: E402
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402

from minilm_tf.tasks.generation import decoding  # noqa: E402
from minilm_tf.tasks.generation.losses import SmoothedTokenCrossEntropy  # noqa: E402
from minilm_tf.tasks.generation.model import IGNORE_LABEL, Seq2SeqLM  # noqa: E402

PAD, START, END = 0, 1, 2
SYMBOLS = np.arange(3, 11)
LENGTH = 4


def reverse_task(n, rng):
    """Sources `[start] x1..x4 [end]`, targets `x4..x1 [end]` (padded to 7)."""
    src = np.zeros([n, 7], np.int32)
    tgt_in = np.zeros([n, 7], np.int32)
    labels = np.full([n, 7], IGNORE_LABEL, np.int32)
    for i in range(n):
        x = rng.choice(SYMBOLS, size=LENGTH)
        src[i, :LENGTH + 2] = [START, *x, END]
        tgt_in[i, :LENGTH + 1] = [START, *x[::-1]]
        labels[i, :LENGTH + 1] = [*x[::-1], END]
    return {"source_ids": src, "source_mask": (src > 0).astype(np.int32),
            "target_ids": tgt_in, "target_mask": (labels != IGNORE_LABEL).astype(np.int32)}, labels


@pytest.mark.slow  # about 25 s on 2 cores
def test_tiny_model_learns_to_reverse():
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=11, num_layers=2, num_heads=4, hidden_dim=32, intermediate_dim=64,
        max_sequence_length=16, dropout=0.0)
    model = Seq2SeqLM(backbone, hidden_act="gelu")
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=SmoothedTokenCrossEntropy(0.0))
    x, y = reverse_task(2000, np.random.default_rng(0))
    history = model.fit(x, y, batch_size=32, epochs=5, verbose=0)
    assert history.history["loss"][-1] < 0.1 * history.history["loss"][0]
    test_x, test_y = reverse_task(64, np.random.default_rng(1))  # unseen sequences mostly
    expected = test_y[:, :LENGTH + 1]
    for beam in (1, 3):
        config = decoding.DecodingConfig(max_length=7, beam_size=beam)
        out = decoding.decode(model, test_x["source_ids"], test_x["source_mask"], config,
                              start_id=START, end_id=END, pad_id=PAD)[0].numpy()
        exact = np.all(out[:, :LENGTH + 1] == expected, axis=1)
        assert exact.mean() >= 0.9, (beam, exact.mean())
