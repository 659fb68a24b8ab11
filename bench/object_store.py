"""Bytes a CTR sweep puts into Ray's object store, against the prepared arrays' ``nbytes`` (target ≤ 1.05×).

    python bench/object_store.py [--profile avazu_sample] [--set KEY=VALUE ...]

Prepares the data as ``le-ray repeats`` does (default: the shipped Avazu sample through the ``avazu_sample``
profile), ``ray.put``s it once on a local instance, and reads the object's size back from Ray; also prints
the pickle size and, for comparison, what the earlier design shipped (the arrays plus the whole pre-split
CTR source: encoded rows and Polars frames).
"""

from __future__ import annotations

import argparse
import pickle
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from le_ray.config import load_config  # noqa: E402
from le_ray.data.prepare import prepare_with_source  # noqa: E402
from le_ray.sweep.driver import connect_ray  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="avazu_sample")
    parser.add_argument("--set", dest="sets", action="append", default=[])
    args = parser.parse_args(argv)
    import ray

    cfg = load_config(profile=args.profile, sets=[*args.sets, "ray.num_cpus=1", "ray.include_dashboard=false"])
    data, source = prepare_with_source(cfg)
    connect_ray(cfg)
    try:
        ref = ray.put(data)
        stored = ray.experimental.get_object_locations([ref])[ref]["object_size"]
    finally:
        ray.shutdown()
    pickled = len(pickle.dumps(data, protocol=5))
    earlier = pickled + (len(pickle.dumps(source, protocol=5)) if source is not None else 0)
    print(f"{args.profile}: {len(data.train):,} train / {len(data.eval):,} eval rows, {data.num_conditions} conditions")
    print(f"arrays nbytes        {data.nbytes:>14,}")
    print(f"object store bytes   {stored:>14,}  ({stored / data.nbytes:.3f} x nbytes; target <= 1.05)")
    print(f"pickle (protocol 5)  {pickled:>14,}  ({pickled / data.nbytes:.3f} x)")
    print(f"earlier design       {earlier:>14,}  ({earlier / data.nbytes:.3f} x; arrays + the pre-split CTR source)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
