#!/usr/bin/env bash
# Submit a le_ray sweep to a Ray cluster as a job.
#
#   RAY_ADDRESS=http://127.0.0.1:8265 jobs/submit.sh avazu_sweep_gpu /mnt/shared/le_ray_results [extra args...]
#
# Token authentication: the client needs the cluster's token. Export RAY_AUTH_MODE=token and either
# RAY_AUTH_TOKEN=<token> or RAY_AUTH_TOKEN_PATH=<file> (default file: ~/.ray/auth_token, written by
# `ray get-auth-token --generate` on the machine that created the cluster). Reach a remote dashboard
# through an SSH tunnel (ssh -L 8265:127.0.0.1:8265 head) rather than exposing it.
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${1:?usage: jobs/submit.sh PROFILE ABSOLUTE_RESULTS_DIR [args...]}"
results="${2:?usage: jobs/submit.sh PROFILE ABSOLUTE_RESULTS_DIR [args...]}"
shift 2
case "$results" in
  /*) ;;
  *) echo "results dir must be absolute (the job's working dir is deleted when it ends): $results" >&2; exit 2 ;;
esac
export RAY_AUTH_MODE="${RAY_AUTH_MODE:-token}"
# The job runs from an unpacked copy without .git: hand the commit to the manifest explicitly.
commit="$(git rev-parse HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo -dirty)"
exec ray job submit \
  --address "${RAY_ADDRESS:-http://127.0.0.1:8265}" \
  --runtime-env jobs/runtime_env.yaml \
  -- env LE_RAY_GIT_COMMIT="$commit" python -m le_ray.repeats --profile "$profile" --results-dir "$results" "$@"
