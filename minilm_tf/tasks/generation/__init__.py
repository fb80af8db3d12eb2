"""Sequence-to-sequence generation (UniLM s2s-ft style) on any loaded encoder.

- `mask`: UniLM's seq2seq self-attention mask and position ids;
- `model`: `Seq2SeqLM`, the backbone's own layers under that mask plus a
  tied LM head, with a key/value cache for decoding;
- `losses`: label-smoothed token cross-entropy;
- `decoding`: batched greedy and beam search in-graph (min/max length,
  length penalty, no-repeat n-gram) and a timed text generator;
- `data`: JSON lines, TFDS (xsum, cnn_dailymail, squad_qg), SQuAD JSON and
  the built-in `bbc_headlines`, and the packer;
- `metrics`: ROUGE (rouge-score) and BLEU (sacrebleu).

The run loop is `minilm_tf.training.seq2seq.run_seq2seq`; the SavedModel
export `minilm_tf.export.generation`.
"""

from minilm_tf.tasks.generation.decoding import DecodingConfig, beam_search, greedy_decode
from minilm_tf.tasks.generation.losses import SmoothedTokenCrossEntropy
from minilm_tf.tasks.generation.mask import seq2seq_attention_mask, seq2seq_position_ids
from minilm_tf.tasks.generation.model import Seq2SeqLM

__all__ = ["DecodingConfig", "Seq2SeqLM", "SmoothedTokenCrossEntropy", "beam_search",
           "greedy_decode", "seq2seq_attention_mask", "seq2seq_position_ids"]
