#!/usr/bin/env bash
# A local 3-master Redis Cluster on loopback for the cluster test run and the benchmark.
#
#   bash .ci/redis-cluster.sh start   # idempotent: a healthy cluster is left as it is
#   bash .ci/redis-cluster.sh stop
#   bash .ci/redis-cluster.sh nodes   # prints the seed list for REDIS_CLUSTER_NODES
#
# Ports REDIS_CLUSTER_PORTS (default 7001 7002 7003), files under REDIS_CLUSTER_DIR (default
# /tmp/llm-redis-cluster/<port>); nothing is persisted. Each node refuses eviction, as the
# service requires of its Redis.
set -euo pipefail
PORTS=(${REDIS_CLUSTER_PORTS:-7001 7002 7003})
DIR="${REDIS_CLUSTER_DIR:-/tmp/llm-redis-cluster}"
cli() { redis-cli -h 127.0.0.1 -p "$1" "${@:2}"; }
up() { [[ "$(cli "$1" ping 2>/dev/null)" == "PONG" ]]; }
healthy() {
  local p
  for p in "${PORTS[@]}"; do
    up "$p" || return 1
    cli "$p" cluster info 2>/dev/null | grep -q '^cluster_state:ok' || return 1
    [[ "$(cli "$p" cluster info | sed -n 's/^cluster_known_nodes:\([0-9]*\).*/\1/p')" == "${#PORTS[@]}" ]] || return 1
  done
}
seeds() { local IFS=,; local s=(); for p in "${PORTS[@]}"; do s+=("127.0.0.1:$p"); done; echo "${s[*]}"; }

case "${1:-start}" in
  start)
    if healthy; then echo "redis cluster already up on ${PORTS[*]}"; exit 0; fi
    for p in "${PORTS[@]}"; do
      if ! up "$p"; then
        mkdir -p "$DIR/$p"
        rm -f "$DIR/$p/nodes.conf"
        redis-server --port "$p" --bind 127.0.0.1 --cluster-enabled yes --cluster-config-file nodes.conf \
          --cluster-node-timeout 5000 --dir "$DIR/$p" --save "" --appendonly no --maxmemory-policy noeviction \
          --daemonize yes --logfile "$DIR/$p/redis.log"
      fi
    done
    for p in "${PORTS[@]}"; do
      for _ in $(seq 50); do up "$p" && break; sleep 0.1; done
      up "$p" || { echo "redis-server on $p did not start (see $DIR/$p/redis.log)" >&2; exit 1; }
    done
    # Nodes that are up but not one healthy cluster (a half-made earlier attempt) start over empty.
    for p in "${PORTS[@]}"; do cli "$p" flushall >/dev/null; cli "$p" cluster reset hard >/dev/null; done
    addrs=(); for p in "${PORTS[@]}"; do addrs+=("127.0.0.1:$p"); done
    redis-cli --cluster create "${addrs[@]}" --cluster-replicas 0 --cluster-yes >/dev/null
    for _ in $(seq 100); do healthy && break; sleep 0.1; done
    healthy || { echo "redis cluster did not become healthy" >&2; for p in "${PORTS[@]}"; do cli "$p" cluster info | head -3; done; exit 1; }
    echo "redis cluster up: $(seeds)"
    ;;
  stop)
    for p in "${PORTS[@]}"; do up "$p" && cli "$p" shutdown nosave >/dev/null 2>&1 || true; done
    echo "redis cluster stopped"
    ;;
  nodes)
    seeds
    ;;
  *)
    echo "usage: $0 start|stop|nodes" >&2
    exit 2
    ;;
esac
