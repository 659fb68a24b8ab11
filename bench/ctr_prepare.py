"""Benchmark: le_ray's Polars CTR pipeline vs a chunked-pandas reader on an Avazu-shaped file.

Generates ``bench/_work/avazu_<rows>.csv`` (default 10,000,000 rows) by resampling the rows of the
real Avazu sample (``$LE_RAY_SAMPLE_DATA`` or ``<repo>/../shared/data``) with new ``id`` values and
a heavy-tailed ``device_ip`` pool (about one address per 6 rows, like the Kaggle file), then runs
the ``avazu_top10_by_count`` profile through :func:`le_ray.data.ctr.load_ctr` and the earlier
system's approach (``pd.read_csv(chunksize=...)`` accumulating ``value_counts`` for the top 10,
a second chunked pass streaming the selected rows to a filtered CSV, which is then loaded and
encoded with pandas) on the same file, plus a tuned pandas reader (needed columns only, no
intermediate file) for reference.

Each path runs in its own process; wall time and peak RSS come from a small measuring process that
waits for it and reads ``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss``, so one path's memory
never shows up in another's figure. Usage::

    python bench/ctr_prepare.py                 # 10M rows, all paths
    python bench/ctr_prepare.py --rows 2000000 --skip-pandas
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "bench" / "_work"
PATHS = ("polars", "polars_cache_cold", "polars_cache_warm", "pandas", "pandas_tuned")


def sample_csv() -> Path:
    """The real Avazu sample that generated rows are drawn from."""
    base = Path(os.environ.get("LE_RAY_SAMPLE_DATA", REPO.parent / "shared" / "data"))
    path = base / "avazu" / "avazu_sample.csv"
    if not path.is_file():
        sys.exit(f"Avazu sample not found at {path}; set LE_RAY_SAMPLE_DATA")
    return path


def generate(rows: int, out: Path, seed: int = 0, chunk: int = 1_000_000) -> None:
    """Write ``rows`` resampled Avazu rows to ``out`` (vectorised, chunk by chunk, then renamed)."""
    import polars as pl

    base = pl.read_csv(sample_csv(), infer_schema=False)
    rng = np.random.default_rng(seed)
    ip_pool = max(1, rows // 6)
    tmp = out.with_suffix(".partial")
    with open(tmp, "wb") as fh:
        for start in range(0, rows, chunk):
            n = min(chunk, rows - start)
            part = base[rng.integers(0, base.height, n)]
            ids = pl.Series(rng.integers(0, 2**64 - 1, n, dtype=np.uint64, endpoint=True)).cast(pl.String)
            ip = (ip_pool * rng.random(n) ** 3).astype(np.int64)          # heavy-tailed popularity
            part = part.with_columns(id=ids, device_ip=pl.lit("i") + pl.Series(ip).cast(pl.String))
            part.write_csv(fh, include_header=start == 0)
    tmp.replace(out)
    out.with_suffix(".json").write_text(json.dumps({"rows": rows, "seed": seed}))


def ensure_data(rows: int, regen: bool) -> Path:
    WORK.mkdir(parents=True, exist_ok=True)
    out = WORK / f"avazu_{rows}.csv"
    meta = out.with_suffix(".json")
    if regen or not out.is_file() or not meta.is_file() or json.loads(meta.read_text())["rows"] != rows:
        t = time.perf_counter()
        generate(rows, out)
        print(f"generated {out} ({out.stat().st_size / 1e9:.2f} GB) in {time.perf_counter() - t:.1f} s")
    return out


# ----------------------------------------------------------------------------------- workers

def run_polars(path: Path, cache: str | None) -> dict:
    from le_ray.config import load_config
    from le_ray.data.ctr import load_ctr

    sets = [f"ctr.datasets.avazu.train_path={json.dumps(str(path))}", "ctr.datasets.avazu.test_path=null"]
    if cache:
        sets += ["ctr.datasets.avazu.filter.cache.enabled=true",
                 f"ctr.datasets.avazu.filter.cache.dir={json.dumps(str(WORK / 'cache'))}",
                 f"ctr.datasets.avazu.filter.cache.overwrite={json.dumps(cache == 'cold')}"]
    src = load_ctr(load_config(profile="avazu_top10_by_count", sets=sets))
    return {"kept": src.kept_rows, "selected": sorted(v for v in src.condition_values),
            "x_cat": list(src.train_rows.x_cat.shape), "stages": {k: round(v, 2) for k, v in src.timings.items()}}


PANDAS_CATS = ["C1", "hour", "banner_pos", "device_type", "device_conn_type", "site_id", "site_domain", "app_id",
               "app_domain", "app_category", "device_id", "device_model", "C15", "C16", "C17", "C18", "C19", "C20",
               "C21"]


def _pandas_top(chunks) -> list:
    counts = None
    for chunk in chunks:
        vc = chunk["C14"].value_counts()
        counts = vc if counts is None else counts.add(vc, fill_value=0)
    ranked = counts.rename("n").reset_index().sort_values(["n", "C14"], ascending=[False, True])
    return ranked["C14"].head(10).tolist()


def run_pandas(path: Path, chunksize: int = 1_000_000) -> dict:
    """The earlier system's approach as its architecture describes it: plain chunked reads, the
    filtered rows streamed to a filtered CSV (its filter cache), that CSV loaded, then pandas encoding."""
    import pandas as pd

    top = _pandas_top(pd.read_csv(path, chunksize=chunksize))
    filtered = WORK / "pandas_filtered.csv"
    with open(filtered, "w") as fh:
        for i, chunk in enumerate(pd.read_csv(path, chunksize=chunksize)):
            chunk[chunk["C14"].isin(top)].to_csv(fh, header=i == 0, index=False)
    df = pd.read_csv(filtered)
    filtered.unlink()
    return _pandas_encode(df, top)


def run_pandas_tuned(path: Path, chunksize: int = 1_000_000) -> dict:
    """A tuned pandas reader: only the needed columns, no intermediate file, then pandas encoding."""
    import pandas as pd

    top = _pandas_top(pd.read_csv(path, usecols=["C14"], chunksize=chunksize))
    usecols = ["click", "C14", "device_ip", *PANDAS_CATS]
    parts = [c[c["C14"].isin(top)] for c in pd.read_csv(path, usecols=usecols, chunksize=chunksize)]
    return _pandas_encode(pd.concat(parts, ignore_index=True), top)


def _pandas_encode(df, top: list) -> dict:
    import pandas as pd

    cats = PANDAS_CATS
    stamp = pd.to_datetime(df["hour"].astype(str), format="%y%m%d%H")
    df["hour"], df["wd"] = stamp.dt.hour, stamp.dt.dayofweek
    df["wd_hour"] = df["wd"] * 24 + df["hour"]
    x_num = np.stack([df[c].map(df[c].value_counts()).clip(upper=8).to_numpy(np.float32)
                      for c in ("device_ip", "device_id")], axis=1)
    codes = []
    for col in cats + ["wd", "wd_hour"]:
        vocab = df[col].value_counts().index[:1000]
        mapping = pd.Series(np.arange(len(vocab)), index=vocab)
        codes.append(df[col].map(mapping).fillna(len(vocab)).to_numpy(np.int32))
    x_cat = np.stack(codes, axis=1)
    cond = df["C14"].map(pd.Series(np.arange(len(top)), index=top)).to_numpy(np.int32)
    y = df["click"].to_numpy(np.float32)
    assert len(x_num) == len(x_cat) == len(cond) == len(y)
    return {"kept": len(df), "selected": sorted(str(v) for v in top), "x_cat": list(x_cat.shape)}


def worker(name: str, path: Path) -> None:
    start = time.perf_counter()
    if name == "pandas":
        out = run_pandas(path)
    elif name == "pandas_tuned":
        out = run_pandas_tuned(path)
    else:
        out = run_polars(path, {"polars": None, "polars_cache_cold": "cold", "polars_cache_warm": "warm"}[name])
    out["inner_s"] = round(time.perf_counter() - start, 2)
    print(json.dumps(out))


def measure(name: str, path: Path) -> None:
    """Run one worker as a child; report its wall time and peak RSS (RUSAGE_CHILDREN)."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--worker", name, str(path)], capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode:
        sys.exit(f"{name} failed:\n{proc.stderr[-4000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    out.update(wall_s=round(wall, 2), cpu_s=round(usage.ru_utime + usage.ru_stime, 2),
               peak_rss_mb=round(usage.ru_maxrss / 1024))
    print(json.dumps(out))


