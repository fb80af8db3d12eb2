"""Every config key with its default; recipes start from here and change a few.

Keys (all overridable on the command line, e.g. --config.train.steps=100):
  teacher: load_teacher spec (built-in name, HF dir, keras-hub preset dir/name).
  teacher_layer: teacher layer to distill from (-1 = last; negative counts down).
  objective: "minilm" (v1: attention + value relation), "minilmv2" (Q-Q/K-K/V-V),
    "hidden_mse" (last hidden states), "embedding_mse" (the teacher's pooled,
    normalised sentence embedding), "none" (no distillation: the initialised
    student), or a weighted sum such as "minilm+300*embedding_mse".
  num_relation_heads: MiniLMv2 relation heads (None = 48); ignored by v1.
  student: num_layers, hidden_dim, num_heads, intermediate_dim (None = the
    teacher's ratio), init ("random" | "teacher_layers": evenly spaced teacher layers |
    "teacher_bottom": the first ones; both need the teacher's widths), dropout,
    freeze_embeddings (True: keep the token/position/segment embeddings and
    their LayerNorm as copied from the teacher; needs a teacher_* init).
  data: sources (comma-separated files/dirs/globs, tfds:NAME, and the built-in
    offline corpora builtin:bbc_news, builtin:speeches,
    builtin:guardian_headlines, builtin:hamlet),
    mode ("lines" | "documents"), text_field (JSONL/TFDS key), seq_length,
    sentence_pairs, heldout_fraction, shuffle_buffer, tokenization ("keras_hub"|"hf").
  train: batch_size (global), steps, learning_rate, warmup_steps, weight_decay,
    clipnorm (0 = off: no clipping), seed, log_every, checkpoint_every, precision
    ("float32" | "mixed_bfloat16" | "mixed_float16"), jit_compile ("auto" |
    "true" | "false"; auto = XLA, except on CPUs where TF uses oneDNN),
    fast_paths ("true" | "false" | "auto": trace the steps with
    minilm_tf.layers.fast_paths; auto = only when the step is not XLA-compiled),
    strategy ("default" | "mirrored" | "multi_worker" | "tpu"), tpu_address.
  eval: heldout_batches; reference_teacher (a teacher spec the final student is
    also evaluated against, e.g. the original teacher of an assistant stage)
    and reference_teacher_layer.
  assistant: mode ("off" | "on" | "auto": the paper's rule) and steps_fraction
    (share of train.steps spent on stage 1, teacher -> assistant).
"""

import ml_collections
from ml_collections import config_dict


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.teacher = "all-minilm-l6-v2"
    config.teacher_layer = -1
    config.objective = "minilm"
    config.num_relation_heads = config_dict.placeholder(int)

    config.student = ml_collections.ConfigDict()
    config.student.num_layers = 3
    config.student.hidden_dim = 384
    config.student.num_heads = 12
    config.student.intermediate_dim = config_dict.placeholder(int)
    config.student.init = "random"
    config.student.dropout = 0.1
    config.student.freeze_embeddings = False

    config.data = ml_collections.ConfigDict()
    config.data.sources = "builtin:bbc_news"
    config.data.mode = "documents"
    config.data.text_field = "text"
    config.data.seq_length = 128
    config.data.sentence_pairs = False
    config.data.heldout_fraction = 0.05
    config.data.shuffle_buffer = 10000
    config.data.tokenization = "keras_hub"

    config.train = ml_collections.ConfigDict()
    config.train.batch_size = 32
    config.train.steps = 1000
    config.train.learning_rate = 3e-4
    config.train.warmup_steps = 100
    config.train.weight_decay = 0.01
    config.train.clipnorm = 1.0
    config.train.seed = 0
    config.train.log_every = 10
    config.train.checkpoint_every = 50
    config.train.precision = "float32"
    config.train.jit_compile = "auto"  # see minilm_tf.training.distribute.resolve_jit_compile
    config.train.fast_paths = "true"  # see MiniLMDistiller(fast_paths=...)
    config.train.strategy = "default"
    config.train.tpu_address = ""

    config.eval = ml_collections.ConfigDict()
    config.eval.heldout_batches = 8
    config.eval.reference_teacher = ""
    config.eval.reference_teacher_layer = -1

    config.assistant = ml_collections.ConfigDict()
    config.assistant.mode = "off"
    config.assistant.steps_fraction = 0.5
    return config
