"""Makes and checks TF Model Garden BERT encoder checkpoints with the real library.

Runs in `.venv-model-garden` (tools/make_model_garden_env.sh: tf-models-official
with TensorFlow 2.20), never in the package's own environment, and imports
nothing from minilm_tf.

    # Small random encoders saved the way Model Garden saves them
    # (tf.train.Checkpoint(encoder=...)) with their EncoderConfig and a
    # vocabulary: bert_encoder/ (`official.nlp.modeling.networks.BertEncoder`)
    # and bert_encoder_v2/ (`BertEncoderV2`) with their outputs on fixed inputs
    # (outputs.npz), and the variants minilm_tf refuses: albert/, mobilebert/,
    # encoder_scaffold/ (an EncoderScaffold built from a BERT config).
    .venv-model-garden/bin/python tools/make_model_garden_fixture.py \
        --out tests/fixtures/model_garden

    # Restores a directory of the bert_encoder/ layout (e.g. one written by
    # minilm_tf.save_model_garden_encoder, with an outputs.npz beside it) into
    # freshly built BertEncoder and BertEncoderV2 and compares their outputs
    # with outputs.npz:
    .venv-model-garden/bin/python tools/make_model_garden_fixture.py --check DIR

tests/models/test_model_garden.py loads the fixtures with `minilm_tf.load_teacher`,
matches these outputs within 1e-5 and checks the refusals.
"""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402
from absl import app, flags, logging  # noqa: E402
from official.nlp.configs import encoders  # noqa: E402
from official.nlp.modeling import networks  # noqa: E402

CONFIG_FILE = "encoder_config.json"
VOCAB_FILE = "vocab.txt"
OUTPUTS_FILE = "outputs.npz"

