"""The one place a loss is named: :data:`LOSSES`, name → :class:`LossInfo`.

Config validation (``training.loss_mode``, ``training.by_loss.<loss>``, ``tune.space.<loss>``), folder
names of a diagnostic run, the labels of every table, legend and file of a report, and the loss
functions themselves (bound in :mod:`le_ray.training.objectives`, which refuses to import if a registered
loss has no implementation) all read this table. This module sits on the lowest floor (config
validates against it), so it holds names and facts only, no torch.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Iterable

from le_ray.errors import ConfigError

__all__ = ["LossInfo", "LOSSES", "LOSS_NAMES", "SECTION_READER", "loss_key", "canonical_loss", "loss_info", "label",
           "suggest", "losses_of"]


@dataclass(frozen=True)
class LossInfo:
    """A training loss: canonical ``name`` (config key), accepted ``aliases``, display ``label``
    (tables, legends, report headings), ``folder`` (``le_ray.runners.run`` output folders and report file
    keys), whether it can use the LE cross-batch history, and a one-line description."""

    name: str
    aliases: tuple[str, ...]
    label: str
    folder: str
    supports_history: bool
    description: str


LOSSES: dict[str, LossInfo] = {
    info.name: info for info in (
        LossInfo("bce", (), "BCE", "bce", False, "binary cross-entropy (mean over rows)"),
        LossInfo("localized_entropy", ("le",), "LE", "le", True,
                 "Localized Entropy: per-condition BCE normalised by the cross-entropy of the condition's base rate"),
        LossInfo("focal", (), "focal", "focal", False, "focal loss (Lin et al.), training.focal.alpha / gamma"),
    )
}
LOSS_NAMES: tuple[str, ...] = tuple(LOSSES)
#: The one loss that reads each loss-specific training section (training/objectives.py): set for another loss it
#: is a no-op (``tune.space`` refuses it, the audit warns, ``--set 'training.by_loss.*.focal.gamma=…'`` expands to
#: the reader only).
SECTION_READER: dict[str, str] = {"focal": "focal", "cross_batch": "localized_entropy", "le": "localized_entropy"}
_LOOKUP: dict[str, str] = {key: info.name for info in LOSSES.values() for key in (info.name, *info.aliases)}


def suggest(word: object, choices: Iterable[str]) -> str:
    """``'; did you mean "x"?'`` for the closest of ``choices`` (difflib), or ``''`` when none is close."""
    if not isinstance(word, str):
        return ""
    close = difflib.get_close_matches(word.strip().lower(), list(choices), n=1, cutoff=0.6)
    return f'; did you mean "{close[0]}"?' if close else ""


def _expected() -> str:
    return ", ".join(f"{i.name} ({', '.join(i.aliases)})" if i.aliases else i.name for i in LOSSES.values())


def loss_key(name: object) -> str | None:
    """The canonical name of a loss name or alias spelled exactly as registered (``le`` → ``localized_entropy``,
    ``bce`` → ``bce``); None when ``name`` is not one (no case folding: config keys are matched as written)."""
    return _LOOKUP.get(name) if isinstance(name, str) else None


def canonical_loss(name: object, where: str = "loss") -> str:
    """The canonical name of ``name`` (``le`` → ``localized_entropy``; case and surrounding space ignored);
    ConfigError naming ``where`` otherwise."""
    key = loss_key(name.strip().lower() if isinstance(name, str) else None)
    if key is None:
        shown = f'"{name}"' if isinstance(name, str) else repr(name)
        raise ConfigError(f"{where}: got {shown}; expected one of {_expected()}{suggest(name, _LOOKUP)}")
    return key


def loss_info(name: str) -> LossInfo:
    """:class:`LossInfo` of a canonical name or alias."""
    return LOSSES[canonical_loss(name)]


def label(name: str) -> str:
    """Display label (BCE, LE, focal) of a loss name or alias."""
    return loss_info(name).label


def losses_of(loss_mode: str | Iterable[str], where: str = "training.loss_mode") -> tuple[str, ...]:
    """Canonical loss names from ``training.loss_mode``: one name, ``both`` (BCE + LE), ``all``, ``a,b`` or a list."""
    if isinstance(loss_mode, str):
        mode = loss_mode.strip().lower()
        if mode == "both":
            return ("bce", "localized_entropy")
        if mode == "all":
            return LOSS_NAMES
        items, keys = [part for part in mode.split(",") if part.strip()], [where] * len(mode.split(","))
        if len(items) == 1 and loss_key(items[0].strip()) is None:  # one unknown word: both and all are choices too
            raise ConfigError(f"{where}: got \"{loss_mode}\"; expected one of {_expected()}, both (BCE + LE), all, "
                              f"or a list of losses{suggest(mode, [*_LOOKUP, 'both', 'all'])}")
    else:
        items = list(loss_mode)
        keys = [f"{where}[{i}]" for i in range(len(items))]
    if not items:
        raise ConfigError(f"{where}: got an empty selection; expected a loss name, both, all or a list")
    return tuple(dict.fromkeys(canonical_loss(item, key) for item, key in zip(items, keys)))
