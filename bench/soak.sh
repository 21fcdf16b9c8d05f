#!/usr/bin/env bash
# soak.sh - runs corio's echo_server under load for a while and says whether its memory and its
# open fds stayed flat.
#
#   bench/soak.sh [BUILD_DIR] --minutes M [--interval SEC] [--conns N] [--churn-rate R]
#
# Builds nothing: BUILD_DIR (default build) must hold examples/echo_server and bench/echo_load
# (configure with -DCORIO_BUILD_BENCH=ON). For M minutes (a decimal number, at least 0.5) it runs:
#   - echo_server --host 127.0.0.1 --port 0 (the server under test);
#   - echo_load with N connections (default 50), 4 messages of 512 B in flight on each, every
#     echoed byte checked;
#   - a connect/close churn, about R connections a second (default 200): most send a line and
#     read it back before closing, one in ten closes without sending anything.
# Every --interval seconds (default 5) it prints the server's resident memory (VmRSS) and its
# number of open fds (/proc/PID/fd), then a verdict.
#
# "flat" means all of these hold:
#   1. the samples of the first 10% of the run are the warm-up and are not judged (at least one
#      interval); the rest are split in thirds, and at least 6 samples must remain;
#   2. fds: the highest count in the last third is at most the highest in the first third plus 4
#      (the churn's connection in flight, and sockets the server is about to close);
#   3. RSS: the highest value in the last third is at most the highest in the first third plus
#      1 MiB or 2% of it, whichever is more (allocator noise, not a leak that grows with time);
#   4. after the load stops, the server's fd count is back to what it was before the load began
#      within 5 s, exactly;
#   5. echo_load reported no error (no byte differed, no connection was dropped), the churn had
#      no failed connection, and the server is still running at the end.
# Anything else is "growing" (or "failed" for item 5).
#
# Exit status: 0 if flat, 1 if not (or something failed), 2 on a bad command line.
# Run it at low priority next to other work: `nice -n 19 bench/soak.sh build --minutes 30`.
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'; }
fail_usage() { echo "soak.sh: $*" >&2; echo "usage: soak.sh [BUILD_DIR] --minutes M [--interval SEC] [--conns N] [--churn-rate R]" >&2; exit 2; }