# A lowercase WordPiece vocabulary: the special tokens, then words and pieces.
VOCAB = (["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
         + "the a of and to in is it that was for on with as his he at by be this from".split()
         + "model garden teacher student layer attention value query key small random".split()
         + ["##s", "##ed", "##ing", "##ly", "##er", "##est", ".", ",", "!", "?"])

FLAGS = flags.FLAGS
flags.DEFINE_string("out", None, "Directory to write the fixtures to (created; must be empty).")
flags.DEFINE_string("check", None, "A Model Garden encoder directory with an outputs.npz to "
                    "restore into BertEncoder and compare.")
flags.DEFINE_integer("seed", 0, "Seed of the random weights and inputs.")
flags.DEFINE_float("atol", 1e-5, "--check: largest allowed absolute difference.")


def fixed_inputs(vocab_size: int, seed: int) -> dict:
    """Three sequences of 12 tokens: one full, two right-padded; two segments."""
    rng = np.random.default_rng(seed)
    batch, length = 3, 12
    lengths = np.array([12, 9, 5])
    mask = (np.arange(length)[None, :] < lengths[:, None]).astype("int32")
    ids = rng.integers(5, vocab_size, size=(batch, length)).astype("int32")
    ids[:, 0] = 2  # [CLS]
    ids[np.arange(batch), lengths - 1] = 3  # [SEP]
    ids = ids * mask
    types = (np.arange(length)[None, :] >= (lengths[:, None] // 2)).astype("int32") * mask
    return {"input_word_ids": ids, "input_mask": mask, "input_type_ids": types}


def build(config: dict, encoder_cls=None) -> tf.keras.layers.Layer:
    """The Model Garden encoder that `config` (EncoderConfig.as_dict()) describes."""
    encoder = encoders.build_encoder(encoders.EncoderConfig.from_args(**config),
                                     encoder_cls=encoder_cls)
    logging.info("built %s", type(encoder).__name__)
    return encoder


def outputs(encoder, inputs: dict) -> dict:
    result = encoder({k: tf.constant(v) for k, v in inputs.items()}, training=False)
    out = {"sequence_output": result["sequence_output"].numpy(),
           "pooled_output": result["pooled_output"].numpy()}
    for i, layer in enumerate(result["encoder_outputs"]):
        out[f"encoder_output_{i}"] = layer.numpy()
    return out


def save(encoder, config: dict, directory: str) -> None:
    """Checkpoint, encoder_config.json and vocab.txt, as Model Garden users keep them."""
    os.makedirs(directory)
    tf.train.Checkpoint(encoder=encoder).save(os.path.join(directory, "ckpt"))
    with open(os.path.join(directory, CONFIG_FILE), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)
    with open(os.path.join(directory, VOCAB_FILE), "w", encoding="utf-8") as f:
        f.write("\n".join(VOCAB) + "\n")


def bert_config(kind: str, **sizes) -> dict:
    return encoders.EncoderConfig(type=kind, **{kind: encoders.BertEncoderConfig(
        vocab_size=len(VOCAB), type_vocab_size=2, hidden_activation="gelu", **sizes)}).as_dict()


def make_bert(directory: str, kind: str, seed: int) -> None:
    """A BERT encoder with random weights and its outputs on fixed inputs."""
    config = bert_config(kind, hidden_size=32, num_layers=2, num_attention_heads=4,
                         intermediate_size=64, max_position_embeddings=32)
    encoder = build(config)
    inputs = fixed_inputs(len(VOCAB), seed)
    outputs(encoder, inputs)  # creates the variables
    # BERT's initialiser (stddev 0.02, zero biases, unit LayerNorm scales)
    # would let a swapped bias or scale go unnoticed: draw every weight.
    rng = np.random.default_rng(seed + 1)
    for variable in encoder.trainable_variables:
        variable.assign(rng.normal(0.0, 0.3, variable.shape).astype("float32"))
    expected = outputs(encoder, inputs)
    save(encoder, config, directory)
    np.savez(os.path.join(directory, OUTPUTS_FILE), **inputs, **expected,
             tensorflow_version=tf.__version__, encoder_class=type(encoder).__name__)


def make_refused(directory: str, seed: int) -> None:
    """Tiny encoders of the kinds minilm_tf refuses, each with its own config."""
    tf_keras.utils.set_random_seed(seed)  # their initialisers draw the weights
    inputs = fixed_inputs(len(VOCAB), seed)
    sizes = dict(hidden_size=8, num_layers=2, num_attention_heads=2, intermediate_size=16)
    albert = encoders.EncoderConfig(type="albert", albert=encoders.AlbertEncoderConfig(
        vocab_size=len(VOCAB), embedding_width=4, max_position_embeddings=16,
        **sizes)).as_dict()
    mobilebert = encoders.EncoderConfig(
        type="mobilebert", mobilebert=encoders.MobileBertEncoderConfig(
            word_vocab_size=len(VOCAB), word_embed_size=8, max_sequence_length=16,
            num_blocks=2, hidden_size=8, num_attention_heads=2, intermediate_size=16,
            intra_bottleneck_size=4)).as_dict()
    # Model Garden builds an EncoderScaffold from a BERT config (encoder_cls=).
    scaffold = bert_config("bert", max_position_embeddings=16, **sizes)
    for name, config, encoder_cls in (("albert", albert, None), ("mobilebert", mobilebert, None),
                                      ("encoder_scaffold", scaffold, networks.EncoderScaffold)):
        encoder = build(config, encoder_cls)
        encoder({k: tf.constant(v) for k, v in inputs.items()})
        save(encoder, config, os.path.join(directory, name))


def make(directory: str, seed: int) -> None:
    if os.path.exists(directory) and os.listdir(directory):
        raise SystemExit(f"{directory} is not empty: remove it or pick another --out.")
    make_bert(os.path.join(directory, "bert_encoder"), "bert", seed)
    make_bert(os.path.join(directory, "bert_encoder_v2"), "bert_v2", seed)
    make_refused(directory, seed)
    files = [os.path.join(root, n) for root, _, names in os.walk(directory) for n in names]
    logging.info("wrote %s (%d files, %.0f kB, TensorFlow %s)", directory, len(files),
                 sum(map(os.path.getsize, files)) / 1024, tf.__version__)


def check(directory: str, atol: float) -> None:
    with open(os.path.join(directory, CONFIG_FILE), encoding="utf-8") as f:
        config = json.load(f)
    data = np.load(os.path.join(directory, OUTPUTS_FILE))
    inputs = {k: data[k] for k in ("input_word_ids", "input_mask", "input_type_ids")}
    path = tf.train.latest_checkpoint(directory)
    if path is None:
        raise SystemExit(f"{directory} has no checkpoint state file (tf.train.latest_checkpoint).")
    for kind in ("bert", "bert_v2"):
        encoder = build({"type": kind, kind: config[config["type"]]})
        outputs(encoder, inputs)  # creates the variables to restore into
        tf.train.Checkpoint(encoder=encoder).read(path).assert_existing_objects_matched()
        got = outputs(encoder, inputs)
        worst = max(float(np.max(np.abs(got[name] - data[name])))
                    for name in ("sequence_output", "pooled_output"))
        if worst > atol:
            raise SystemExit(f"{type(encoder).__name__} restored from {path} differs by "
                             f"{worst:.3g} > {atol}")
        print(f"OK: {type(encoder).__name__} restored {path}; sequence and pooled outputs "
              f"within {worst:.3g} of {OUTPUTS_FILE}")


def main(argv):
    del argv
    if bool(FLAGS.out) == bool(FLAGS.check):
        raise app.UsageError("Pass exactly one of --out or --check.")
    if FLAGS.out:
        make(FLAGS.out, FLAGS.seed)
    else:
        check(FLAGS.check, FLAGS.atol)


if __name__ == "__main__":
    app.run(main)
