"""MiniLM beyond BERT: RoBERTa, XLM-RoBERTa, DistilBERT, ELECTRA (small random models)."""

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf

from conftest import random_batch
from minilm_tf import MiniLMDistiller, build_student, save_encoder
from minilm_tf.layers import SelfAttentionRelations, truncated_encoder
from minilm_tf.models.encoders import LoadedEncoder
from relation_reference import np_kl_loss

M = keras_hub.models
COMMON = dict(num_layers=3, num_heads=4, hidden_dim=32, intermediate_dim=64, max_sequence_length=32)
ARCHITECTURES = {
    "bert": lambda: M.BertBackbone(vocabulary_size=120, **COMMON),
    "roberta": lambda: M.RobertaBackbone(vocabulary_size=120, **COMMON),
    "xlm_roberta": lambda: M.XLMRobertaBackbone(vocabulary_size=120, **COMMON),
    "distil_bert": lambda: M.DistilBertBackbone(vocabulary_size=120, **COMMON),
    "electra": lambda: M.ElectraBackbone(vocab_size=120, embedding_dim=16, **COMMON),
}


def _teacher(name, seed=0):
    keras.utils.set_random_seed(seed)
    return LoadedEncoder(ARCHITECTURES[name](), None, name, "gelu_approximate")


def _input_seen_by(block, backbone, inputs):
    """The hidden states `block` receives when `backbone` runs on `inputs`."""
    seen, original = {}, block.call

    def recording(hidden, *args, **kwargs):
        seen["hidden"] = hidden
        return original(hidden, *args, **kwargs)

    object.__setattr__(block, "call", recording)
    try:
        backbone(inputs)
    finally:
        object.__delattr__(block, "call")
    return seen["hidden"]


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_relations_and_loss_match_references(name):
    teacher = _teacher(name)
    batch = random_batch(batch=3, length=10)
    inputs = {k: batch[k] for k in teacher.backbone.input}
    layer = 1
    # keras-hub's own attention probabilities for that layer, from the hidden
    # states the whole backbone really feeds it.
    hidden = _input_seen_by(teacher.backbone.transformer_layers[layer], teacher.backbone, inputs)
    # The truncated view computes the same input without the layers above.
    np.testing.assert_allclose(truncated_encoder(teacher.backbone, layer)(inputs).numpy(),
                               np.asarray(hidden), atol=1e-6)
    _, want = teacher.backbone.transformer_layers[layer](
        hidden, padding_mask=batch["padding_mask"], return_attention_scores=True
    )
    got = SelfAttentionRelations(teacher.backbone, layer, return_attention_probs=True)(batch)
    mask = batch["padding_mask"].astype(bool)
    real = np.broadcast_to(mask[:, None, :, None] & mask[:, None, None, :], want.shape)
    np.testing.assert_allclose(got["attention_probs"].numpy()[real], want.numpy()[real], atol=1e-6)

    student = build_student(teacher, num_layers=2, hidden_dim=16, num_heads=4, seed=1)
    distiller = MiniLMDistiller(teacher, student, teacher_layer=layer)
    components = distiller(batch)
    t = {k: v.numpy().reshape(3, 10, -1) for k, v in got.items() if k in ("queries", "keys", "values")}
    s_feats = distiller.student_relations(batch)
    s = {k: s_feats[k].numpy().reshape(3, 10, -1) for k in t}
    np.testing.assert_allclose(
        components["attention_loss"].numpy(),
        np_kl_loss(t["queries"], t["keys"], s["queries"], s["keys"], 4, batch["padding_mask"]),
        rtol=1e-4, atol=1e-7,
    )
    np.testing.assert_allclose(
        components["value_relation_loss"].numpy(),
        np_kl_loss(t["values"], t["values"], s["values"], s["values"], 4, batch["padding_mask"]),
        rtol=1e-4, atol=1e-7,
    )


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_training_lowers_loss_and_student_saves(name, tmp_path):
    teacher = _teacher(name, seed=3)
    student = build_student(teacher, num_layers=2, hidden_dim=16, num_heads=4, seed=4)
    assert type(student.backbone) is type(teacher.backbone)
    distiller = MiniLMDistiller(teacher, student, objective="minilmv2", num_relation_heads=8)
    distiller.compile(optimizer=keras.optimizers.Adam(1e-2))
    data = tf.data.Dataset.from_tensors(random_batch(batch=8, length=12, seed=5)).repeat(12)
    before = distiller.evaluate(data.take(1), return_dict=True, verbose=0)["loss"]
    distiller.fit(data, epochs=1, verbose=0)
    after = distiller.evaluate(data.take(1), return_dict=True, verbose=0)["loss"]
    assert after < 0.8 * before
    save_encoder(student, str(tmp_path / "student"))
    loaded = keras_hub.models.Backbone.from_preset(str(tmp_path / "student"))
    assert type(loaded) is type(student.backbone)
    batch = {k: v for k, v in random_batch(batch=2, length=6).items() if k in loaded.input}
    out, want = loaded(batch), student.backbone(batch)
    key = "sequence_output" if isinstance(want, dict) else None
    np.testing.assert_allclose(
        (out[key] if key else out).numpy(), (want[key] if key else want).numpy(), atol=1e-5
    )


@pytest.mark.parametrize(
    "build,reason",
    [
        (lambda: M.DebertaV3Backbone(vocabulary_size=50, **COMMON), "disentangled attention"),
        (lambda: M.AlbertBackbone(vocabulary_size=50, num_layers=2, num_heads=4, hidden_dim=32,
                                  embedding_dim=16, intermediate_dim=64), "shares one set"),
        (lambda: M.FNetBackbone(vocabulary_size=50, num_layers=2, hidden_dim=32,
                                intermediate_dim=64), "no self-attention"),
    ],
)
def test_unsupported_architectures_say_why(build, reason):
    with pytest.raises(ValueError, match=reason):
        SelfAttentionRelations(build(), -1)
