"""The tuning section of a sweep's report (``le-ray tune``): protocol, best settings, curves and spread.

Reads ``tune/summary.json`` of the sweep folder (written by :mod:`le_ray.runners.tune`); a sweep without it has
no tuning section.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from le_ray.registry import label
from le_ray.report.tables import markdown_table

__all__ = ["load_tuning", "tuning_table", "tuning_markdown", "best_so_far", "ranked_finals", "is_counted", "search_counts",
           "one_sample_note"]


def load_tuning(root: Path) -> dict[str, Any] | None:
    path = Path(root) / "tune" / "summary.json"
    return json.loads(path.read_text()) if path.exists() else None


def one_sample_note(num_samples: int) -> str:
    """What a one-sample search means (``tune.num_samples`` 1), in a sentence: its 'best' config is its only sample,
    so tuning chose nothing; ``""`` for any other number of samples."""
    if num_samples != 1:
        return ""
    return ("with 1 sample per loss (tune.num_samples 1) each loss's 'best' config is just that sample: the search "
            "compared no settings, so tuning decided nothing")


def is_counted(sample: dict[str, Any]) -> bool:
    """Whether a tuning sample counts: it ended without error at a finite metric."""
    final = sample.get("final")
    return sample.get("error") is None and final is not None and math.isfinite(final)


def _ranked(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The counted samples the best was ranked among: those at ``ranked_epochs`` (ASHA), or every counted one (FIFO,
    and records written before ``ranked_epochs`` was stored)."""
    rung = record.get("ranked_epochs")
    return [s for s in record.get("samples") or [] if is_counted(s) and (rung is None or s.get("epochs") == rung)]


def search_counts(record: dict[str, Any]) -> dict[str, int]:
    """What one loss's search spent: samples run, samples that failed (an error, or no finite metric), counted
    samples ASHA stopped before ``ranked_epochs`` (the most epochs a counted sample trained; None when every counted
    sample was ranked), epochs trained by all samples, and how many samples its best was ranked among."""
    samples = record.get("samples") or []
    rung = record.get("ranked_epochs")
    return {"samples": len(samples), "failed": sum(not is_counted(s) for s in samples),
            "stopped": 0 if rung is None else sum(is_counted(s) and s.get("epochs", 0) < rung for s in samples),
            "epochs_trained": sum(s.get("epochs", 0) for s in samples), "ranked": len(_ranked(record)),
            "ranked_epochs": rung}


def ranked_finals(record: dict[str, Any]) -> list[float | None]:
    """Each sample's final metric in the order tried, None for one the search did not rank: under ASHA a sample
    stopped before the loss's ``ranked_epochs`` ends at another budget, which the best is never compared with (its
    value at an early rung can beat every full-length one), so the curve of the best so far leaves it out too."""
    rung = record.get("ranked_epochs")
    return [s.get("final") if rung is None or s.get("epochs") == rung else None for s in record.get("samples", [])]


def best_so_far(finals: list[float | None], higher_is_better: bool) -> list[float]:
    """The best final metric among the first k samples, k = 1..n (NaN until one sample finished)."""
    out, best = [], math.nan
    for value in finals:
        if value is not None and math.isfinite(value) and (math.isnan(best) or
                                                            (value > best if higher_is_better else value < best)):
            best = value
        out.append(best)
    return out


def tuning_table(summary: dict[str, Any]) -> pl.DataFrame:
    """One row per loss: samples, failed, the samples the best was ranked among (and at which epoch), best
    metric, min / median / max of the ranked samples' finals (none for fewer than two: one sample shows no spread,
    and under ASHA often only one trained the most epochs), best settings."""
    rows = []
    for record in summary["losses"]:
        finals = np.array([s["final"] for s in _ranked(record)], dtype=float)
        finals = finals if finals.size >= 2 else np.array([])
        best, counts = record.get("best") or {}, search_counts(record)
        rows.append({"loss": label(record["loss"]), "samples": counts["samples"], "failed": counts["failed"],
                     "ranked": "" if not counts["samples"] else f"{counts['ranked']} at epoch {counts['ranked_epochs']}"
                     if counts["ranked_epochs"] is not None else f"{counts['ranked']} (every finished sample)",
                     f"best {summary['metric']}": best.get("final"),
                     "min": float(finals.min()) if finals.size else None,
                     "median": float(np.median(finals)) if finals.size else None,
                     "max": float(finals.max()) if finals.size else None,
                     "best settings": ", ".join(f"{k} = {v:.4g}" if isinstance(v, float) else f"{k} = {v}"
                                                for k, v in (best.get("config") or {}).items())
                     or ("(no sample finished)" if record.get("space") else "(no space: configured settings)")})
    return pl.DataFrame(rows)


def tuning_markdown(summary: dict[str, Any], plot: Path | None, root: Path) -> list[str]:
    """The section's lines: the honest protocol, the table, the curve plot."""
    lo, hi = summary["seed_range"]
    budget = (summary.get("budget") or {}).get("sentence") or (  # older tune summaries carry no budget record
        f"Each loss was tuned with {summary['num_samples']} samples of its search space, scheduler "
        f"{summary['scheduler']}, scored by validation {summary['metric']} at the last reported epoch.")
    note = one_sample_note(summary["num_samples"])
    if note and note[1:] not in budget:  # a summary written before the note was part of the budget sentence
        budget += f" Note: {note[0].upper()}{note[1:]}."
    lines = ["## Tuning", "",
             f"{budget} The validation split ({summary['validation_rows']:,} rows) was carved from the train split "
             f"(the tuning trials trained on the other {summary['train_rows']:,}); the evaluation split the tests "
             f"below use was never seen while tuning. Tuning seeds were drawn from [{lo}, {hi}); the test seeds "
             f"are {', '.join(map(str, summary['test_seeds']))}. The best settings of each loss were then trained "
             "on the test seeds (next sections).", "", markdown_table(tuning_table(summary)), ""]
    if plot is not None:
        lines += ["The curves: the best validation metric so far, and each sample ranked (a sample ASHA stopped early "
                  "is not drawn: it ended at another budget, which the best is never compared with).", "",
                  f"![tuning curves]({plot.relative_to(root)})", ""]
    return lines
