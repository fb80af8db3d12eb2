"""Deterministic, hash-keyed train/validation/test splits.

The built-in tasks split their examples with `stable_stratified_split`, and
the built-in `bbc_news` corpus uses the same split to leave out the articles
that the `bbc_news` task evaluates on.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any, Dict, List, Sequence, Tuple

BUILTIN_SPLIT_FRACTIONS = (0.8, 0.1, 0.1)


def stable_hash(key: str) -> str:
    return hashlib.sha1(key.encode("utf-8")).hexdigest()


def stable_stratified_split(
    keys: Sequence[str],
    strata: Sequence[Any],
    fractions: Tuple[float, float, float] = BUILTIN_SPLIT_FRACTIONS,
) -> Dict[str, List[int]]:
    """A deterministic stratified train/validation/test split of indices.

    Within each stratum (class), examples are ordered by sha1(key) (ties by
    key, then index); the first round(n * test_fraction) go to test, the next
    round(n * validation_fraction) to validation, the rest to train. A
    boundary never separates identical keys, so duplicated texts never land
    in two splits. Nothing here uses a random generator, so the split depends
    only on the keys and labels.

    Returns {"train": [...], "validation": [...], "test": [...]}, each sorted.
    """
    if len(keys) != len(strata):
        raise ValueError("keys and strata have different lengths.")
    if abs(sum(fractions) - 1.0) > 1e-9 or min(fractions) < 0:
        raise ValueError(f"Split fractions {fractions} must be >= 0 and sum to 1.")
    _, f_val, f_test = fractions
    by_class: Dict[str, List[int]] = {}
    for i, s in enumerate(strata):
        by_class.setdefault(str(s), []).append(i)
    out = {"train": [], "validation": [], "test": []}
    for cls in sorted(by_class):
        idx = sorted(by_class[cls], key=lambda i: (stable_hash(keys[i]), keys[i], i))
        n = len(idx)
        n_test = int(math.floor(n * f_test + 0.5))
        n_val = int(math.floor(n * f_val + 0.5))

        def no_straddle(b):
            while 0 < b < n and keys[idx[b]] == keys[idx[b - 1]]:
                b += 1
            return b

        b1 = no_straddle(n_test)
        b2 = no_straddle(max(b1, n_test + n_val))
        out["test"].extend(idx[:b1])
        out["validation"].extend(idx[b1:b2])
        out["train"].extend(idx[b2:])
    return {k: sorted(v) for k, v in out.items()}


def split_fingerprint(keys: Sequence[str], parts: Dict[str, List[int]]) -> str:
    """sha1 over the split assignment; pinned in tests so splits never move."""
    h = hashlib.sha1()
    for name in ("train", "validation", "test"):
        h.update(name.encode())
        for digest in sorted(stable_hash(keys[i]) for i in parts[name]):
            h.update(digest.encode())
    return h.hexdigest()
