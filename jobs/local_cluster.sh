#!/usr/bin/env bash
# Start (or stop) a single-node Ray head on this machine for trying jobs/submit.sh locally:
# token authentication on, and every port on the loopback interface (127.0.0.1) only.
#   jobs/local_cluster.sh start   # prints the command to submit with
#   jobs/local_cluster.sh stop
#
# Loopback: `ray start` resolves "127.0.0.1" to the machine's external address unless Ray's
# single-machine switch RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER is off; with it off the node address is
# 127.0.0.1 and the GCS, raylet, object manager, workers, agents, dashboard and the Ray client server
# listen there only (jobs/README.md, "Security", lists each port).
set -euo pipefail
export RAY_AUTH_MODE=token
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
case "${1:-start}" in
  start)
    ray get-auth-token --generate >/dev/null 2>&1 || true
    ray start --head --node-ip-address 127.0.0.1 --port "${GCS_PORT:-6379}" \
      --dashboard-host 127.0.0.1 --dashboard-port "${DASHBOARD_PORT:-8265}" \
      --ray-client-server-port "${CLIENT_PORT:-10001}" --disable-usage-stats
    echo "submit with: RAY_AUTH_MODE=token RAY_ADDRESS=http://127.0.0.1:${DASHBOARD_PORT:-8265} jobs/submit.sh -- --profile quickstart --results-dir \$PWD/results"
    ;;
  stop) ray stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
