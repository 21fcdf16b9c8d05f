#!/usr/bin/env bash
# count_syscalls.sh - system calls per echoed message, per echo server and per system call.
#
#   bench/count_syscalls.sh [BUILD_DIR] [--servers c,c-uring,corio] [--conns N] [--size B]
#                           [--inflight K] [--duration SEC] [--warmup SEC] [--tool perf|strace]
#                           [--syscalls name,...] [--server NAME=PATH ...] [--work DIR] [--no-pin]
#
# Builds nothing: BUILD_DIR (default build-bench) as for run_echo_bench.sh, with the same server
# names (bench/echo_servers.sh: c, c-per-conn, c-uring, corio, corio-epoll, corio-poll,
# corio-uring, asio, corio-t2; default c,c-uring,corio) and the same --server NAME=PATH. The first
# server is the one the others are compared with.
#
# For each server in turn: start it (`--host 127.0.0.1 --port 0`, pinned to core 0), run
# echo_load (pinned to core 1) with N connections (default 1000), B-byte messages (default 64), K
# in flight on each (default 1), --warmup seconds (default 1) and then --duration seconds
# (default 3) measured, and count the server's system calls over the measured window only:
#   perf    (the default when `perf stat -e raw_syscalls:sys_enter true` works): `perf stat -p
#           PID -D -1 --control fd:CTL,ACK -e raw_syscalls:sys_enter -e syscalls:sys_enter_NAME
#           ...`, started before the load with its counters off; echo_load --window-fifo turns them
#           on as its measured window starts and off as it ends, waiting for perf's
#           acknowledgement each time, so the system calls and the messages are counted over the
#           same window. The total is raw_syscalls:sys_enter (every system call); the names are
#           those of a list (recvfrom, sendto, read, write, epoll_wait, epoll_ctl, poll, ppoll,
#           io_uring_enter, accept4, close, futex, ... : see default_syscalls below; --syscalls
#           adds more), and whatever the total has beyond them shows as "(not in the list)". Not
#           every one of the ~360 syscalls:sys_enter_* tracepoints: closing a tracepoint event
#           waits for an RCU grace period (~40 ms here), so perf would take 15 s to exit. A
#           tracepoint costs little, but it costs: the server runs a bit slower.
#   strace  (else, if strace is there): this script answers echo_load's window FIFOs itself,
#           attaching `strace -c -f -p PID` when the window starts and detaching it when it ends.
#           strace stops the server at every system call, so it runs much slower: the counts per
#           message stay valid, but a slower server may batch differently (more events per
#           epoll_wait, more completions per io_uring_enter) than it does at full speed.
# The messages are echo_load's count over the window (every byte verified). Around each edge of
# the window the messages in flight (at most N x K) are counted on one side and their system calls
# perhaps on the other; both edges err the same way, so the error is well under N x K messages out
# of the window's total: keep the window long enough that N x K is small against it.
#
# Prints Markdown: per server the messages, msgs/s, system calls and system calls per message
# (with its ratio to the first server); then system calls per message by name (rows where some
# server makes at least 0.001 per message; the rest are summed in "(others)"). Scratch files and
# the raw counts go to BUILD_DIR/syscall-count (or --work DIR).
#
# Exit status: 0 if every server was counted, 1 if any failed (did not start, died, echo_load
# failed, or the counter did), 2 on a bad command line.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=echo_servers.sh
. "$here/echo_servers.sh"

usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'; }

build_dir="build-bench"
server_list=c,c-uring,corio
conns=1000
size=64
inflight=1
duration=3
warmup=1
tool=""
work=""
pin=1
custom_servers=()
default_syscalls=recvfrom,sendto,recvmsg,sendmsg,read,write,readv,writev,epoll_wait,epoll_pwait
default_syscalls+=,epoll_pwait2,epoll_ctl,poll,ppoll,io_uring_enter,accept,accept4,close,shutdown
default_syscalls+=,futex,mmap,munmap,brk,madvise,sched_yield,nanosleep,clock_nanosleep
default_syscalls+=,rt_sigprocmask,timerfd_settime,getpid
extra_syscalls=""
while (($#)); do
    case $1 in
        -h | --help) usage; exit 0 ;;
        --servers) server_list=${2:?}; shift 2 ;;
        --conns) conns=${2:?}; shift 2 ;;
        --size) size=${2:?}; shift 2 ;;
        --inflight | --pipeline) inflight=${2:?}; shift 2 ;;
        --duration) duration=${2:?}; shift 2 ;;
        --warmup) warmup=${2:?}; shift 2 ;;
        --tool) tool=${2:?}; shift 2 ;;
        --syscalls) extra_syscalls=${2:?}; shift 2 ;;
        --server)
            [[ ${2:-} == ?*=?* ]] || { echo "count_syscalls.sh: --server wants NAME=PATH" >&2; exit 2; }
            custom_servers+=("$2"); shift 2 ;;
        --work) work=${2:?}; shift 2 ;;
        --no-pin) pin=0; shift ;;
        --*) echo "count_syscalls.sh: unknown option $1" >&2; exit 2 ;;
        *) build_dir=$1; shift ;;
    esac
