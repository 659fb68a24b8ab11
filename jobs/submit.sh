#!/usr/bin/env bash
# Submit a le_ray sweep to a Ray cluster as a job.
#
#   jobs/submit.sh [submit options] -- <le-ray repeats options>
#   jobs/submit.sh --address http://127.0.0.1:8265 -- --profile avazu_sweep_gpu --results-dir /mnt/shared/results
#   jobs/submit.sh --no-wait -- --profile quickstart --results-dir "$PWD/results" --name try-1
#
# Submit options (before --):
#   --address URL       the cluster's dashboard (default $RAY_ADDRESS, else http://127.0.0.1:8265)
#   --no-wait           return once the job is submitted (follow it with `ray job logs -f <id>`)
#   --working-dir DIR   the code to ship (default: this repository, filtered by jobs/runtime_env.yaml)
#   --dry-run           print the `ray job submit` command instead of running it
#   -h, --help          this text
# Everything after -- goes to `python -m le_ray.repeats`; its --results-dir must be absolute (the job's
# working dir is a temporary copy deleted when the job ends).
#
# Token authentication: the client needs the cluster's token. RAY_AUTH_MODE=token is exported here;
# provide RAY_AUTH_TOKEN=<token> or RAY_AUTH_TOKEN_PATH=<file> (default file: ~/.ray/auth_token, written
# by `ray get-auth-token --generate` on the machine that created the cluster). Reach a remote dashboard
# through an SSH tunnel (ssh -L 8265:127.0.0.1:8265 head) rather than exposing it.
set -euo pipefail
cd "$(dirname "$0")/.."
usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; }
address="${RAY_ADDRESS:-http://127.0.0.1:8265}"
wait_flag=() working_dir=() dry_run=0
while [ $# -gt 0 ]; do
  case "$1" in
    --address) address="${2:?--address needs a URL}"; shift 2 ;;
    --address=*) address="${1#--address=}"; shift ;;
    --no-wait) wait_flag=(--no-wait); shift ;;
    --working-dir) working_dir=(--working-dir "${2:?--working-dir needs a folder}"); shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    *) echo "jobs/submit.sh: unknown option $1 (le_ray options go after --; see --help)" >&2; exit 2 ;;
  esac
done
if [ $# -eq 0 ]; then echo "jobs/submit.sh: nothing after --: give le_ray's options, e.g. -- --profile quickstart --results-dir /abs/results" >&2; exit 2; fi
export RAY_AUTH_MODE="${RAY_AUTH_MODE:-token}"
# The job runs from an unpacked copy without .git: hand the commit to the manifest explicitly.
# Uncommitted code (edited tracked files, new files in le_ray/): -dirty-<8 hex of a SHA-256 of it>, the form
# le_ray/version.py records in a checkout.
commit="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
if git rev-parse HEAD >/dev/null 2>&1; then
  untracked="$(git ls-files --others --exclude-standard -- le_ray)"
  if ! git diff HEAD --quiet || [ -n "$untracked" ]; then
    commit="$commit-dirty-$({ git diff HEAD --no-ext-diff --binary; printf '%s\n' "$untracked";
      [ -z "$untracked" ] || printf '%s\n' "$untracked" | xargs -d '\n' cat; } | sha256sum | cut -c1-8)"
  fi
fi
cmd=(ray job submit --address "$address" --runtime-env jobs/runtime_env.yaml ${wait_flag[@]+"${wait_flag[@]}"}
     ${working_dir[@]+"${working_dir[@]}"} -- env LE_RAY_GIT_COMMIT="$commit" python -m le_ray.repeats "$@")
if [ "$dry_run" = 1 ]; then printf '%q ' "${cmd[@]}"; echo; exit 0; fi
exec "${cmd[@]}"
