"""Fake data and checks shared by the plot tests (tests/test_plots.py, tests/test_sweep_figures.py): one seeded
random generator, the rate and table builders both files draw from, and the PNG render check."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import polars as pl

from le_ray.report import plots as P

DPI = 30  # small renders keep the file fast; the size check scales with it
RNG = np.random.default_rng(0)


def rates(c: int) -> np.ndarray:
    return 10 ** RNG.uniform(-5, -0.5, c)


def delta_table(metrics: int, seeds: int) -> pl.DataFrame:
    return pl.DataFrame({"metric": [f"m{m}" for m in range(metrics) for _ in range(seeds)],
                         "seed": [s for _ in range(metrics) for s in range(seeds)],
                         "delta": RNG.normal(0, 0.01, metrics * seeds)})


def comparison_table(c: int) -> pl.DataFrame:
    return pl.DataFrame({"condition": list(range(c)), "base_rate": rates(c),
                         "calibration_ratio_bce": np.exp(RNG.normal(0, .4, c)),
                         "calibration_ratio_localized_entropy": np.exp(RNG.normal(0, .1, c)),
                         "calibration_ratio_focal": np.exp(RNG.normal(0, .6, c))})


def check_png(path: Path, fig_size, dpi: int = DPI) -> None:
    assert path.is_file() and path.stat().st_size > 0
    img = mpimg.imread(path)
    h, w = img.shape[:2]
    assert abs(w - fig_size[0] * dpi) <= 2 and abs(h - fig_size[1] * dpi) <= 2, (w, h, fig_size)
    assert float(img[..., :3].std()) > 0.01  # not a flat colour
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".tmp-")]


def render(fig, tmp_path: Path, name: str = "plot.png", dpi: int = DPI) -> Path:
    size = tuple(fig.get_size_inches())
    assert 8 <= size[0] <= 12
    path = P.save_figure(fig, tmp_path / name, dpi=dpi)
    check_png(path, size, dpi)
    return path
