"""One integer seed, one independent random stream per purpose (the only place seeds are derived).

A trial or a data preparation is given one integer ``seed`` (``project.seed + seed_stride · k`` in a
sweep). Each use of randomness draws from its own child of ``numpy.random.SeedSequence(seed)``:
child ``i`` of ``PURPOSES`` is ``SeedSequence(seed, spawn_key=(i,))`` (what ``SeedSequence(seed).spawn``
returns as its ``i``-th child), so no two purposes ever share a bit stream (before, the train/eval
split and the per-condition balancing both drew ``default_rng(seed)`` and so drew identical numbers).

Purposes (append new ones at the end: the index is part of the stream's identity):

* ``generation``: synthetic parameters, features, labels and the synthetic test hold-out;
* ``split``: the train/eval permutation of the labelled rows;
* ``balancing``: which rows ``balance_by_condition`` keeps;
* ``reweighting``: the deprecated synthetic negative downsampling;
* ``batch_order``: the per-epoch shuffles of the training rows (a ``torch.Generator``);
* ``model``: torch's global RNG in a trial: model initialisation and dropout masks;
* ``validation``: the validation rows ``le-ray tune`` carves out of the train split.

Same seed → same numbers in every runner; a different purpose or seed → an independent stream.
"""

from __future__ import annotations

import numpy as np

__all__ = ["PURPOSES", "sequence", "rng", "torch_seed"]

PURPOSES: tuple[str, ...] = ("generation", "split", "balancing", "reweighting", "batch_order", "model", "validation")


def sequence(seed: int, purpose: str) -> np.random.SeedSequence:
    """The ``SeedSequence`` child of ``seed`` reserved for ``purpose``."""
    if purpose not in PURPOSES:
        raise ValueError(f"unknown seed purpose {purpose!r}; expected one of {', '.join(PURPOSES)}")
    return np.random.SeedSequence(int(seed), spawn_key=(PURPOSES.index(purpose),))


def rng(seed: int, purpose: str) -> np.random.Generator:
    """A numpy Generator (PCG64) on ``purpose``'s stream of ``seed``."""
    return np.random.default_rng(sequence(seed, purpose))


def torch_seed(seed: int, purpose: str) -> int:
    """A 63-bit integer for ``torch.manual_seed`` / ``torch.Generator.manual_seed`` from ``purpose``'s stream."""
    return int(sequence(seed, purpose).generate_state(1, np.uint64)[0] >> np.uint64(1))
