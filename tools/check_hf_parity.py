r"""Checks a Hugging Face export (tools/export_hf.py) in the real libraries:
transformers and sentence-transformers must compute what the Keras encoder
computed.

Run it with the separate PyTorch environment (tools/make_torch_env.sh); it
never imports TensorFlow or minilm_tf:

  .venv/bin/python tools/export_hf.py --model all-minilm-l6-v2 \
      --output_dir exports/hf/all-minilm-l6-v2 --reference exports/hf/all-minilm-l6-v2.npz
  .venv-torch/bin/python tools/check_hf_parity.py --model_dir exports/hf/all-minilm-l6-v2 \
      --reference exports/hf/all-minilm-l6-v2.npz

The reference (`minilm_tf.export.hf.keras_parity_reference`) holds texts,
the keras-hub token ids, last hidden states, pooled output and sentence
embeddings. Checked:

* `transformers.AutoTokenizer` ids (truncated to the export's
  `max_seq_length`) equal the keras-hub ids, text by text;
* `transformers.AutoModel` last hidden states on the real tokens and the
  pooler output: max abs difference <= --tolerance (1e-5);
* `sentence_transformers.SentenceTransformer(...).encode` (when the export
  has modules.json): max abs difference from the Keras sentence embedding
  <= --embedding_tolerance (1e-5), and its max_seq_length equals the one the
  reference was made with.

For a fine-tuned classifier (`tools/export_hf.py --finetuned RUN --reference
R.npz`: the reference holds the Keras logits) it checks the tokenizer's ids
the same way and `AutoModelForSequenceClassification` logits within
--tolerance.

Prints a JSON report and writes what it measured into the export's model
card (`README.md`: its "## Export parity" section, replaced on a rerun;
`--no-update_card` leaves the card alone). Exit status: 0 all checks pass,
1 a check failed, 2 bad input (missing directory or reference file).
"""

import argparse
import inspect
import json
import os
import sys


def _fail_usage(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _max_abs(a, b) -> float:
    import numpy as np

    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))


def _token_id_mismatches(tokenizer, texts, ref_ids, ref_mask, max_len) -> list:
    """The texts whose Hugging Face token ids differ from the keras-hub ones."""
    mismatches = []
    hf_ids = tokenizer(texts, truncation=True, max_length=max_len)["input_ids"]
    for i, (text, ids) in enumerate(zip(texts, hf_ids)):
        keras_ids = ref_ids[i][ref_mask[i]].tolist()
        if ids != keras_ids:
            first = next((j for j, (a, b) in enumerate(zip(ids, keras_ids)) if a != b),
                         min(len(ids), len(keras_ids)))
            mismatches.append({
                "index": i, "text": text[:80], "first_difference": first,
                "hf": tokenizer.convert_ids_to_tokens(ids[first:first + 5]),
                "keras": tokenizer.convert_ids_to_tokens(keras_ids[first:first + 5]),
                "hf_length": len(ids), "keras_length": len(keras_ids),
            })
    return mismatches


def check_classifier(model_dir: str, reference: str, tolerance: float,
                     batch_size: int = 16) -> dict:
    """A `*ForSequenceClassification` export against the Keras logits
    (`minilm_tf.export.hf_classifier.classifier_parity_reference`)."""
    import numpy as np
    import torch
    import transformers
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    ref = np.load(reference)
    texts = [str(t) for t in ref["texts"]]
    ref_ids, ref_mask = ref["token_ids"], ref["padding_mask"].astype(bool)
    max_len = int(ref["max_seq_length"])
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    mismatches = _token_id_mismatches(tokenizer, texts, ref_ids, ref_mask, max_len)
    takes_types = "token_type_ids" in inspect.signature(model.forward).parameters
    logits = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            ids = torch.tensor(ref_ids[start:start + batch_size], dtype=torch.long)
            mask = torch.tensor(ref_mask[start:start + batch_size], dtype=torch.long)
            types = {"token_type_ids": torch.zeros_like(ids)} if takes_types else {}
            logits.append(model(input_ids=ids, attention_mask=mask, **types).logits.numpy())
    logits = np.concatenate(logits)
    diff = _max_abs(logits, ref["logits"])
    same_label = (int((logits.argmax(-1) == ref["logits"].argmax(-1)).sum())
                  if logits.shape[-1] > 1 else None)
    failures = []
    if mismatches:
        failures.append(f"token ids differ on {len(mismatches)} of {len(texts)} texts")
    if diff > tolerance:
        failures.append(f"logits differ by {diff:.3g} > {tolerance:g}")
    return {
        "model_dir": os.path.abspath(model_dir), "reference": os.path.abspath(reference),
        "texts": len(texts), "max_seq_length": max_len, "tolerance": tolerance,
        "libraries": {"torch": torch.__version__, "transformers": transformers.__version__},
        "hf_classes": {"tokenizer": type(tokenizer).__name__, "model": type(model).__name__,
                       "problem_type": model.config.problem_type},
        "id2label": {str(k): v for k, v in model.config.id2label.items()},
        "token_ids": {"identical": len(texts) - len(mismatches), "of": len(texts),
                      "mismatches": mismatches},
        "logits_max_abs_diff": diff, "logits_max_abs": float(np.max(np.abs(ref["logits"]))),
        "same_predicted_label": same_label,
        "tensorflow_imported": "tensorflow" in sys.modules,
        "failures": failures, "ok": not failures,
    }


