#!/usr/bin/env bash
# run_echo_bench.sh - echo servers side by side: the C limits (epoll and io_uring), corio's
# echo_server, and Asio's.
#
#   bench/run_echo_bench.sh [BUILD_DIR] [--rounds N] [--duration SEC] [--warmup SEC] [--long]
#                           [--scenarios a,b,...] [--servers c,c-uring,corio,asio,...] [--no-pin]
#                           [--server NAME=PATH ...] [--work DIR] [--alternate]
#
# Builds nothing: BUILD_DIR (default build-bench) must hold bench/echo_load, bench/c_echo_server,
# examples/echo_server and, optionally, bench/c_uring_echo_server (built when liburing is found)
# and bench/asio_echo_server (when Asio is found; see bench/README.md).
#
# Servers (the names are defined in bench/echo_servers.sh, shared with count_syscalls.sh):
#   c            bench/c_echo_server, the epoll limit (one shared 64 KiB read buffer)
#   c-uring      bench/c_uring_echo_server, the io_uring limit
#   corio        examples/echo_server with CORIO_BACKEND unset: the library's default backend
#   asio         bench/asio_echo_server
# and, only when --servers names them:
#   c-per-conn   c_echo_server --per-conn-buffer (the earlier baseline: 16 KiB per connection)
#   corio-epoll, corio-poll, corio-uring
#                examples/echo_server with CORIO_BACKEND=epoll, poll or io_uring in its
#                environment (every server starts with CORIO_BACKEND removed, then these set)
#   corio-t2     examples/echo_server --threads 2
# A server whose binary is not built is left out with a note.
#
# For every scenario it runs every server in turn, A B C A B C ..., for --rounds rounds (default
# 3): a fresh server each run, started with `--host 127.0.0.1 --port 0` and pinned to core 0; the
# load generator (echo_load) pinned to core 1. echo_load connects everything, warms up, measures
# for --duration seconds, checks every echoed byte, and reads the server's CPU time (user +
# system: /proc/PID/task/*/schedstat at ns resolution, else utime+stime from /proc/PID/stat) at
# the start and the end of the measured window. The table gives
# per scenario and server the median over the rounds of msgs/s and of server CPU time per message,
# each with its ratio to the baseline (the first server: c unless --servers says otherwise), and
# the median p50/p99 latency. By default the servers are c, c-uring, corio and asio, in that
# order.
#
# corio-t2 is echo_server --threads 2 (two Schedulers on two threads, SO_REUSEPORT listeners); it
# runs only when --servers names it. Pinned, both its threads share core 0: compare it with
# --no-pin too (bench/run_threads_bench.sh does both).
#
# --server NAME=PATH (repeatable) adds a server binary of your own under NAME (its name wins over
# a built-in one), e.g. corio's
# echo_server from another build: `--server corio-before=B/examples/echo_server --server
# corio-after=A/examples/echo_server --servers c,corio-before,corio-after` runs C, before and
# after in turn in every round. Such a server runs with the same `--host --port` arguments, so it
# must take them and print the same `listening on HOST:PORT` line. Without --servers, the servers
# given with --server run after the default ones. --work DIR puts the scratch files and
# results.tsv in DIR instead of BUILD_DIR/echo-bench. --alternate runs the servers in reverse
# order in every even round (A B C, C B A, A B C, ...), so that a slow drift of the machine's
# speed during a scenario does not always favour the same server.
#
# Scenarios: 1c-64B (1 connection, 64 B), 64c-64B, 1000c-64B, 64c-16KiB-x4 (64 connections,
# 16 KiB messages, 4 in flight on each).
#
# Exit status: 0 if every run succeeded, 1 if any failed (a server did not start or died, or
# echo_load reported a mismatch or an early close), 2 on a bad command line.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=echo_servers.sh
. "$here/echo_servers.sh"

usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'; }