done
for v in conns size inflight; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "count_syscalls.sh: bad --$v '${!v}'" >&2; exit 2; }
done

load=$build_dir/bench/echo_load
[[ -x $load ]] || { echo "count_syscalls.sh: $load not found: build first (see bench/README.md)" >&2; exit 2; }

if [[ -z $tool ]]; then
    if command -v perf >/dev/null && perf stat -e raw_syscalls:sys_enter true >/dev/null 2>&1; then
        tool=perf
    elif command -v strace >/dev/null; then
        tool=strace
        echo "count_syscalls.sh: note: perf cannot count syscall tracepoints here: strace it is" >&2
    else
        echo "count_syscalls.sh: need perf (with syscall tracepoints) or strace" >&2
        exit 2
    fi
fi
case $tool in
    perf | strace) command -v "$tool" >/dev/null || { echo "count_syscalls.sh: no $tool" >&2; exit 2; } ;;
    *) echo "count_syscalls.sh: --tool is perf or strace" >&2; exit 2 ;;
esac

# perf: the total, and a tracepoint for each name in the list that has one.
perf_events=(-e raw_syscalls:sys_enter)
if [[ $tool == perf ]]; then
    for call in $(tr ',' ' ' <<<"$default_syscalls,$extra_syscalls"); do
        if perf list "syscalls:sys_enter_$call" 2>/dev/null | grep -q "sys_enter_$call "; then
            perf_events+=(-e "syscalls:sys_enter_$call")
        fi
    done
fi

