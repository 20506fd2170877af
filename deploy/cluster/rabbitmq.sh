#!/usr/bin/env bash
# A 3-node RabbitMQ cluster on one machine, for trying failover without containers: nodes
# pbr-1, pbr-2, pbr-3 @localhost, AMQP on 127.0.0.1:5681, 5682, 5683, each with its own data
# and log directory under $CLUSTER_DIR (default /tmp/postback-relay-cluster). Needs Debian's
# rabbitmq-server installed (it does not use the machine's own node on 5672).
#
#   deploy/cluster/rabbitmq.sh start       # start the three nodes and join them
#   deploy/cluster/rabbitmq.sh urls        # their AMQP URLs, one per line
#   deploy/cluster/rabbitmq.sh leader Q    # the node leading quorum queue Q (vhost /)
#   deploy/cluster/rabbitmq.sh kill NODE   # SIGKILL one node (1, 2 or 3)
#   deploy/cluster/rabbitmq.sh revive NODE # start it again; it rejoins
#   deploy/cluster/rabbitmq.sh stop        # stop every node and remove the data
set -euo pipefail

DIR=${CLUSTER_DIR:-/tmp/postback-relay-cluster}
BIN=/usr/lib/rabbitmq/bin
NODES=(1 2 3)

name() { echo "pbr-$1@localhost"; }
port() { echo $((5680 + $1)); }

# Runs a RabbitMQ command as the user the packaged node runs as (its Erlang cookie is that
# user's), with the node's environment.
as_rabbit() {
  if [ "$(id -u)" -eq 0 ] && id rabbitmq >/dev/null 2>&1; then
    runuser -u rabbitmq -- env HOME=/var/lib/rabbitmq "$@"
  else
    "$@"
  fi
}

node_env() {
  local n=$1 d="$DIR/$1"
  echo RABBITMQ_NODENAME="$(name "$n")" \
    RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
    RABBITMQ_NODE_PORT="$(port "$n")" \
    RABBITMQ_DIST_PORT=$((25680 + n)) \
    RABBITMQ_CONFIG_FILE="$d/rabbitmq.conf" \
    RABBITMQ_ENABLED_PLUGINS_FILE="$d/enabled_plugins" \
    RABBITMQ_MNESIA_BASE="$d/mnesia" \
    RABBITMQ_LOG_BASE="$d/log" \
    RABBITMQ_PID_FILE="$d/pid"
}

ctl() {
  local n=$1; shift
  # shellcheck disable=SC2046
  as_rabbit env $(node_env "$n") "$BIN/rabbitmqctl" -n "$(name "$n")" "$@"
}

start_node() {
  local n=$1 d="$DIR/$1"
  mkdir -p "$d/mnesia" "$d/log"
  echo "listeners.tcp.default = 127.0.0.1:$(port "$n")" > "$d/rabbitmq.conf"
  echo "[]." > "$d/enabled_plugins"
  if [ "$(id -u)" -eq 0 ] && id rabbitmq >/dev/null 2>&1; then chown -R rabbitmq "$DIR"; fi
  # shellcheck disable=SC2046
  as_rabbit env $(node_env "$n") "$BIN/rabbitmq-server" -detached
  ctl "$n" wait --timeout 120 "$d/pid" >/dev/null
}

case "${1:-}" in
  start)
    mkdir -p "$DIR"
    for n in "${NODES[@]}"; do start_node "$n"; done
    for n in 2 3; do
      ctl "$n" stop_app >/dev/null
      ctl "$n" join_cluster "$(name 1)" >/dev/null
      ctl "$n" start_app >/dev/null
    done
    ctl 1 cluster_status --formatter json | grep -o '"running_nodes":\[[^]]*\]'
    ;;
  urls)
    for n in "${NODES[@]}"; do echo "amqp://guest:guest@127.0.0.1:$(port "$n")/%2f"; done
    ;;
  leader)
    ctl 1 list_queues -q --formatter json name leader 2>/dev/null \
      || for n in "${NODES[@]}"; do ctl "$n" list_queues -q --formatter json name leader 2>/dev/null && break; done
    ;;
  kill)
    kill -9 "$(cat "$DIR/$2/pid")"
    ;;
  revive)
    start_node "$2"
    ;;
  stop)
    for n in "${NODES[@]}"; do
      [ -f "$DIR/$n/pid" ] && kill -9 "$(cat "$DIR/$n/pid")" 2>/dev/null || true
    done
    rm -rf "$DIR"
    ;;
  *)
    sed -n '2,13p' "$0"
    exit 2
    ;;
esac
