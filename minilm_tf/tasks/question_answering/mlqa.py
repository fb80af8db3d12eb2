"""MLQA: extractive QA in seven languages, for zero-shot cross-lingual
evaluation (train in one language, test in all), as the paper evaluates its
multilingual MiniLM.

Protocol (the paper's and MLQA's cross-lingual transfer setting): train on
English SQuAD v1.1 (TFDS `squad/v1.1`, or a SQuAD-format `train_file`),
select on MLQA's dev set in `train_language`, and test on MLQA's test set in
every language of `languages` (question and context in the same language),
each scored by MLQA's official evaluation (`mlqa_metrics`).

MLQA comes from TFDS (`mlqa/<language>`: its dev set is the `validation`
split) or, with the task option `mlqa_dir`, from the MLQA release directory
(`MLQA_V1/`, holding `dev/dev-context-<l>-question-<l>.json` and
`test/test-context-<l>-question-<l>.json`). A `validation_file` replaces
the dev set.
"""

from __future__ import annotations

import os
from typing import Dict, Optional, Tuple

from minilm_tf.tasks.question_answering import examples as squad_examples
from minilm_tf.tasks.question_answering.mlqa_metrics import MLQA_LANGUAGES

TASK_NAME = "mlqa"
SQUAD_V1 = "squad/v1.1"  # the English training set of the cross-lingual transfer setting
# --task_option keys (`FinetuneConfig.extra`) of the MLQA task and their defaults.
OPTIONS = {"train_language": "en", "languages": ",".join(MLQA_LANGUAGES), "mlqa_dir": None}


def is_mlqa(task: str) -> bool:
    return task.strip().lower() == TASK_NAME


def parse_options(extra: Optional[dict]) -> dict:
    """The MLQA keys of the task options, checked and with defaults."""
    values = {**OPTIONS, **{k: v for k, v in dict(extra or {}).items() if k in OPTIONS}}
    languages = values["languages"]
    if isinstance(languages, str):
        languages = [x.strip() for x in languages.split(",") if x.strip()]
    languages = list(dict.fromkeys(languages))
    if not languages:
        raise ValueError("MLQA task option languages is empty; name at least one of "
                         f"{', '.join(MLQA_LANGUAGES)}.")
    for language in languages + [values["train_language"]]:
        if language not in MLQA_LANGUAGES:
            raise ValueError(f"MLQA has no language {language!r}; its languages are "
                             f"{', '.join(MLQA_LANGUAGES)}.")
    directory = values["mlqa_dir"]
    if directory is not None and not os.path.isdir(directory):
        raise FileNotFoundError(f"MLQA task option mlqa_dir={directory!r} is not a directory "
                                "(expected the MLQA release folder with dev/ and test/).")
    return {"train_language": values["train_language"], "languages": languages,
            "mlqa_dir": directory}


def _release_file(directory: str, split: str, language: str) -> str:
    prefix = "dev" if split == "validation" else "test"
    path = os.path.join(directory, prefix, f"{prefix}-context-{language}-question-{language}.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"The MLQA release folder {directory} has no {path}.")
    return path


def load_split(options: dict, split: str, language: str, read_json,
               data_dir: Optional[str] = None, download: bool = True):
    """MLQA `split` ("validation" = dev, or "test") in `language`, and its source."""
    if options["mlqa_dir"]:
        path = _release_file(options["mlqa_dir"], split, language)
        return squad_examples.read_squad_json(read_json(path), is_training=False,
                                              version_2=False), path
    name = f"mlqa/{language}"
    try:
        examples = squad_examples.load_squad_tfds(name, split, is_training=False,
                                                  data_dir=data_dir, download=download)
    except Exception as e:  # TFDS reports missing data in several ways
        raise RuntimeError(
            f"Could not prepare TFDS dataset {name} (data_dir={data_dir}): {e}. Without "
            "network access, pass the MLQA release folder with --task_option "
            "mlqa_dir=PATH.") from e
    return examples, f"tfds:{name}"


def load_test_by_language(options: dict, read_json, **kwargs
                          ) -> Tuple[Dict[str, list], Dict[str, str]]:
    """{language: test examples}, {language: source} for every language."""
    tests, sources = {}, {}
    for language in options["languages"]:
        examples, source = load_split(options, "test", language, read_json, **kwargs)
        tests[language], sources[language] = list(examples), source
    return tests, sources


def load_mlqa(config, on_mismatch: str, read_json, data_dir: Optional[str] = None,
              download: bool = True):
    """(train, validation, test, test_by_language, train_language, source,
    notes) of an MLQA run: SQuAD v1.1 (`config.train_file` or TFDS) to train,
    MLQA dev in `train_language` (or `config.validation_file`) to validate,
    MLQA test in every language of the task options."""
    options = parse_options(getattr(config, "extra", None))
    train_language = options["train_language"]
    tfds = dict(data_dir=data_dir, download=download)
    if config.train_file:
        train = squad_examples.read_squad_json(read_json(config.train_file), is_training=True,
                                               on_mismatch=on_mismatch, version_2=False)
        train_source = config.train_file
    else:
        train = squad_examples.load_squad_tfds(SQUAD_V1, "train", is_training=True,
                                               on_mismatch=on_mismatch, **tfds)
        train_source = f"tfds:{SQUAD_V1}"
    if config.validation_file:
        validation = squad_examples.read_squad_json(read_json(config.validation_file),
                                                    is_training=False, version_2=False)
        validation_source = config.validation_file
    else:
        validation, validation_source = load_split(options, "validation", train_language,
                                                   read_json, **tfds)
    test_by_language, test_sources = load_test_by_language(options, read_json, **tfds)
    if train_language in test_by_language:
        test = test_by_language[train_language]
    else:
        test, _ = load_split(options, "test", train_language, read_json, **tfds)
    source = (f"mlqa (train {train_source}, validation {validation_source}, test "
              + ", ".join(f"{k}: {v}" for k, v in test_sources.items()) + ")")
    notes = [f"zero-shot cross-lingual: trained on {train_source} ({train_language}), "
             f"tested in {', '.join(test_by_language)}."]
    return train, validation, test, test_by_language, train_language, source, notes