def check(model_dir: str, reference: str, tolerance: float, embedding_tolerance: float,
          batch_size: int = 16) -> dict:
    import numpy as np
    import torch
    from transformers import AutoModel, AutoTokenizer

    ref = np.load(reference)
    texts = [str(t) for t in ref["texts"]]
    ref_ids = ref["token_ids"]
    ref_mask = ref["padding_mask"].astype(bool)
    max_len = int(ref["max_seq_length"])
    report = {"model_dir": os.path.abspath(model_dir), "reference": os.path.abspath(reference),
              "texts": len(texts), "max_seq_length": max_len,
              "tolerance": tolerance, "embedding_tolerance": embedding_tolerance}

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    report["libraries"] = {"torch": torch.__version__}
    import transformers

    report["libraries"]["transformers"] = transformers.__version__
    report["hf_classes"] = {"tokenizer": type(tokenizer).__name__, "model": type(model).__name__,
                            "hidden_act": getattr(model.config, "hidden_act", None)
                            or getattr(model.config, "activation", None)}
    # DistilBERT's model takes no token types; RoBERTa's ignore-able single row is zeros.
    takes_types = "token_type_ids" in inspect.signature(model.forward).parameters
    ref_pooler = ref["pooler_output"]

    mismatches = _token_id_mismatches(tokenizer, texts, ref_ids, ref_mask, max_len)
    report["token_ids"] = {"identical": len(texts) - len(mismatches), "of": len(texts),
                           "mismatches": mismatches}

    # Hidden states and pooler output on the keras ids (so that a tokenizer
    # difference does not hide a weight difference).
    hidden_diffs, pooler_diffs = [], []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            ids = torch.tensor(ref_ids[start:start + batch_size], dtype=torch.long)
            mask = torch.tensor(ref_mask[start:start + batch_size], dtype=torch.long)
            types = {"token_type_ids": torch.zeros_like(ids)} if takes_types else {}
            out = model(input_ids=ids, attention_mask=mask, **types)
            hidden = out.last_hidden_state.numpy()
            real = ref_mask[start:start + batch_size]
            hidden_diffs.append(_max_abs(hidden[real],
                                         ref["last_hidden_state"][start:start + batch_size][real]))
            # The reference has a pooler only where the Keras one is the HF one (BERT).
            pooler = getattr(out, "pooler_output", None)
            if pooler is not None and ref_pooler.shape[-1]:
                pooler_diffs.append(_max_abs(pooler.numpy(),
                                             ref_pooler[start:start + batch_size]))
    report["last_hidden_state_max_abs_diff"] = max(hidden_diffs, default=0.0)
    report["last_hidden_state_max_abs"] = float(np.max(np.abs(ref["last_hidden_state"])))
    report["pooler_output_max_abs_diff"] = max(pooler_diffs, default=None)

    # sentence-transformers, end to end from raw texts.
    if os.path.exists(os.path.join(model_dir, "modules.json")):
        import sentence_transformers
        from sentence_transformers import SentenceTransformer

        report["libraries"]["sentence_transformers"] = sentence_transformers.__version__
        st = SentenceTransformer(model_dir, device="cpu")
        emb = st.encode(texts, batch_size=batch_size, convert_to_numpy=True)
        report["sentence_transformers"] = {
            "modules": [type(m).__name__ for m in st],
            "max_seq_length": int(st.max_seq_length),
            "embedding_max_abs_diff": _max_abs(emb, ref["embedding"]),
            "embedding_shape": list(emb.shape),
        }
    else:
        report["sentence_transformers"] = None

    failures = []
    hidden_diff = report["last_hidden_state_max_abs_diff"]
    pooler_diff = report["pooler_output_max_abs_diff"]
    if mismatches:
        failures.append(f"token ids differ on {len(mismatches)} of {len(texts)} texts")
    if hidden_diff > tolerance:
        failures.append(f"last hidden states differ by {hidden_diff:.3g} > {tolerance:g}")
    if pooler_diff is not None and pooler_diff > tolerance:
        failures.append(f"pooler outputs differ by {pooler_diff:.3g} > {tolerance:g}")
    st_report = report["sentence_transformers"]
    if st_report is not None:
        emb_diff = st_report["embedding_max_abs_diff"]
        if emb_diff > embedding_tolerance:
            failures.append(f"sentence embeddings differ by {emb_diff:.3g} > "
                            f"{embedding_tolerance:g}")
        if st_report["max_seq_length"] != max_len:
            failures.append(f"sentence-transformers max_seq_length is "
                            f"{st_report['max_seq_length']}, the reference used {max_len}")
    report["tensorflow_imported"] = "tensorflow" in sys.modules
    report["failures"] = failures
    report["ok"] = not failures
    return report


