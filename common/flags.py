"""The one place that turns config dataclasses into command-line flags and back: the app, `python -m
align` and the benches all build their flags here, so every field's help text is its flag's help."""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _base_type(tp):
    """`int | None` -> int; plain types unchanged."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0]
    return tp


def _dest(name: str, prefix: str) -> str:
    return f"{prefix}_{name}" if prefix else name


def add_dataclass_args(parser: argparse.ArgumentParser, cls, *, title: str | None = None, prefix: str = "") -> None:
    """One flag per field, named after it (`--<prefix>-<field>` with a prefix, for several configs
    in one command), typed from its annotation, helped by its metadata."""
    group = parser.add_argument_group(title or cls.__name__)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = _base_type(hints[f.name])
        dest = _dest(f.name, prefix)
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        help_text = f.metadata.get("help", "") + f" (default: {default!r})"
        if tp is bool:
            group.add_argument(_flag(dest), dest=dest, default=default,
                               action=argparse.BooleanOptionalAction, help=help_text)
        elif typing.get_origin(tp) is list:
            item = typing.get_args(tp)[0]
            group.add_argument(_flag(dest), dest=dest, default=default, nargs="+", type=item, help=help_text)
        else:
            group.add_argument(_flag(dest), dest=dest, default=default, type=tp, help=help_text)


def from_namespace(cls, ns: argparse.Namespace, *, prefix: str = ""):
    return cls(**{f.name: getattr(ns, _dest(f.name, prefix)) for f in dataclasses.fields(cls)})
