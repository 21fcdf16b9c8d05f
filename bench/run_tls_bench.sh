#!/usr/bin/env bash
# run_tls_bench.sh - TLS echo: corio's `echo_server --tls` against the C epoll + OpenSSL server
# (c_tls_echo_server), side by side, in one run.
#
#   bench/run_tls_bench.sh BUILD_DIR [--rounds N] [--duration S] [--warmup S] [--conns N]
#                          [--size B] [--pipeline K]
#
# Makes a throw-away certificate, then for each round starts each server in turn (A B, B A, ...;
# pinned to core 0 with taskset when there are 2 cores, echo_load --tls on core 1), runs
# `echo_load --tls --server-pid PID --json` against it, and kills it. Prints the medians of msgs/s
# and server CPU ns per message, and corio's ratio to C. Needs the bench build with OpenSSL
# (-DCORIO_BUILD_BENCH=ON; echo_load built with ECHO_LOAD_TLS).
set -euo pipefail
build=${1:?usage: run_tls_bench.sh BUILD_DIR [options]}
shift
rounds=3 duration=3 warmup=1 conns=64 size=64 pipeline=1
while (($#)); do
    case $1 in
    --rounds) rounds=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --conns) conns=$2; shift 2 ;;
    --size) size=$2; shift 2 ;;
    --pipeline) pipeline=$2; shift 2 ;;
    *) echo "run_tls_bench.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$work/key.pem" \
    -out "$work/cert.pem" -days 1 -subj /CN=localhost 2>/dev/null
server_pin=() load_pin=()
if command -v taskset >/dev/null && (($(nproc) >= 2)); then
    server_pin=(taskset -c 0) load_pin=(taskset -c 1)
fi
declare -A binary=([c]="$build/bench/c_tls_echo_server" [corio]="$build/examples/echo_server")
echo "# TLS echo, $conns connections, $size B, $pipeline in flight; $rounds rounds of ${duration}s; $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
for ((round = 1; round <= rounds; ++round)); do
    order=(c corio)
    ((round % 2 == 0)) && order=(corio c)
    for name in "${order[@]}"; do
        "${server_pin[@]}" "${binary[$name]}" --port 0 --tls "$work/cert.pem" "$work/key.pem" >"$work/out" 2>"$work/err" &
        pid=$!
        for _ in $(seq 50); do grep -q listening "$work/out" 2>/dev/null && break; sleep 0.1; done
        port=$(grep -o '[0-9]*$' "$work/out")
        result=$("${load_pin[@]}" "$build/bench/echo_load" --tls --port "$port" --conns "$conns" --size "$size" \
            --pipeline "$pipeline" --duration "$duration" --warmup "$warmup" --server-pid "$pid" --json)
        kill "$pid"; wait "$pid" 2>/dev/null || true
        rate=$(sed 's/.*"msgs_per_sec": \([0-9.]*\).*/\1/' <<<"$result")
        cpu=$(sed 's/.*"server_cpu_ns_per_msg": \([-0-9.]*\).*/\1/' <<<"$result")
        echo "$name $rate $cpu" >>"$work/results"
        echo "round $round $name: $rate msgs/s, $cpu ns CPU/msg"
    done
done
awk '
function median(list, n,   i, j, t) {
    for (i = 2; i <= n; ++i) for (j = i; j > 1 && list[j-1] > list[j]; --j) { t = list[j]; list[j] = list[j-1]; list[j-1] = t }
    return n % 2 ? list[(n+1)/2] : (list[n/2] + list[n/2+1]) / 2
}
{ n[$1]++; rate[$1, n[$1]] = $2; cpu[$1, n[$1]] = $3 }
END {
    for (s in n) { for (i = 1; i <= n[s]; ++i) { r[i] = rate[s, i]; c[i] = cpu[s, i] } mr[s] = median(r, n[s]); mc[s] = median(c, n[s]) }
    printf "| server | msgs/s | x C | server CPU ns/msg | x C |\n| --- | ---: | ---: | ---: | ---: |\n"
    printf "| c_tls_echo_server | %.0f | 1.00 | %.0f | 1.00 |\n", mr["c"], mc["c"]
    printf "| corio echo_server --tls | %.0f | %.2f | %.0f | %.2f |\n", mr["corio"], mr["corio"] / mr["c"], mc["corio"], mc["corio"] / mc["c"]
}' "$work/results"