PARITY_HEADING = "## Export parity"


def _g(value) -> str:
    return "-" if value is None else f"{value:.2g}"


def parity_section(report: dict) -> str:
    """The model card's "## Export parity" section for a report."""
    libraries = ", ".join(f"{k} {v}" for k, v in report["libraries"].items())
    ids = report["token_ids"]
    tol = _g(report["tolerance"])
    rows = [f"| token ids (Hugging Face tokenizer = keras-hub) | {ids['identical']} / "
            f"{ids['of']} texts identical |"]
    if "logits_max_abs_diff" in report:
        rows.append(f"| logits, max abs difference | {_g(report['logits_max_abs_diff'])} "
                    f"(tolerance {tol}; logits up to {_g(report['logits_max_abs'])}) |")
        if report.get("same_predicted_label") is not None:
            rows.append(f"| same predicted label | {report['same_predicted_label']} / "
                        f"{report['texts']} |")
    else:
        rows.append(f"| last hidden state, max abs difference | "
                    f"{_g(report['last_hidden_state_max_abs_diff'])} (tolerance {tol}) |")
        if report.get("pooler_output_max_abs_diff") is not None:
            rows.append(f"| pooler output, max abs difference | "
                        f"{_g(report['pooler_output_max_abs_diff'])} |")
        st = report.get("sentence_transformers")
        if st:
            rows.append(f"| sentence-transformers embedding, max abs difference | "
                        f"{_g(st['embedding_max_abs_diff'])} (tolerance "
                        f"{_g(report['embedding_tolerance'])}) |")
    verdict = ("passed" if report["ok"] else "FAILED: " + "; ".join(report["failures"]))
    return "\n".join([
        PARITY_HEADING, "",
        f"`tools/check_hf_parity.py` loaded this directory in {libraries} and compared it "
        f"with the Keras model on {report['texts']} texts ({verdict}):", "",
        "| check | result |", "|---|---|", *rows, ""])


def update_card(model_dir: str, report: dict) -> bool:
    """Writes (or replaces) the card's parity section; False without a card."""
    path = os.path.join(model_dir, "README.md")
    if not os.path.isfile(path):
        return False
    with open(path, encoding="utf-8") as f:
        card = f.read()
    if PARITY_HEADING in card:  # drop the previous section, up to the next heading
        head, _, rest = card.partition(PARITY_HEADING)
        tail = rest.split("\n## ", 1)
        card = head + ("## " + tail[1] if len(tail) > 1 else "")
    card = card.rstrip("\n") + "\n\n" + parity_section(report)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(card)
    os.replace(tmp, path)
    return True


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_dir", required=True, help="The export (tools/export_hf.py).")
    parser.add_argument("--reference", required=True,
                        help=".npz written by minilm_tf.export.hf.keras_parity_reference.")
    parser.add_argument("--tolerance", type=float, default=1e-5,
                        help="Max abs difference of last hidden states and pooler outputs.")
    parser.add_argument("--embedding_tolerance", type=float, default=1e-5,
                        help="Max abs difference of sentence-transformers embeddings.")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads (0: torch's default).")
    parser.add_argument("--output_json", default=None, help="Also write the report here.")
    parser.add_argument("--update_card", action=argparse.BooleanOptionalAction, default=True,
                        help="Write the results into the export's README.md.")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.model_dir):
        return _fail_usage(f"--model_dir {args.model_dir} is not a directory.")
    if not os.path.isfile(os.path.join(args.model_dir, "config.json")):
        return _fail_usage(f"{args.model_dir} has no config.json; is it an export?")
    if not os.path.isfile(args.reference):
        return _fail_usage(f"--reference {args.reference} does not exist.")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    import numpy as np

    if "logits" in np.load(args.reference).files:  # a classifier's reference
        report = check_classifier(args.model_dir, args.reference, args.tolerance)
    else:
        report = check(args.model_dir, args.reference, args.tolerance, args.embedding_tolerance)
    if args.update_card:
        report["card_updated"] = update_card(args.model_dir, report)
    text = json.dumps(report, indent=2, ensure_ascii=False)
    print(text)
    if args.output_json:
        with open(args.output_json, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    if not report["ok"]:
        print("error: parity check failed: " + "; ".join(report["failures"]), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