def run_measured(name: str, path: Path) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--measure", name, str(path)], capture_output=True, text=True,
                          cwd=REPO)
    if proc.returncode:
        sys.exit(proc.stderr[-4000:] or proc.stdout[-4000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--regen", action="store_true", help="regenerate the CSV even if it exists")
    parser.add_argument("--skip-pandas", action="store_true")
    parser.add_argument("--paths", default=",".join(PATHS), help=f"comma-separated subset of {', '.join(PATHS)}")
    parser.add_argument("--worker", nargs=2, metavar=("PATH_NAME", "CSV"), help=argparse.SUPPRESS)
    parser.add_argument("--measure", nargs=2, metavar=("PATH_NAME", "CSV"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker[0], Path(args.worker[1]))
    if args.measure:
        return measure(args.measure[0], Path(args.measure[1]))
    data = ensure_data(args.rows, args.regen)
    chosen = [p for p in args.paths.split(",") if p and not (args.skip_pandas and p == "pandas")]
    unknown = sorted(set(chosen) - set(PATHS))
    if unknown:
        parser.error(f"--paths: unknown {unknown}; expected a subset of {', '.join(PATHS)}")
    results = {name: run_measured(name, data) for name in chosen}
    print_table(args.rows, data, results)


def print_table(rows: int, data: Path, results: dict) -> None:
    size = data.stat().st_size / 1e9
    print(f"\n{rows:,} rows, {size:.2f} GB CSV, profile avazu_top10_by_count, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'path':<20}{'wall s':>9}{'inner s':>9}{'CPU s':>9}{'peak RSS MB':>13}{'kept rows':>12}")
    for name, r in results.items():
        print(f"{name:<20}{r['wall_s']:>9.1f}{r['inner_s']:>9.1f}{r['cpu_s']:>9.1f}{r['peak_rss_mb']:>13,}"
              f"{r['kept']:>12,}")
    for base in ("pandas", "pandas_tuned"):
        if base in results and "polars" in results:
            p, q = results[base], results["polars"]
            print(f"speed-up polars vs {base}: wall {p['wall_s'] / q['wall_s']:.1f}x, CPU {p['cpu_s'] / q['cpu_s']:.1f}x; "
                  f"same selection: {p['selected'] == q['selected']}; same kept rows: {p['kept'] == q['kept']}")
    for name, r in results.items():
        if "stages" in r:
            print(f"{name} stages (s): {r['stages']}")


if __name__ == "__main__":
    main()
