#!/usr/bin/env bash
# Build .whl/ — the Python packages the GPU machine's image lacks, for bench/gpu_run.sh (run from the repo root).
#
# The image (Python 3.12, torch, numpy, scipy, scikit-learn, matplotlib, pytest, click, msgpack, protobuf,
# aiohttp, ... see the device notes) has no Ray, Polars or pydantic, and cannot reach a registry. The small
# packages travel as wheels; Ray and the Polars runtime are too big for the 64 MiB a device call may carry,
# so they travel as stripped trees in tar.xz files that gpu_run.sh unpacks into the same site folder:
#   ray:      jars/, rllib/, serve/, llm/, data/, train/, tune/, air/ and the dashboard's web build dropped,
#             symbols stripped from every shared object and from gcs_server / raylet; RECORD dropped
#             (nothing installs or uninstalls this tree; importlib.metadata still finds the version);
#   polars:   the runtime's one shared object stripped (178 MB -> 138 MB), then xz.
# Needs: python3 with pip (any version: wheels are chosen with --python-version), unzip, strip, xz.
# Takes a few minutes (xz -9 of ~200 MB). .whl/ is git-ignored (echo /.whl/ >> .git/info/exclude).
set -euo pipefail
cd "$(dirname "$0")/.."
out=.whl
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo /.whl/ >> .git/info/exclude

platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
           --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
fetch() { python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
          "${platforms[@]}" -d "$1" "${@:2}"; }

# small wheels, carried as they are (versions: the ones the project is developed with)
fetch "$out" pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 \
      typing-extensions==4.16.0 polars==2.1.0 jsonschema==4.26.0 jsonschema-specifications==2025.9.1 \
      referencing==0.37.0 rpds-py==2026.9.1

# the two big ones, stripped
fetch "$work" ray==2.60.0 polars-runtime-32==2.1.0
mkdir -p "$work/ray" "$work/polars"
unzip -q "$work"/ray-2.60.0-*.whl -d "$work/ray"
unzip -q "$work"/polars_runtime_32-2.1.0-*.whl -d "$work/polars"
(cd "$work/ray/ray" && rm -rf jars rllib serve llm data train tune air dashboard/client/build)
rm -f "$work"/ray/ray-*.dist-info/RECORD "$work"/polars/polars_runtime_32-*.dist-info/RECORD
find "$work/ray" "$work/polars" -name '*.so' -exec strip --strip-unneeded {} +
strip --strip-unneeded "$work/ray/ray/core/src/ray/gcs/gcs_server" "$work/ray/ray/core/src/ray/raylet/raylet"
tar -C "$work/ray" -cf - . | xz -9 -T0 > "$out/ray-2.60.0-stripped.tar.xz"
tar -C "$work/polars" -cf - . | xz -9 -T0 > "$out/polars_runtime_32-2.1.0-stripped.tar.xz"
rm -f "$out"/ray-*.whl "$out"/polars_runtime_32-*.whl   # never both a wheel and its stripped tree
du -ch "$out"/* | tail -1
