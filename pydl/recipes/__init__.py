"""Training recipes: what ``pydl train --model NAME`` runs.

A recipe trains one of the architectures in :mod:`pydl.models` on data shipped with pydl,
prints what it did, writes its outputs (checkpoint, plots, sample grids) to ``args.out`` and
returns a dict of results that the command line also writes to ``result.json``.

Each recipe module defines::

    SPECS = {"model-name": Spec(help=..., datasets=(...), epochs=..., lr=..., batch_size=...)}
    def run(args) -> dict   # args: the parsed ``pydl train`` arguments, defaults filled in

The models themselves stay in :mod:`pydl.models`, a page of ``pydl.nn`` code each; a recipe
is the training program around one.
"""

from __future__ import annotations

import importlib

from .common import Spec

# model name -> recipe module (in pydl/recipes/). Order is the order ``pydl train --help`` lists.
_MODULES = {
    "perceptron": "perceptron",
    "mlp": "classify",
    "cnn": "classify",
    "lenet": "classify",
    "rnn": "sequence",
    "lstm": "sequence",
    "gru": "sequence",
    "transformer": "transformer",
    "charlm": "transformer",
    "gan": "gan",
    "vae": "vae",
    "diffusion": "diffusion",
}


def available() -> dict:
    """{model name: Spec} for every recipe that imports (all of them, in a complete install)."""
    out = {}
    for name, module in _MODULES.items():
        try:
            mod = importlib.import_module(f"{__name__}.{module}")
        except ModuleNotFoundError as exc:
            if exc.name == f"{__name__}.{module}":  # recipe not written yet
                continue
            raise
        out[name] = mod.SPECS[name]
    return out


def get(name: str):
    """The recipe module that trains ``name``."""
    if name not in _MODULES:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(_MODULES)}")
    return importlib.import_module(f"{__name__}.{_MODULES[name]}")


__all__ = ["Spec", "available", "get"]
