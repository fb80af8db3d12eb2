"""FusedAdamW: the same updates as AdamW's definition, Keras' AdamW, and under XLA."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from minilm_tf.optimizers.adamw import FusedAdamW, WarmupLinearDecay, make_adamw

SHAPES = [(50, 8), (8, 6), (6,)]


def _initial():
    rng = np.random.default_rng(0)
    return [rng.standard_normal(s).astype("float32") for s in SHAPES]


def _gradients(step):
    rng = np.random.default_rng(100 + step)
    return [rng.standard_normal(s).astype("float32") for s in SHAPES]


def _run(optimizer, steps=4, sparse_rows=None, jit=False):
    """Applies `steps` updates; with `sparse_rows` the first gradient is
    IndexedSlices of those rows (repeats allowed) of the dense one."""
    variables = [keras.Variable(x, name=n) for x, n in zip(_initial(), ["kernel", "w", "bias"])]
    optimizer.build(variables)

    @tf.function(jit_compile=jit)
    def apply(gradients):
        if sparse_rows is not None:
            rows = tf.constant(sparse_rows)
            gradients = [tf.IndexedSlices(tf.gather(gradients[0], rows), rows,
                                          tf.constant(SHAPES[0])), *gradients[1:]]
        optimizer.apply(gradients, variables)

    for step in range(steps):
        apply([tf.constant(g) for g in _gradients(step)])
    return [v.numpy() for v in variables]


def _numpy_adamw(lr_of_step, weight_decay, decayed, steps=4, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-7, dense_gradient=None, amsgrad=False):
    """AdamW (Loshchilov & Hutter, decoupled decay scaled by the learning rate);
    `amsgrad`: the denominator uses the running maximum of v (Reddi et al.)."""
    params = [x.astype("float64") for x in _initial()]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    v_max = [np.zeros_like(p) for p in params]
    for step in range(steps):
        lr, t = lr_of_step(step), step + 1
        for i, (p, g) in enumerate(zip(params, _gradients(step))):
            g = g.astype("float64") if dense_gradient is None else dense_gradient(i, g)
            if decayed[i]:
                p -= lr * weight_decay * p
            m[i] = beta_1 * m[i] + (1 - beta_1) * g
            v[i] = beta_2 * v[i] + (1 - beta_2) * g * g
            v_max[i] = np.maximum(v_max[i], v[i])
            second = v_max[i] if amsgrad else v[i]
            p -= lr * np.sqrt(1 - beta_2**t) / (1 - beta_1**t) * m[i] / (np.sqrt(second) + epsilon)
    return params


def test_matches_the_definition_with_schedule_and_decay_exclusions():
    schedule = WarmupLinearDecay(0.05, warmup_steps=2, total_steps=6)
    optimizer = FusedAdamW(learning_rate=schedule, weight_decay=0.1)
    optimizer.exclude_from_weight_decay(var_names=["bias"])
    got = _run(optimizer)
    want = _numpy_adamw(lambda s: float(schedule(s)), 0.1, [True, True, False])
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("amsgrad", [False, True])
def test_constant_rate_and_amsgrad_match_the_definition(amsgrad):
    # amsgrad falls back to Keras' own update: both paths against numpy.
    got = _run(FusedAdamW(learning_rate=0.01, weight_decay=0.05, amsgrad=amsgrad), steps=6)
    want = _numpy_adamw(lambda s: 0.01, 0.05, [True, True, True], steps=6, amsgrad=amsgrad)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)
    assert not np.allclose(got[0], _initial()[0])


def test_under_xla_matches_without():
    eager = _run(FusedAdamW(learning_rate=0.01, weight_decay=0.05))
    compiled = _run(FusedAdamW(learning_rate=0.01, weight_decay=0.05), jit=True)
    for a, b in zip(compiled, eager):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_sparse_gradient_with_repeated_rows_is_the_summed_gradient():
    # An embedding gradient lists a row once per occurrence of the token.
    # Adam's moments use the row's total gradient: v gets (g1 + g2)^2. (Keras'
    # TensorFlow AdamW squares each occurrence, v gets g1^2 + g2^2.)
    rows = [3, 7, 7, 12]

    def dense(i, g):
        if i:
            return g.astype("float64")
        total = np.zeros_like(g, dtype="float64")
        np.add.at(total, rows, g[rows].astype("float64"))
        return total

    got = _run(FusedAdamW(learning_rate=0.01, weight_decay=0.0), sparse_rows=rows)
    want = _numpy_adamw(lambda s: 0.01, 0.0, [False] * 3, dense_gradient=dense)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)
    untouched = np.setdiff1d(np.arange(SHAPES[0][0]), rows)
    np.testing.assert_array_equal(got[0][untouched], _initial()[0][untouched])


def test_loss_scale_optimizer_wraps_it():
    fused = _run(keras.optimizers.LossScaleOptimizer(FusedAdamW(learning_rate=0.01)))
    plain = _run(keras.optimizers.LossScaleOptimizer(keras.optimizers.AdamW(learning_rate=0.01)))
    for a, b in zip(fused, plain):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_make_adamw_serializes_and_trains_with_fit():
    optimizer = make_adamw(0.1, total_steps=100, warmup_steps=2, clipnorm=1.0)
    assert isinstance(optimizer, FusedAdamW)
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert type(restored) is FusedAdamW
    assert restored.get_config() == optimizer.get_config()

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer, loss="mse", jit_compile=False)
    x = np.random.default_rng(0).standard_normal((64, 4)).astype("float32")
    y = x @ np.array([[1.0], [-2.0], [0.5], [3.0]], "float32")
    history = model.fit(x, y, epochs=10, batch_size=16, verbose=0)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]


def test_a_second_model_after_the_first_is_deleted():
    # The XLA update is shared by all FusedAdamW instances; it must not hold
    # on to the variables of the first model it updated.
    import gc

    def train():
        variables = [keras.Variable(np.full((4, 3), x, "float32")) for x in (1.0, 2.0)]
        optimizer = FusedAdamW(learning_rate=0.1, weight_decay=0.0)

        @tf.function
        def step():
            optimizer.apply([tf.fill([4, 3], 1.0), tf.fill([4, 3], -3.0)], variables)

        for _ in range(2):
            step()
        return [v.numpy() for v in variables]

    first = train()
    gc.collect()
    second = train()
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    # Adam's first steps move each weight by ~lr against its gradient's sign.
    np.testing.assert_allclose(first[0], 0.8, atol=1e-5)
    np.testing.assert_allclose(first[1], 2.2, atol=1e-5)