build_dir="build-bench"
rounds=3
duration=3
warmup=1
pin=1
scenario_filter=""
server_filter=""
work=""
alternate=0
custom_servers=() # NAME=PATH, from --server
while (($#)); do
    case $1 in
        -h | --help) usage; exit 0 ;;
        --rounds) rounds=${2:?}; shift 2 ;;
        --duration) duration=${2:?}; shift 2 ;;
        --warmup) warmup=${2:?}; shift 2 ;;
        --long) duration=10; warmup=2; rounds=5; shift ;;
        --scenarios) scenario_filter=${2:?}; shift 2 ;;
        --servers) server_filter=${2:?}; shift 2 ;;
        --no-pin) pin=0; shift ;;
        --server)
            [[ ${2:-} == ?*=?* ]] || { echo "run_echo_bench.sh: --server wants NAME=PATH" >&2; exit 2; }
            custom_servers+=("$2"); shift 2 ;;
        --work) work=${2:?}; shift 2 ;;
        --alternate) alternate=1; shift ;;
        --*) echo "run_echo_bench.sh: unknown option $1" >&2; exit 2 ;;
        *) build_dir=$1; shift ;;
    esac
done
[[ $rounds =~ ^[1-9][0-9]*$ ]] || { echo "run_echo_bench.sh: bad --rounds '$rounds'" >&2; exit 2; }

load=$build_dir/bench/echo_load
[[ -x $load ]] || { echo "run_echo_bench.sh: $load not found: build first (see bench/README.md)" >&2; exit 2; }

# name|binary|extra arguments|environment, in the order they run in each round; the first is the
# baseline.
servers=()
add_server() {
    local name=$1 path=$2 extra=${3:-} opt_in=${4:-} env=${5:-}
    if [[ -n $server_filter && ",$server_filter," != *",$name,"* ]]; then return; fi
    if [[ -z $server_filter && -n $opt_in ]]; then return; fi
    if [[ -x $path ]]; then
        servers+=("$name|$path|$extra|$env")
    else
        echo "run_echo_bench.sh: note: $path not built: no '$name' server" >&2
    fi
}
custom_path() { # custom_path NAME: the PATH of --server NAME=PATH, or nothing
    local entry
    for entry in "${custom_servers[@]}"; do
        if [[ ${entry%%=*} == "$1" ]]; then printf '%s' "${entry#*=}"; return; fi
    done
}
default_order=$echo_server_default_order
for entry in "${custom_servers[@]}"; do default_order+=",${entry%%=*}"; done
# --servers gives the order (so that it can pick the baseline); by default c, c-uring, corio,
# asio, then those of --server.
for name in $(tr ',' ' ' <<<"${server_filter:-$default_order}"); do
    if [[ -n $(custom_path "$name") ]]; then
        add_server "$name" "$(custom_path "$name")"
        continue
    fi
    spec=$(echo_server_spec "$name" "$build_dir") || {
        echo "run_echo_bench.sh: unknown server '$name'" >&2
        exit 2
    }
    IFS='|' read -r spec_path spec_extra spec_env spec_opt_in <<<"$spec"
    add_server "$name" "$spec_path" "$spec_extra" "$spec_opt_in" "$spec_env"