# name|binary|extra arguments|environment
servers=()
for name in $(tr ',' ' ' <<<"$server_list"); do
    path="" extra="" env_set=""
    for entry in "${custom_servers[@]}"; do
        [[ ${entry%%=*} == "$name" ]] && path=${entry#*=}
    done
    if [[ -z $path ]]; then
        spec=$(echo_server_spec "$name" "$build_dir") || {
            echo "count_syscalls.sh: unknown server '$name'" >&2
            exit 2
        }
        IFS='|' read -r path extra env_set _ <<<"$spec"
    fi
    if [[ -x $path ]]; then
        servers+=("$name|$path|$extra|$env_set")
    else
        echo "count_syscalls.sh: note: $path not built: no '$name' server" >&2
    fi
done
((${#servers[@]})) || { echo "count_syscalls.sh: no server to run" >&2; exit 2; }

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
cores=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)
server_pin=() load_pin=()
if ((pin)) && command -v taskset >/dev/null && ((cores >= 2)); then
    server_pin=(taskset -c 0)
    load_pin=(taskset -c 1) # the counter (perf or strace) runs there too
else
    echo "count_syscalls.sh: note: not pinning (need taskset and 2 cores)" >&2
fi

work=${work:-$build_dir/syscall-count}
mkdir -p "$work"
ctl_fifo=$work/window.ctl
ack_fifo=$work/window.ack
rm -f "$ctl_fifo" "$ack_fifo"
mkfifo "$ctl_fifo" "$ack_fifo"
# Held open read-write here, so that nobody's open() of them waits and they never see EOF.
exec {ctl_fd}<>"$ctl_fifo" {ack_fd}<>"$ack_fifo"

server_pid="" counter_pid=""
stop_pid() { # stop_pid PID SIGNAL [SECONDS]: signal, wait up to SECONDS (5), then SIGKILL
    local pid=$1 sig=$2 seconds=${3:-5} i
    kill "-$sig" "$pid" 2>/dev/null || true
    for ((i = 0; i < seconds * 100; ++i)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.01
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "count_syscalls.sh: process $pid ignored SIG$sig: SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    [[ -n $counter_pid ]] && stop_pid "$counter_pid" INT 60
    [[ -n $server_pid ]] && stop_pid "$server_pid" TERM
    rm -f "$ctl_fifo" "$ack_fifo"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_server PATH ENV EXTRA...: sets server_pid and server_port; 1 if it does not come up in 5 s.
start_server() {
    local path=$1 env_set=$2
    shift 2
    local env_args=(-u CORIO_BACKEND) i
    [[ -n $env_set ]] && env_args+=("$env_set")
    : >"$work/server.out"
    "${server_pin[@]}" env "${env_args[@]}" "$path" --host 127.0.0.1 --port 0 "$@" \
        >"$work/server.out" 2>"$work/server.err" {ctl_fd}>&- {ack_fd}>&- &
    server_pid=$!
    server_port=""
    for ((i = 0; i < 500; ++i)); do
        server_port=$(sed -n 's/^listening on .*:\([0-9][0-9]*\)$/\1/p' "$work/server.out")
        [[ -n $server_port ]] && return 0
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.01
    done
    echo "count_syscalls.sh: $path did not print 'listening on' ($(head -c 300 "$work/server.err"))" >&2
    stop_pid "$server_pid" TERM
    server_pid=""
    return 1
}

# The strace counter: answers the window FIFOs, with strace attached in between. Runs in the
# background; writes "NAME COUNT" lines to $1.
strace_window() {
    local out=$1 raw=$1.strace cmd spid="" i threads
    while read -r cmd <&"$ctl_fd"; do
        case $cmd in
            enable)
                "${load_pin[@]}" strace -c -f -o "$raw" -p "$server_pid" 2>"$raw.err" &
                spid=$!
                threads=$(find "/proc/$server_pid/task" -mindepth 1 -maxdepth 1 | wc -l)
                for ((i = 0; i < 1000; ++i)); do # until every thread is attached (10 s at most)
                    (($(grep -c 'attached' "$raw.err" 2>/dev/null || true) >= threads)) && break
                    sleep 0.01
                done
                printf 'ack\n' >&"$ack_fd"
                ;;
            disable)
                if [[ -n $spid ]]; then
                    # SIGTERM: a background job ignores SIGINT, and so does strace then. strace
                    # detaches, writes its summary and dies of the signal: status 143.
                    kill -TERM "$spid" 2>/dev/null || true
                    wait "$spid" 2>/dev/null || true
                fi
                printf 'ack\n' >&"$ack_fd"
                break
                ;;
        esac
    done
    # % time, seconds, usecs/call, calls, [errors,] syscall: the calls are field 4.
    awk '$4 ~ /^[0-9]+$/ && $NF != "total" && $NF != "syscall" { print $NF, $4 }' "$raw" >"$out"
}

json_field() { sed -n "s/.*\"$1\": \([-0-9.e+]*\).*/\1/p"; }

echo "# system calls per echoed message, $(date -u '+%Y-%m-%d %H:%M UTC')"
echo
echo "machine: ${cores} cores, $(uname -sr); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "scenario: ${conns} connections, ${size} B messages, ${inflight} in flight on each; ${warmup} s warm-up + ${duration} s counted; counter: ${tool}; pinning: server ${server_pin[*]:-none}, load ${load_pin[*]:-none}"
echo

failures=0
: >"$work/summary.tsv" # name msgs msgs_per_sec total
for server in "${servers[@]}"; do
    IFS='|' read -r name path extra env_set <<<"$server"
    printf '%-12s ... ' "$name" >&2
    counts=$work/$name.counts
    rm -f "$counts" "$counts.perf" "$counts.strace"
    # Nothing left in the FIFOs from a failed run before.
    while read -r -t 0.01 -u "$ctl_fd" _; do :; done
    while read -r -t 0.01 -u "$ack_fd" _; do :; done
    # shellcheck disable=SC2086 # extra: words on purpose
    if ! start_server "$path" "$env_set" $extra; then
        failures=$((failures + 1))
        echo "FAILED (start)" >&2
        continue
    fi
    if [[ $tool == perf ]]; then
        "${load_pin[@]}" perf stat -x, -o "$counts.perf" -D -1 --control "fd:$ctl_fd,$ack_fd" \
            "${perf_events[@]}" -p "$server_pid" 2>"$work/perf.err" &
    else
        strace_window "$counts" &
    fi
    counter_pid=$!
    status=0
    "${load_pin[@]}" "$load" --host 127.0.0.1 --port "$server_port" --conns "$conns" \
        --size "$size" --pipeline "$inflight" --duration "$duration" --warmup "$warmup" \
        --json --window-fifo "$ctl_fifo,$ack_fifo" >"$work/load.out" 2>"$work/load.err" \
        {ctl_fd}>&- {ack_fd}>&- || status=$?
    if ! kill -0 "$server_pid" 2>/dev/null; then
        echo "count_syscalls.sh: the $name server died during the run" >&2
        status=1
    fi
    if [[ $tool == perf ]]; then
        stop_pid "$counter_pid" INT 60 # it closes its events one RCU grace period at a time
    else
        wait "$counter_pid" 2>/dev/null || status=1
    fi
    counter_pid=""
    stop_pid "$server_pid" TERM
    server_pid=""
    if [[ $tool == perf && -s $counts.perf ]]; then
        # CSV: count,unit,event,...; "raw_syscalls:sys_enter" is the total.
        awk -F, '$1 ~ /^[0-9]+$/ {
                    ev = $3
                    if (ev == "raw_syscalls:sys_enter") { print "(all)", $1; next }
                    sub(/^syscalls:sys_enter_/, "", ev)
                    if ($1 > 0) print ev, $1
                 }' "$counts.perf" >"$counts"
    fi
    if ((status != 0)) || [[ ! -s $counts ]]; then
        failures=$((failures + 1))
        echo "FAILED" >&2
        sed 's/^/    /' "$work/load.err" >&2
        [[ $tool == perf ]] && sed 's/^/    /' "$work/perf.err" >&2
        continue
    fi
    json=$(tail -n 1 "$work/load.out")
    msgs=$(json_field msgs <<<"$json")
    rate=$(json_field msgs_per_sec <<<"$json")
    total=$(awk '$1 == "(all)" { all = $2 } $1 != "(all)" { sum += $2 } END { print (all != "" ? all : sum) }' "$counts")
    printf '%s\t%s\t%s\t%s\n' "$name" "$msgs" "$rate" "$total" >>"$work/summary.tsv"
    awk -v m="$msgs" -v t="$total" 'BEGIN { printf "%d msgs, %.3f system calls per message\n", m, t / m }' >&2
    if [[ -s $work/load.err ]]; then sed 's/^/    /' "$work/load.err" >&2; fi
done

[[ -s $work/summary.tsv ]] || { echo "count_syscalls.sh: nothing counted" >&2; exit 1; }

# Per server, then per system call name.
awk -F'\t' -v work="$work" '
    {
        n++; name[n] = $1; msgs[n] = $2; rate[n] = $3; total[n] = $4
        file = work "/" $1 ".counts"
        while ((getline line < file) > 0) {
            split(line, f, " ")
            if (f[1] == "(all)") continue
            per[n, f[1]] = f[2] / $2; named[n] += f[2]
            if (!(f[1] in seen)) { seen[f[1]] = 1; calls[++nc] = f[1] }
        }
        close(file)
        if (total[n] > named[n]) {
            per[n, "(not in the list)"] = (total[n] - named[n]) / $2
            if (!("(not in the list)" in seen)) { seen["(not in the list)"] = 1; calls[++nc] = "(not in the list)" }
        }
    }
    END {
        print "| server | messages | msgs/s | system calls | per message | × " name[1] " |"
        print "| --- | ---: | ---: | ---: | ---: | ---: |"
        base = total[1] / msgs[1]
        for (i = 1; i <= n; ++i)
            printf "| %s | %d | %.0f | %d | %.3f | %.3f |\n", name[i], msgs[i], rate[i], total[i],
                   total[i] / msgs[i], (base > 0 ? total[i] / msgs[i] / base : 0)
        print ""
        # rows: the calls some server makes at least 0.001 times per message, most frequent first
        for (c = 1; c <= nc; ++c) {
            top[c] = 0
            for (i = 1; i <= n; ++i) if (per[i, calls[c]] > top[c]) top[c] = per[i, calls[c]]
        }
        for (c = 2; c <= nc; ++c) {            # insertion sort by top, descending
            k = calls[c]; t = top[c]
            for (j = c - 1; j >= 1 && top[j] < t; --j) { calls[j + 1] = calls[j]; top[j + 1] = top[j] }
            calls[j + 1] = k; top[j + 1] = t
        }
        header = "| system call |"; rule = "| --- |"
        for (i = 1; i <= n; ++i) { header = header " " name[i] " |"; rule = rule " ---: |" }
        print "system calls per echoed message:"
        print ""
        print header; print rule
        for (c = 1; c <= nc; ++c) {
            if (top[c] < 0.001) {
                for (i = 1; i <= n; ++i) { others[i] += per[i, calls[c]]; if (per[i, calls[c]] > 0) has_others = 1 }
                continue
            }
            row = "| " calls[c] " |"
            for (i = 1; i <= n; ++i) row = row sprintf(" %s |", per[i, calls[c]] > 0 ? sprintf("%.3f", per[i, calls[c]]) : "-")
            print row
        }
        if (has_others) {
            row = "| (others) |"
            for (i = 1; i <= n; ++i)
                row = row sprintf(" %s |", others[i] >= 0.001 ? sprintf("%.3f", others[i]) : (others[i] > 0 ? "< 0.001" : "-"))
            print row
        }
    }' "$work/summary.tsv"
echo
echo "raw counts: $work/NAME.counts (system call, count over the window)"

if ((failures)); then
    echo "count_syscalls.sh: $failures server(s) failed" >&2
    exit 1
fi
