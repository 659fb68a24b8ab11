#!/usr/bin/env bash
# The one command to run on a lent GPU machine, from the repo root, with .whl/ carried (bench/device_wheels.sh):
#
#   bash bench/gpu_run.sh [gpu_check.py options, e.g. --budget 240 or --skip packing]
#
# 1. installs the carried packages into /tmp/site (small wheels with pip, no index, no deps; the stripped Ray and
#    Polars-runtime trees unpacked from their tar.xz), puts /tmp/site and the repo on PYTHONPATH;
# 2. prints what it runs on (package versions, nvidia-smi);
# 3. runs bench/gpu_check.py (~4-5 min; its own budget stops new stages at 5.5 min, its watchdog at 5.8),
#    writing $OUT/gpu_check.json; everything printed also goes to $OUT/gpu_check.log.
# $OUT is set by the device tool; elsewhere it defaults to /tmp/gpu_check_out.
set -uo pipefail
OUT=${OUT:-/tmp/gpu_check_out}
SITE=/tmp/site
mkdir -p "$OUT" "$SITE"
export PYTHONUNBUFFERED=1 RAY_DISABLE_USAGE_STATS=1
export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"

run() {
  local t0=$SECONDS
  echo "== install into $SITE"
  ls .whl/*.whl .whl/*.tar.xz >/dev/null || { echo "no .whl/ folder: build it with bench/device_wheels.sh and carry it"; return 2; }
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl \
    || return 2
  for t in .whl/*.tar.xz; do tar -xJf "$t" -C "$SITE" || return 2; done
  echo "installed in $((SECONDS - t0)) s"
  python3 - <<'EOF'
import importlib, sys
print("python", sys.version.split()[0])
for name in ("torch", "numpy", "ray", "polars", "pydantic", "sklearn", "scipy", "matplotlib"):
    try:  # a package that fails here fails only the stages that need it: report it and go on
        module = importlib.import_module(name)
        print(f"  {name} {module.__version__} from {module.__file__}")
    except Exception as exc:
        print(f"  {name}: IMPORT FAILED: {type(exc).__name__}: {exc}")
import torch
print("  cuda", torch.version.cuda, "available", torch.cuda.is_available())
EOF
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv || true
  echo "== bench/gpu_check.py"
  timeout 400 python3 bench/gpu_check.py --out "$OUT/gpu_check.json" "$@"
}

run "$@" 2>&1 | tee "$OUT/gpu_check.log"
exit "${PIPESTATUS[0]}"
