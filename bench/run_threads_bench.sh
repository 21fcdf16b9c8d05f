#!/usr/bin/env bash
# run_threads_bench.sh - echo_server on 1 thread against echo_server --threads 2, side by side.
#
#   bench/run_threads_bench.sh [BUILD_DIR] [options of run_echo_bench.sh]
#
# Runs bench/run_echo_bench.sh twice with --servers corio,corio-t2 (the 1-thread server is the
# baseline of the ratios):
#   1. unpinned (--no-pin): the servers and the load generator float over every core. Only here
#      can --threads 2 use a second core, but on a 2-core machine it takes that core from the load
#      generator (echo_load, one thread): the ratio is what a server gains when its clients live
#      on the same machine, not what it gains on a dedicated 2-core box.
#   2. pinned as usual: server on core 0, load on core 1. Both threads of --threads 2 then share
#      core 0: the ratio is the cost of a second Scheduler with no second core to run it.
# Scenarios: 64c-64B, 1000c-64B and 64c-16KiB-x4 by default (a single connection is served by
# one thread whatever the count); --scenarios changes them.
set -euo pipefail

here=$(dirname "${BASH_SOURCE[0]}")
args=("$@")
scenarios=(--scenarios 64c-64B,1000c-64B,64c-16KiB-x4)
for arg in "$@"; do
    if [[ $arg == --scenarios ]]; then scenarios=(); fi
done

echo "## 1 vs 2 threads, unpinned (server and load generator share all $(getconf _NPROCESSORS_ONLN) cores)"
echo
"$here/run_echo_bench.sh" "${args[@]}" "${scenarios[@]}" --servers corio,corio-t2 --no-pin
echo
echo "## 1 vs 2 threads, pinned (server on core 0, load on core 1: both threads of corio-t2 on core 0)"
echo
"$here/run_echo_bench.sh" "${args[@]}" "${scenarios[@]}" --servers corio,corio-t2