build_dir=build
minutes=""
interval=5
conns=50
churn_rate=200
while (($#)); do
    case $1 in
        -h | --help) usage; exit 0 ;;
        --minutes) (($# >= 2)) || fail_usage "--minutes needs a value"; minutes=$2; shift 2 ;;
        --interval) (($# >= 2)) || fail_usage "--interval needs a value"; interval=$2; shift 2 ;;
        --conns) (($# >= 2)) || fail_usage "--conns needs a value"; conns=$2; shift 2 ;;
        --churn-rate) (($# >= 2)) || fail_usage "--churn-rate needs a value"; churn_rate=$2; shift 2 ;;
        -*) fail_usage "unknown option '$1'" ;;
        *) build_dir=$1; shift ;;
    esac
done
[[ -n $minutes ]] || fail_usage "--minutes is required"
[[ $minutes =~ ^[0-9]+(\.[0-9]+)?$ ]] || fail_usage "bad --minutes '$minutes' (a decimal number)"
seconds=$(awk -v m="$minutes" 'BEGIN { printf "%d", m * 60 }')
((seconds >= 30 && seconds <= 7 * 24 * 3600)) || fail_usage "--minutes must be between 0.5 and 10080"
[[ $interval =~ ^[1-9][0-9]*$ ]] || fail_usage "bad --interval '$interval' (whole seconds, at least 1)"
[[ $conns =~ ^[1-9][0-9]*$ ]] && ((conns <= 10000)) || fail_usage "bad --conns '$conns' (1..10000)"
[[ $churn_rate =~ ^[0-9]+$ ]] && ((churn_rate <= 2000)) || fail_usage "bad --churn-rate '$churn_rate' (0..2000)"

server_bin=$build_dir/examples/echo_server
load_bin=$build_dir/bench/echo_load
for binary in "$server_bin" "$load_bin"; do
    [[ -x $binary ]] || { echo "soak.sh: $binary not found: configure with -DCORIO_BUILD_BENCH=ON and build echo_server and echo_load" >&2; exit 2; }
done

work=$(mktemp -d /tmp/corio_soak.XXXXXX)
server_pid="" load_pid="" churn_pid=""
cleanup() {
    # Only the processes this script started, by PID.
    for pid in $churn_pid $load_pid $server_pid; do
        kill "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# ---- the server ---------------------------------------------------------------------------------
mkfifo "$work/server.out"
"$server_bin" --host 127.0.0.1 --port 0 >"$work/server.out" 2>"$work/server.err" &
server_pid=$!
exec 3<"$work/server.out"
if ! read -r -t 10 line <&3 || [[ $line != "listening on 127.0.0.1:"* ]]; then
    echo "soak.sh: echo_server did not start: ${line:-no output}; $(cat "$work/server.err")" >&2
    exit 1
fi
port=${line##*:}
# Keep reading its stdout so that it never blocks on a full pipe.
cat <&3 >/dev/null &
exec 3<&-

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$server_pid/status" 2>/dev/null || echo 0; }
fd_count() { local fds=(/proc/"$server_pid"/fd/*); echo "${#fds[@]}"; }

# The baseline is taken once the server has served one connection (it may open fds of its own
# after it says it listens, such as the spare fd its acceptor keeps for running out of fds).
exec 4<>"/dev/tcp/127.0.0.1/$port"
printf 'hello\n' >&4
read -r -t 5 _ <&4 || { echo "soak.sh: echo_server does not echo" >&2; exit 1; }
exec 4>&-
sleep 0.5
idle_fds=$(fd_count)
idle_rss=$(rss_kib)
echo "soak: echo_server pid $server_pid on port $port; ${minutes} min, a sample every ${interval} s"
echo "soak: load: echo_load --conns $conns --size 512 --pipeline 4; churn: ~${churn_rate} connections/s"
echo "soak: idle before load: rss_kib=$idle_rss fds=$idle_fds"

# ---- the load ------------------------------------------------------------------------------------
"$load_bin" --port "$port" --conns "$conns" --size 512 --pipeline 4 --warmup 0 \
    --duration "$seconds" >"$work/load.out" 2>"$work/load.err" &
load_pid=$!

# Connect/close churn on /dev/tcp (bash built-ins: no process per connection). Batches of 10,
# then a pause that keeps the rate near R/s. Counts what failed in $work/churn.failed.
churn() {
    local end=$((SECONDS + seconds)) made=0 failed=0 reply
    ((churn_rate > 0)) || return 0
    local pause
    pause=$(awk -v r="$churn_rate" 'BEGIN { printf "%.3f", 10 / r }')
    mkfifo "$work/pause"
    exec 5<>"$work/pause" # nobody writes to it: a read with a timeout is a sleep in the shell
    while ((SECONDS < end)); do
        for ((i = 0; i < 10; ++i)); do
            if exec 4<>"/dev/tcp/127.0.0.1/$port" 2>/dev/null; then
                if ((made % 10 != 9)); then
                    if ! { printf 'churn %d\n' "$made" >&4 && read -r -t 5 reply <&4 &&
                        [[ $reply == "churn $made" ]]; }; then
                        failed=$((failed + 1))
                    fi
                fi
                exec 4>&-
            else
                failed=$((failed + 1))
            fi
            made=$((made + 1))
        done
        read -r -t "$pause" -u 5 || true
    done
    echo "$made $failed" >"$work/churn.result"
}
churn &
churn_pid=$!

# ---- sampling ------------------------------------------------------------------------------------
samples_t=() samples_rss=() samples_fds=()
start=$SECONDS
printf '%8s %10s %6s\n' "t_s" "rss_kib" "fds"
while kill -0 "$load_pid" 2>/dev/null && ((SECONDS - start < seconds + 30)); do
    sleep "$interval"
    kill -0 "$load_pid" 2>/dev/null || break # a sample without the load would not be judged fairly
    kill -0 "$server_pid" 2>/dev/null || break
    t=$((SECONDS - start)) rss=$(rss_kib) fds=$(fd_count)
    samples_t+=("$t") samples_rss+=("$rss") samples_fds+=("$fds")
    printf '%8d %10d %6d\n' "$t" "$rss" "$fds"
done

load_status=0
wait "$load_pid" || load_status=$?
load_pid=""
wait "$churn_pid" || true
churn_pid=""

# ---- after the load -----------------------------------------------------------------------------
server_alive=1
kill -0 "$server_pid" 2>/dev/null || server_alive=0
end_fds=-1 end_rss=-1
if ((server_alive)); then
    for ((i = 0; i < 50; ++i)); do
        end_fds=$(fd_count)
        ((end_fds == idle_fds)) && break
        sleep 0.1
    done
    end_rss=$(rss_kib)
fi
echo "soak: after the load: rss_kib=$end_rss fds=$end_fds (idle before: rss_kib=$idle_rss fds=$idle_fds)"
echo "soak: echo_load: $(tail -n 3 "$work/load.out" | tr '\n' ' ') exit status $load_status"
[[ -s $work/load.err ]] && echo "soak: echo_load stderr: $(head -c 500 "$work/load.err")"
read -r churn_made churn_failed <"$work/churn.result" 2>/dev/null || { churn_made=0; churn_failed=0; }
echo "soak: churn: $churn_made connections, $churn_failed failed"

# ---- verdict ------------------------------------------------------------------------------------
verdict=flat
reasons=()
count=${#samples_t[@]}
warm=$((seconds / 10))
((warm >= interval)) || warm=$interval
judged=()
for ((i = 0; i < count; ++i)); do
    ((samples_t[i] > warm)) && judged+=("$i")
done
n=${#judged[@]}
if ((n < 6)); then
    verdict=failed
    reasons+=("only $n samples after the warm-up (need 6): a longer run or a shorter --interval")
else
    third=$((n / 3))
    max_of() { # max_of ARRAY_NAME FIRST LAST (indices into judged)
        local -n values=$1
        local best=0 k
        for ((k = $2; k <= $3; ++k)); do
            ((values[judged[k]] > best)) && best=${values[judged[k]]}
        done
        echo "$best"
    }
    first_fds=$(max_of samples_fds 0 $((third - 1)))
    last_fds=$(max_of samples_fds $((n - third)) $((n - 1)))
    first_rss=$(max_of samples_rss 0 $((third - 1)))
    last_rss=$(max_of samples_rss $((n - third)) $((n - 1)))
    rss_slack=$((first_rss / 50))
    ((rss_slack >= 1024)) || rss_slack=1024
    echo "soak: judged samples: $n after ${warm} s of warm-up; first third max: rss_kib=$first_rss fds=$first_fds; last third max: rss_kib=$last_rss fds=$last_fds"
    if ((last_fds > first_fds + 4)); then
        verdict=growing
        reasons+=("fds grew: $first_fds -> $last_fds (allowed +4)")
    fi
    if ((last_rss > first_rss + rss_slack)); then
        verdict=growing
        reasons+=("RSS grew: $first_rss -> $last_rss KiB (allowed +$rss_slack)")
    fi
fi
if ((server_alive == 0)); then
    verdict=failed
    reasons+=("echo_server died: $(head -c 500 "$work/server.err")")
elif ((end_fds != idle_fds)); then
    [[ $verdict == failed ]] || verdict=growing
    reasons+=("fds after the load: $end_fds, before it: $idle_fds")
fi
if ((load_status != 0)); then
    verdict=failed
    reasons+=("echo_load failed with status $load_status")
fi
if ((churn_failed != 0 || (churn_rate > 0 && churn_made == 0))); then
    verdict=failed
    reasons+=("churn: $churn_failed of $churn_made connections failed")
fi

echo "soak: start rss_kib=${samples_rss[0]:-?} fds=${samples_fds[0]:-?}; end rss_kib=${samples_rss[count - 1]:-?} fds=${samples_fds[count - 1]:-?}"
if [[ $verdict == flat ]]; then
    echo "soak: verdict: flat"
    exit 0
fi
echo "soak: verdict: $verdict"
for reason in "${reasons[@]}"; do
    echo "soak:   $reason"
done
exit 1
