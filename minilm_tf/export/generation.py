"""SavedModel export of a `Seq2SeqLM` with a `generate` signature.

`generate(texts: string [N]) -> {"predictions": string [N], "token_ids":
int32 [N, max_length], "lengths": int32 [N]}` runs everything in the graph:
invalid UTF-8 replaced by U+FFFD (`tokenization.sanitize_utf8`), the model's
own keras-hub tokenizer (tensorflow-text ops), truncation to the source
budget and packing exactly as `Seq2SeqPacker.pack_sources`, greedy or beam
decoding (`minilm_tf.tasks.generation.decoding`, the settings fixed at
export), and detokenisation (cut at the end token). Loading it needs
`import tensorflow_text` (its ops), not minilm_tf or Keras.

`verify_in_subprocess` loads the export in a fresh Python process and
returns what `generate` gave there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Sequence

import keras
import tensorflow as tf

from minilm_tf.export import tokenization
from minilm_tf.tasks.generation.decoding import DecodingConfig, decode

SIGNATURE = "generate"


def pack_in_graph(token_ids: tf.RaggedTensor, max_source_length: int, start_id: int,
                  end_id: int, pad_id: int):
    """Ragged source ids -> (source_ids, source_mask) as `Seq2SeqPacker`
    packs them: `[start] ids[:max_source_length - 2] [end]`, right-padded to
    the longest row."""
    token_ids = tf.cast(token_ids[:, :max_source_length - 2], tf.int32)
    rows = token_ids.nrows()
    start = tf.fill([rows, 1], tf.constant(start_id, tf.int32))
    end = tf.fill([rows, 1], tf.constant(end_id, tf.int32))
    packed = tf.concat([start, token_ids, end], axis=1)
    ids = packed.to_tensor(default_value=pad_id)
    mask = tf.cast(tf.sequence_mask(packed.row_lengths(), tf.shape(ids)[1]), tf.int32)
    return ids, mask


def strip_generated(ids, start_id: int, end_id: int, pad_id: int) -> tf.RaggedTensor:
    """Generated ids -> ragged ids before the first end token, without padding."""
    before_end = tf.math.cumsum(tf.cast(ids == end_id, tf.int32), axis=1) == 0
    keep = before_end & (ids != pad_id) & (ids != start_id)
    return tf.ragged.boolean_mask(ids, keep)


def build_generate_fn(model, tokenizer, max_source_length: int, config: DecodingConfig):
    """The `generate` function (strings in, strings out)."""
    start_id, end_id = int(tokenizer.start_token_id), int(tokenizer.end_token_id)
    pad_id = int(tokenizer.pad_token_id)

    def generate(texts):
        texts = tokenization.sanitize_utf8(tokenization.as_batch(texts))
        ids, mask = pack_in_graph(tokenizer(texts), max_source_length, start_id, end_id,
                                  pad_id)
        out, lengths, _ = decode(model, ids, mask, config, start_id=start_id, end_id=end_id,
                                 pad_id=pad_id)
        kept = strip_generated(out, start_id, end_id, pad_id)
        predictions = tokenizer.detokenize(tf.cast(kept, tf.int32))
        return {"predictions": predictions, "token_ids": out, "lengths": lengths}

    return generate


def export_generation(model, tokenizer, path: str, max_source_length: int,
                      config: DecodingConfig) -> str:
    """Writes a SavedModel with the `generate` signature to `path`."""
    archive = keras.export.ExportArchive()
    tokenizer(tf.constant(["build"]))  # a loaded tokenizer is built by its first call
    archive.track(tokenizer)  # its vocabulary tables
    archive.add_endpoint(SIGNATURE, build_generate_fn(model, tokenizer, max_source_length,
                                                      config),
                         input_signature=[tf.TensorSpec([None], tf.string, name="texts")])
    archive.write_out(path, verbose=False)
    with open(os.path.join(path, "generation.json"), "w", encoding="utf-8") as f:
        json.dump({"signature": SIGNATURE, "max_source_length": max_source_length,
                   "decoding": config.__dict__}, f, indent=2)
    return path


_RUNNER = r"""
import json, sys
import tensorflow as tf
import tensorflow_text  # noqa: F401  (the tokenizer's ops)
loaded = tf.saved_model.load(sys.argv[1])
texts = json.loads(sys.stdin.read())
out = loaded.signatures["generate"](texts=tf.constant(texts, tf.string))
print(json.dumps({"predictions": [t.decode("utf-8") for t in out["predictions"].numpy()],
                  "token_ids": out["token_ids"].numpy().tolist(),
                  "lengths": out["lengths"].numpy().tolist()}))
"""


def verify_in_subprocess(path: str, texts: Sequence[str], timeout: float = 600.0) -> dict:
    """Runs `generate` on `texts` in a fresh Python process (no minilm_tf,
    no Keras imported); returns its predictions, token ids and lengths."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run([sys.executable, "-c", _RUNNER, path], input=json.dumps(list(texts)),
                          capture_output=True, text=True, timeout=timeout, env=env)
    if done.returncode:
        raise RuntimeError(f"Loading {path} in a fresh process failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
