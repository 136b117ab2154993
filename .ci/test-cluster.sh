#!/usr/bin/env bash
# The Redis Cluster run (`npm run test:cluster`): starts the local 3-master cluster if it is not
# up, then runs the hot-path, job and event integration tests with every test app and spawned
# server on the cluster (test/support/env.ts reads TEST_REDIS_CLUSTER_NODES).
#
# Left out, because they stop, pause or flush a private single redis-server of their own (or
# inspect the single Redis directly) and so test nothing new on a cluster: enforcement/durability,
# enforcement/fail-closed, jobs/schedulers. Extra arguments go to vitest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash .ci/redis-cluster.sh start
export TEST_REDIS_CLUSTER_NODES="$(bash .ci/redis-cluster.sh nodes)"
echo "TEST_REDIS_CLUSTER_NODES=$TEST_REDIS_CLUSTER_NODES"
export NODE_ENV=test
exec npx vitest run test/cluster test/enforcement test/jobs test/events \
  --exclude test/enforcement/durability.test.ts \
  --exclude test/enforcement/fail-closed.test.ts \
  --exclude test/jobs/schedulers.test.ts \
  "$@"
