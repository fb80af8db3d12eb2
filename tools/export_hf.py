r"""Export an encoder (a teacher or a distilled student; BERT, RoBERTa,
XLM-RoBERTa, DistilBERT or ELECTRA) as a Hugging Face / sentence-transformers
model directory.

Examples:

  # The pretrained teacher:
  python tools/export_hf.py --model all-minilm-l6-v2 --output_dir exports/hf/all-minilm-l6-v2

  # A student saved by minilm_tf.save_encoder (e.g. a distillation run's
  # student/ directory), with the Keras reference for tools/check_hf_parity.py:
  python tools/export_hf.py --model runs/demo/student --output_dir exports/hf/student \
      --reference exports/hf/student_reference.npz

  # A fine-tuned classifier or regressor (a tools/finetune.py workdir) as
  # *ForSequenceClassification, with the Keras logits for the parity check:
  python tools/export_hf.py --finetuned runs/ft_rt --output_dir exports/hf/rt_classifier \
      --reference exports/hf/rt_classifier_reference.npz

Writes config.json (BertModel, RobertaModel, XLMRobertaModel,
DistilBertModel or ElectraModel), model.safetensors, the tokenizer files
(vocab.txt; vocab.json + merges.txt; sentencepiece.bpe.model),
tokenizer_config.json, special_tokens_map.json, a README.md model card and,
for sentence encoders, the sentence-transformers files (modules.json,
1_Pooling/, sentence_bert_config.json, 2_Normalize/,
config_sentence_transformers.json); see minilm_tf/export/hf.py and
docs/export.md; with --finetuned, config.json is a Bert-, Roberta-,
XLMRoberta-, DistilBert- or ElectraForSequenceClassification with the run's labels as
id2label (see minilm_tf/export/hf_classifier.py). The directory is written under a temporary name and renamed
into place when complete; an existing non-empty one is refused unless
--overwrite. Prints a JSON summary. Exit status: 0 written, 1 bad input
(one `error: ...` line: unknown model, an architecture without a Hugging
Face mapping, a tokenizer of another architecture, vocabulary that does not
match the embeddings, existing directory, a fine-tuned model without a
Hugging Face classifier head).
"""

import json
import sys

from absl import flags

import _cli  # tools/_cli.py: one error line for bad flags

FLAGS = flags.FLAGS

flags.DEFINE_string("model", None, "Encoder spec: all-minilm-l6-v2, a Hugging Face dir, a "
                    "keras-hub preset dir (e.g. a student saved by minilm_tf.save_encoder).")
flags.DEFINE_string("finetuned", None, "A tools/finetune.py run (its workdir) of a "
                    "classifier or regressor, exported as *ForSequenceClassification "
                    "(instead of --model).")
flags.DEFINE_string("output_dir", None, "Directory to write the Hugging Face model to.")
flags.DEFINE_bool("overwrite", False, "Replace an existing non-empty --output_dir (only "
                  "once the new export is complete).")
flags.DEFINE_integer("max_seq_length", None, "sentence-transformers max_seq_length (default: "
                     "the checkpoint's sentence_bert_config.json, else 128).")
flags.DEFINE_string("reference", None, "Also write the Keras reference (.npz: token ids, "
                    "hidden states, sentence embeddings of built-in edge-case texts) that "
                    "tools/check_hf_parity.py compares the export with.")

USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError,
               PermissionError, NotImplementedError)


def run(argv_flags=FLAGS) -> dict:
    from minilm_tf.export import hf
    from minilm_tf.models.encoders import load_teacher

    # An existing directory is refused before the model is loaded.
    hf.check_target(argv_flags.output_dir, argv_flags.overwrite)
    if argv_flags.finetuned:
        from minilm_tf.export import hf_classifier

        summary = hf_classifier.export_hf_classifier(argv_flags.finetuned, argv_flags.output_dir,
                                                     overwrite=argv_flags.overwrite)
        if argv_flags.reference:
            hf_classifier.classifier_parity_reference(argv_flags.finetuned, argv_flags.reference)
            summary["reference"] = argv_flags.reference
        return summary
    encoder = load_teacher(argv_flags.model)
    summary = hf.export_hf(encoder, argv_flags.output_dir, overwrite=argv_flags.overwrite,
                           max_seq_length=argv_flags.max_seq_length)
    if argv_flags.reference:
        hf.keras_parity_reference(encoder, argv_flags.reference,
                                  max_seq_length=argv_flags.max_seq_length)
        summary["reference"] = argv_flags.reference
    return summary


def main(argv):
    if len(argv) > 1:
        print(f"error: unexpected arguments {argv[1:]}", file=sys.stderr)
        return 1
    if bool(FLAGS.model) == bool(FLAGS.finetuned):
        print("error: pass one of --model (an encoder) or --finetuned (a fine-tuning run).",
              file=sys.stderr)
        return 1
    missing = [f"--{n}" for n in ("output_dir",) if not getattr(FLAGS, n)]
    if missing:
        print(f"error: missing required flags: {', '.join(missing)}", file=sys.stderr)
        return 1
    try:
        summary = run()
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    _cli.run(main)
