"""The Hugging Face tokenizer files of a keras-hub tokenizer.

Three families, each written so that `transformers.AutoTokenizer` splits
text into the same ids as the keras-hub tokenizer:

* WordPiece (`BertTokenizer`, `DistilBertTokenizer`, `ElectraTokenizer`):
  `vocab.txt` and the normalisation flags (`do_lower_case`,
  `strip_accents`, `tokenize_chinese_chars`);
* byte-level BPE (`RobertaTokenizer`): `vocab.json` and `merges.txt`;
* SentencePiece (`XLMRobertaTokenizer`): the `sentencepiece.bpe.model`
  proto; both libraries put `<s> <pad> </s> <unk>` first and shift the
  SentencePiece ids by one (fairseq's order), `<mask>` last.

Each also gets `tokenizer_config.json` and `special_tokens_map.json`.
"""

from __future__ import annotations

import json

# keras-hub tokenizer class name -> (family, Hugging Face tokenizer class).
TOKENIZERS = {
    "BertTokenizer": ("wordpiece", "BertTokenizer"),
    "DistilBertTokenizer": ("wordpiece", "DistilBertTokenizer"),
    "ElectraTokenizer": ("wordpiece", "ElectraTokenizer"),
    "RobertaTokenizer": ("bpe", "RobertaTokenizer"),
    "XLMRobertaTokenizer": ("sentencepiece", "XLMRobertaTokenizer"),
}


def family(tokenizer) -> str:
    """`wordpiece`, `bpe` or `sentencepiece` (ValueError for other tokenizers)."""
    name = type(tokenizer).__name__
    if name not in TOKENIZERS:
        raise ValueError(f"No Hugging Face tokenizer files for a {name}; supported: "
                         f"{sorted(TOKENIZERS)}.")
    return TOKENIZERS[name][0]


def special_tokens_map(tokenizer) -> dict:
    """`special_tokens_map.json`: the keras-hub tokenizer's special tokens."""
    if family(tokenizer) == "wordpiece":
        return {
            "unk_token": tokenizer.oov_token,
            "sep_token": tokenizer.sep_token,
            "pad_token": tokenizer.pad_token,
            "cls_token": tokenizer.cls_token,
            "mask_token": tokenizer.mask_token,
        }
    # RoBERTa and XLM-R: the same five strings in both libraries.
    return {"bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>", "cls_token": "<s>",
            "unk_token": "<unk>", "pad_token": "<pad>", "mask_token": "<mask>"}


def tokenizer_config(tokenizer, model_max_length: int) -> dict:
    """`tokenizer_config.json` for the Hugging Face tokenizer that splits
    like the keras-hub one."""
    kind = family(tokenizer)
    config = {"tokenizer_class": TOKENIZERS[type(tokenizer).__name__][1],
              "model_max_length": int(model_max_length),
              "clean_up_tokenization_spaces": kind == "wordpiece",
              **special_tokens_map(tokenizer)}
    if kind == "wordpiece":
        config.update({
            "do_lower_case": bool(getattr(tokenizer, "lowercase", False)),
            # Explicit: HF strips accents whenever it lowercases when this is null.
            "strip_accents": bool(getattr(tokenizer, "strip_accents", False)),
            "tokenize_chinese_chars": bool(getattr(tokenizer, "split_on_cjk", True)),
            "do_basic_tokenize": True,
            "never_split": None,
        })
    elif kind == "bpe":
        config.update({"add_prefix_space": False, "errors": "replace", "trim_offsets": True})
    return config


def _proto_bytes(tokenizer) -> bytes:
    proto = tokenizer.proto
    if isinstance(proto, str):  # a path
        with open(proto, "rb") as f:
            return f.read()
    return bytes(proto)


def tokenizer_files(tokenizer, model_max_length: int) -> dict[str, bytes]:
    """File name -> contents of the tokenizer's Hugging Face files."""
    kind = family(tokenizer)
    files = {}
    if kind == "wordpiece":
        files["vocab.txt"] = "".join(t + "\n" for t in tokenizer.get_vocabulary()).encode()
    elif kind == "bpe":
        files["vocab.json"] = json.dumps(dict(tokenizer.vocabulary), ensure_ascii=False).encode()
        files["merges.txt"] = ("#version: 0.2\n" + "".join(m + "\n" for m in tokenizer.merges)
                               ).encode()
    else:
        files["sentencepiece.bpe.model"] = _proto_bytes(tokenizer)
    for name, content in (("tokenizer_config.json", tokenizer_config(tokenizer, model_max_length)),
                          ("special_tokens_map.json", special_tokens_map(tokenizer))):
        files[name] = (json.dumps(content, indent=2, ensure_ascii=False) + "\n").encode()
    return files