done
((${#servers[@]})) || { echo "run_echo_bench.sh: no server to run" >&2; exit 2; }

# name|conns|size|pipeline
scenarios=()
for s in "1c-64B|1|64|1" "64c-64B|64|64|1" "1000c-64B|1000|64|1" "64c-16KiB-x4|64|16384|4"; do
    if [[ -z $scenario_filter || ",$scenario_filter," == *",${s%%|*},"* ]]; then
        scenarios+=("$s")
    fi
done
((${#scenarios[@]})) || { echo "run_echo_bench.sh: no scenario matches '$scenario_filter'" >&2; exit 2; }

# 1000 connections need more than the usual 1024 fds, in the servers as well.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

cores=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)
server_pin=() load_pin=()
if ((pin)) && command -v taskset >/dev/null && ((cores >= 2)); then
    server_pin=(taskset -c 0)
    load_pin=(taskset -c 1)
else
    echo "run_echo_bench.sh: note: not pinning (need taskset and 2 cores)" >&2
fi

# Scratch files and the raw results (one line per run) stay in the build directory.
work=${work:-$build_dir/echo-bench}
mkdir -p "$work"
results=$work/results.tsv
server_pid=""
cleanup() {
    if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Starts a server (path, environment VAR=VALUE or "", then extra arguments) with CORIO_BACKEND
# removed from its environment and then the given variable set; sets server_pid and server_port.
# Returns 1 if it does not come up in 5 s. taskset and env exec: server_pid is the server's.
start_server() {
    local path=$1 env_set=$2
    shift 2
    local env_args=(-u CORIO_BACKEND)
    [[ -n $env_set ]] && env_args+=("$env_set")
    : >"$work/server.out"
    "${server_pin[@]}" env "${env_args[@]}" "$path" --host 127.0.0.1 --port 0 "$@" \
        >"$work/server.out" 2>"$work/server.err" &
    server_pid=$!
    server_port=""
    local i
    for ((i = 0; i < 500; ++i)); do
        server_port=$(sed -n 's/^listening on .*:\([0-9][0-9]*\)$/\1/p' "$work/server.out")
        [[ -n $server_port ]] && return 0
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.01
    done
    echo "run_echo_bench.sh: $path did not print 'listening on' ($(head -c 300 "$work/server.err"))" >&2
    stop_server
    return 1
}

# Stops the server by its PID: SIGTERM, then SIGKILL after 5 s.
stop_server() {
    [[ -n $server_pid ]] || return 0
    kill -TERM "$server_pid" 2>/dev/null || true
    local i
    for ((i = 0; i < 500; ++i)); do
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.01
    done
    if kill -0 "$server_pid" 2>/dev/null; then
        echo "run_echo_bench.sh: server $server_pid ignored SIGTERM: SIGKILL" >&2
        kill -KILL "$server_pid" 2>/dev/null || true
    fi
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
}

json_field() { # json_field NAME < one-line JSON
    sed -n "s/.*\"$1\": \([-0-9.e+]*\).*/\1/p"
}
json_field_str() {
    sed -n "s/.*\"$1\": \"\([^\"]*\)\".*/\1/p"
}

host_cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo 2>/dev/null | head -n 1)
echo "# corio echo benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
echo
echo "machine: ${cores} cores (${host_cpu:-unknown CPU}), $(uname -sr); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "pinning: server ${server_pin[*]:-none}, load ${load_pin[*]:-none}; ${rounds} rounds, ${warmup} s warm-up + ${duration} s measured per run$( ((alternate)) && echo "; order reversed in even rounds")"
echo

failures=0
printf 'scenario\tserver\tround\tmsgs_per_sec\tcpu_ns_per_msg\tp50_us\tp99_us\n' >"$results"
for scenario in "${scenarios[@]}"; do
    IFS='|' read -r sname conns size pipeline <<<"$scenario"
    for ((round = 1; round <= rounds; ++round)); do
        order=("${servers[@]}")
        if ((alternate && round % 2 == 0)); then
            order=()
            for ((i = ${#servers[@]} - 1; i >= 0; --i)); do order+=("${servers[i]}"); done
        fi
        for server in "${order[@]}"; do
            IFS='|' read -r name path extra env_set <<<"$server"
            printf '%-14s %-11s round %d/%d ... ' "$sname" "$name" "$round" "$rounds" >&2
            # shellcheck disable=SC2086 # extra: words on purpose
            if ! start_server "$path" "$env_set" $extra; then
                failures=$((failures + 1))
                echo "FAILED (start)" >&2
                continue
            fi
            status=0
            "${load_pin[@]}" "$load" --host 127.0.0.1 --port "$server_port" --conns "$conns" \
                --size "$size" --pipeline "$pipeline" --duration "$duration" --warmup "$warmup" \
                --server-pid "$server_pid" --json >"$work/load.out" 2>"$work/load.err" || status=$?
            if ! kill -0 "$server_pid" 2>/dev/null; then
                echo "run_echo_bench.sh: the $name server died during the run" >&2
                status=1
            fi
            stop_server
            if ((status != 0)); then
                failures=$((failures + 1))
                echo "FAILED" >&2
                sed 's/^/    /' "$work/load.err" >&2
                continue
            fi
            json=$(tail -n 1 "$work/load.out")
            rate=$(json_field msgs_per_sec <<<"$json")
            cpu=$(json_field server_cpu_ns_per_msg <<<"$json")
            p50=$(json_field p50_us <<<"$json")
            p99=$(json_field p99_us <<<"$json")
            printf '%s\t%s\t%d\t%s\t%s\t%s\t%s\n' "$sname" "$name" "$round" "$rate" "$cpu" "$p50" \
                "$p99" >>"$results"
            printf '%10.0f msgs/s, %7.0f ns CPU/msg\n' "$rate" "$cpu" >&2
            if [[ -s $work/load.err ]]; then sed 's/^/    /' "$work/load.err" >&2; fi
        done
    done
done

# The table: medians per scenario and server, ratios to the first server (the baseline).
scenario_order=$(printf '%s\n' "${scenarios[@]}" | cut -d'|' -f1 | tr '\n' ' ')
server_order=$(printf '%s\n' "${servers[@]}" | cut -d'|' -f1 | tr '\n' ' ')
awk -F'\t' -v scenarios="$scenario_order" -v servers="$server_order" '
    function median(list,    n, v, i, j, t) {
        n = split(list, v, " ")
        for (i = 2; i <= n; ++i) {          # insertion sort: a handful of values
            t = v[i] + 0
            for (j = i - 1; j >= 1 && v[j] + 0 > t; --j) v[j + 1] = v[j]
            v[j + 1] = t
        }
        if (n == 0) return ""
        return n % 2 ? v[(n + 1) / 2] + 0 : (v[n / 2] + v[n / 2 + 1]) / 2
    }
    function ratio(a, b) { return (a == "" || b == "" || b + 0 == 0) ? "-" : sprintf("%.3f", a / b) }
    NR > 1 {
        key = $1 SUBSEP $2
        rate[key] = rate[key] " " $4
        if ($5 + 0 >= 0) cpu[key] = cpu[key] " " $5
        p50[key] = p50[key] " " $6
        p99[key] = p99[key] " " $7
        runs[key]++
    }
    END {
        ns = split(scenarios, sc, " "); nv = split(servers, sv, " ")
        print "| scenario | server | runs | msgs/s (median) | × " sv[1] " | server CPU ns/msg (median) | × " sv[1] " | p50 µs | p99 µs |"
        print "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
        for (i = 1; i <= ns; ++i) {
            base = sc[i] SUBSEP sv[1]
            base_rate = median(rate[base]); base_cpu = median(cpu[base])
            for (j = 1; j <= nv; ++j) {
                key = sc[i] SUBSEP sv[j]
                if (!(key in runs)) { printf "| %s | %s | 0 | failed | - | - | - | - | - |\n", sc[i], sv[j]; continue }
                r = median(rate[key]); c = median(cpu[key])
                printf "| %s | %s | %d | %.0f | %s | %s | %s | %.1f | %.1f |\n", sc[i], sv[j], runs[key],
                       r, ratio(r, base_rate), (c == "" ? "-" : sprintf("%.0f", c)), ratio(c, base_cpu),
                       median(p50[key]), median(p99[key])
            }
        }
    }' "$results"
echo
echo "server CPU: user+system time of the server process over the measured window (source: $(json_field_str server_cpu_source <"$work/load.out")), divided by the messages echoed in it."
echo "raw results: $results"

if ((failures)); then
    echo "run_echo_bench.sh: $failures run(s) failed" >&2
    exit 1
fi
