"""Run settings as `ml_collections.ConfigDict` recipes, the one config
system of the package.

Distillation recipes are nested ConfigDicts (`configs/base.py`). Fine-tuning
runs keep their settings in a dataclass (`FinetuneConfig`, `Seq2SeqConfig`)
so that library users get types and defaults; `config_dict_of` turns such a
dataclass into the ConfigDict a recipe in `configs/` starts from, and
`from_config_dict` builds the dataclass back, naming keys that do not exist.
Unset values are `None` (typed placeholders, so `--config.KEY=VALUE`
overrides still parse).
"""

import dataclasses
import types
import typing
from typing import Any, Mapping, Type, TypeVar

import ml_collections
from ml_collections import config_dict

T = TypeVar("T")


def _optional_of(hint: Any) -> Any:
    """X for `Optional[X]` / `X | None`, else None."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(hint)) == 2:
            return args[0]
    return None


def config_dict_of(cls: type) -> ml_collections.ConfigDict:
    """A ConfigDict with every field of the dataclass `cls` and its default;
    required fields and fields whose default is None are typed placeholders."""
    hints = typing.get_type_hints(cls)
    config = ml_collections.ConfigDict()
    for field in dataclasses.fields(cls):
        if field.default_factory is not dataclasses.MISSING:
            value = field.default_factory()
            config[field.name] = ml_collections.ConfigDict(value) if isinstance(value, dict) else value
            continue
        default = None if field.default is dataclasses.MISSING else field.default
        if default is None:
            hint = hints[field.name]
            kind = _optional_of(hint) or hint
            config[field.name] = config_dict.placeholder(kind if isinstance(kind, type) else object)
        else:
            config[field.name] = default
    return config


def from_config_dict(cls: Type[T], values: Mapping[str, Any]) -> T:
    """`cls(**values)` for a ConfigDict or mapping made by `config_dict_of`:
    a clear error for keys `cls` does not have and required ones left unset."""
    values = values.to_dict() if hasattr(values, "to_dict") else dict(values)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys {unknown}; valid keys: {sorted(fields)}.")
    missing = [name for name, f in fields.items()
               if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
               and values.get(name) in (None, "")]
    if missing:
        raise ValueError(f"Missing required settings ({cls.__name__}): "
                         + ", ".join(f"`{m}`" for m in missing) + ".")
    return cls(**values)
