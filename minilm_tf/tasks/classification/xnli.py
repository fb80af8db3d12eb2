"""XNLI (TFDS `xnli`): natural language inference in 15 languages, for
zero-shot cross-lingual evaluation: train in one language, test in all.

The multilingual MiniLM of the paper is fine-tuned on English MultiNLI and
evaluated on the XNLI test set of every language. Two training sources:

* `train_source="xnli"` (default): the XNLI validation set (2,490 pairs per
  language) in `train_language`, split 90/10 into train and validation by
  `stable_stratified_split` (fixed, text-keyed), so the test sets stay
  untouched;
* `train_source="mnli"`: GLUE MultiNLI's English train split (TFDS
  `glue/mnli`, 393k pairs; the paper's protocol), validated on XNLI
  validation in `train_language`.

Test: the XNLI test set (5,010 pairs per language) in `train_language` is
`TaskData.test`; every language in `languages` is in
`TaskData.test_by_language`, which the fine-tuning run evaluates one by one
(`report.json`: `metrics.test_by_language`, `cross_lingual`). The labels
are XNLI's (entailment, neutral, contradiction; MultiNLI uses the same
three in the same order).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

from minilm_tf.data.splits import stable_stratified_split
from minilm_tf.tasks.classification.data import (
    CLASSIFICATION,
    RawExamples,
    TaskData,
    build_task_data,
    encode_split,
)

XNLI_LANGUAGES = ("ar", "bg", "de", "el", "en", "es", "fr", "hi", "ru", "sw", "th", "tr",
                  "ur", "vi", "zh")
XNLI_LABELS = ["entailment", "neutral", "contradiction"]
TRAIN_SOURCES = ("xnli", "mnli")
# --task_option keys (`FinetuneConfig.extra`) and their defaults.
OPTIONS = {"train_language": "en", "languages": ",".join(XNLI_LANGUAGES),
           "train_source": "xnli"}
# Validation share of the XNLI validation set when it is also the train set.
VALIDATION_FRACTION = 0.1


def parse_options(options: Optional[dict]) -> dict:
    """`--task_option` values for XNLI, checked: `train_language`,
    `languages` (comma-separated or a list), `train_source`."""
    options = dict(options or {})
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ValueError(f"Unknown XNLI task options {unknown}; known: {sorted(OPTIONS)}.")
    values = {**OPTIONS, **options}
    languages = values["languages"]
    if isinstance(languages, str):
        languages = [x.strip() for x in languages.split(",") if x.strip()]
    languages = list(dict.fromkeys(languages))
    for language in languages + [values["train_language"]]:
        if language not in XNLI_LANGUAGES:
            raise ValueError(f"XNLI has no language {language!r}; it has "
                             f"{', '.join(XNLI_LANGUAGES)}.")
    if values["train_source"] not in TRAIN_SOURCES:
        raise ValueError(f"train_source must be one of {TRAIN_SOURCES}, got "
                         f"{values['train_source']!r}.")
    if values["train_source"] == "mnli" and values["train_language"] != "en":
        raise ValueError("MultiNLI is English: with train_source=mnli, train_language must "
                         "be en (use train_source=xnli to train in another language).")
    if values["train_language"] not in languages:
        languages.insert(0, values["train_language"])
    return {"train_language": values["train_language"], "languages": languages,
            "train_source": values["train_source"]}


def _text(value) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def _by_language(records, languages: Sequence[str], source: str) -> Dict[str, RawExamples]:
    """XNLI records -> one RawExamples per language. The premise is a
    `Translation` (language -> text), the hypothesis a
    `TranslationVariableLanguages` ({"language": [...], "translation": [...]})."""
    out = {lang: RawExamples([], [], [], f"{source}:{lang}") for lang in languages}
    for ex in records:
        hypotheses = dict(zip((_text(x) for x in ex["hypothesis"]["language"]),
                              (_text(x) for x in ex["hypothesis"]["translation"])))
        label = XNLI_LABELS[int(ex["label"])]
        for lang in languages:
            premise = ex["premise"].get(lang)
            if premise is None or lang not in hypotheses:
                raise ValueError(f"{source}: an example has no {lang!r} translation.")
            out[lang].texts.append(_text(premise))
            out[lang].text_pairs.append(hypotheses[lang])
            out[lang].labels.append(label)
    for lang, raw in out.items():
        if not raw.texts:
            raise ValueError(f"{source}: no examples for {lang!r}.")
    return out


def _mnli_train(data_dir, download) -> RawExamples:
    import tensorflow_datasets as tfds

    ds = tfds.load("glue/mnli", split="train", data_dir=data_dir, download=download,
                   shuffle_files=False)
    texts, pairs, labels = [], [], []
    for ex in tfds.as_numpy(ds):
        texts.append(_text(ex["premise"]))
        pairs.append(_text(ex["hypothesis"]))
        labels.append(XNLI_LABELS[int(ex["label"])])
    return RawExamples(texts, pairs, labels, "tfds glue/mnli:train")


def load_xnli(options: Optional[dict] = None, data_dir: Optional[str] = None,
              download: bool = True) -> TaskData:
    """The XNLI task (see the module docstring) with `options` as
    `parse_options` reads them."""
    import tensorflow_datasets as tfds

    opts = parse_options(options)
    train_language, languages = opts["train_language"], opts["languages"]
    try:
        builder = tfds.builder("xnli", data_dir=data_dir)
        if download:
            builder.download_and_prepare()
    except Exception as e:
        raise RuntimeError(
            f"Could not prepare TFDS dataset xnli (data_dir={data_dir}): {e}. Without "
            "network access, prepare it elsewhere and pass --tfds_data_dir.") from e
    splits = {name: _by_language(tfds.as_numpy(builder.as_dataset(
        split=name, shuffle_files=False)), languages, f"tfds xnli:{name}")
        for name in ("validation", "test")}
    validation = splits["validation"][train_language]
    notes: List[str] = []
    if opts["train_source"] == "mnli":
        train = _mnli_train(data_dir, download)
        notes.append(f"train: GLUE MultiNLI (English); validation: XNLI validation "
                     f"({train_language}).")
    else:
        keys = [f"{t}\t{p}" for t, p in zip(validation.texts, validation.text_pairs)]
        parts = stable_stratified_split(keys, validation.labels,
                                        (1.0 - VALIDATION_FRACTION, VALIDATION_FRACTION, 0.0))
        train, validation = validation.take(parts["train"]), validation.take(parts["validation"])
        notes.append(f"train and validation: the XNLI validation set in {train_language}, "
                     f"split {1 - VALIDATION_FRACTION:.0%} / {VALIDATION_FRACTION:.0%}.")
    notes.append(f"zero-shot cross-lingual: trained in {train_language}, tested in "
                 f"{', '.join(languages)}.")
    data = build_task_data(
        name="xnli", kind=CLASSIFICATION, train=train, validation=validation,
        test=splits["test"][train_language], metrics=("accuracy", "macro_f1"),
        main_metric="accuracy",
        source=f"tfds xnli ({opts['train_source']} train, {train_language})",
        label_vocab=list(XNLI_LABELS), notes=notes)
    data.train_language = train_language
    data.test_by_language = {lang: encode_split(splits["test"][lang], CLASSIFICATION,
                                                data.label_vocab, f"test/{lang}")
                             for lang in languages}
    return data


def cross_lingual_summary(by_language: Dict[str, Dict[str, float]], train_language: str,
                          metric: str) -> dict:
    """`metric` per language, its mean over all languages and over the
    languages the model was not trained in (the zero-shot transfer)."""
    values = {lang: float(m[metric]) for lang, m in by_language.items() if m}
    others = [v for lang, v in values.items() if lang != train_language]
    return {
        "metric": metric,
        "train_language": train_language,
        "by_language": values,
        "average": sum(values.values()) / len(values) if values else None,
        "zero_shot_average": sum(others) / len(others) if others else None,
    }
