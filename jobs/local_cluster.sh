#!/usr/bin/env bash
# Start (or stop) a single-node Ray head on this machine with token authentication and the
# dashboard bound to 127.0.0.1, for trying jobs/submit.sh locally.
#   jobs/local_cluster.sh start   # prints the token file to use on the client side
#   jobs/local_cluster.sh stop
set -euo pipefail
export RAY_AUTH_MODE=token
case "${1:-start}" in
  start)
    ray get-auth-token --generate >/dev/null 2>&1 || true
    ray start --head --dashboard-host 127.0.0.1 --dashboard-port "${DASHBOARD_PORT:-8265}" --disable-usage-stats
    echo "submit with: RAY_AUTH_MODE=token RAY_ADDRESS=http://127.0.0.1:${DASHBOARD_PORT:-8265} jobs/submit.sh quickstart \$PWD/results"
    ;;
  stop) ray stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
