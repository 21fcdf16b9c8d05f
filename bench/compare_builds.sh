#!/usr/bin/env bash
# compare_builds.sh - corio before vs after, in one run: the echo servers and the microbenchmarks.
#
#   compare_builds.sh BEFORE_BUILD AFTER_BUILD [--rounds N] [--duration SEC] [--warmup SEC]
#                    [--scenarios a,b,...] [--micro-reps N] [--micro-min-time SEC]
#                    [--micro-filter REGEX] [--micro-cpu CPU] [--no-echo] [--no-micro]
#                    [--no-pin] [--out DIR]
#
# BEFORE_BUILD and AFTER_BUILD may also come from the environment (BEFORE_BUILD=... AFTER_BUILD=...).
# Each must be a Release (or RelWithDebInfo: the same for both!) build with -DCORIO_BUILD_BENCH=ON
# holding examples/echo_server and bench/micro; BEFORE_BUILD must also hold bench/echo_load and
# bench/c_echo_server, which serve both sides (the load generator and the C baseline are the same
# binaries for both). Builds nothing.
#
# (a) Echo: bench/run_echo_bench.sh (with `--server NAME=PATH`, `--work` and `--alternate`;
#     it sits next to this script, or give its path in RUN_ECHO_BENCH) with three servers run in
#     turn in every round of every scenario: c, corio-before, corio-after, reversed in even rounds
#     (its --alternate: a drift of the machine's speed then favours neither); pinned as usual (server
#     on core 0, echo_load on core 1). It prints its own table (ratios to C), then this script
#     prints after/before per scenario: medians of msgs/s and of server CPU ns/msg and their
#     ratios, and the range of the per-round ratios (before and after of the same round ran
#     back to back, so each round gives one paired ratio).
#     Default scenarios 1c-64B,64c-64B,1000c-64B,64c-16KiB-x4, 3 rounds, 1 s warm-up + 3 s.
# (b) Micro: bench/micro of both builds, one process per benchmark and side, before and after of
#     a benchmark back to back, the order flipped every repetition (--micro-reps pairs, default
#     5), each process pinned to core --micro-cpu (default 0); the benchmarks: those of
#     --micro-filter (default: Yield, Yield_WatchedFd, SpawnComplete, AddTaskRun, AwaitChild,
#     ReadWaitPingPong, TimerArmCancel/0 and /1000, SpawnYieldKill_NoTimer, SleepExpire), Google
#     Benchmark's --benchmark_min_time --micro-min-time if given. Table: per benchmark the medians of the wall time per iteration
#     (Google Benchmark's "Time") before and after, the median and range of the paired ratios
#     after/before, and the ratio of the fastest run of each side.
#
# Everything printed also goes to OUT/compare.txt; raw results in OUT (default
# ./bench-compare-YYYYmmdd-HHMMSS): echo.tsv (one line per echo run), micro.tsv (one line per
# micro process) and, in micro/, the CSV of every micro process.
#
# Exit status: 0 if everything ran, 1 if a run failed, 2 on a bad command line.
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'; }
die() { echo "compare_builds.sh: $*" >&2; exit 2; }

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
run_echo=${RUN_ECHO_BENCH:-$here/run_echo_bench.sh}

before=${BEFORE_BUILD:-}
after=${AFTER_BUILD:-}
rounds=3
duration=3
warmup=1
scenarios=1c-64B,64c-64B,1000c-64B,64c-16KiB-x4
micro_reps=5
micro_min_time=""
micro_filter='^(Yield|Yield_WatchedFd|SpawnComplete|AddTaskRun|AwaitChild|TimerArmCancel/[0-9]+|SpawnYieldKill_NoTimer|SleepExpire|ReadWaitPingPong)$'
micro_cpu=0
do_echo=1
do_micro=1
pin=1
out=""
positional=()
while (($#)); do
    case $1 in
        -h | --help) usage; exit 0 ;;
        --rounds) rounds=${2:?}; shift 2 ;;
        --duration) duration=${2:?}; shift 2 ;;
        --warmup) warmup=${2:?}; shift 2 ;;
        --scenarios) scenarios=${2:?}; shift 2 ;;
        --micro-reps) micro_reps=${2:?}; shift 2 ;;
        --micro-min-time) micro_min_time=${2:?}; shift 2 ;;
        --micro-filter) micro_filter=${2:?}; shift 2 ;;
        --micro-cpu) micro_cpu=${2:?}; shift 2 ;;
        --no-echo) do_echo=0; shift ;;
        --no-micro) do_micro=0; shift ;;
        --no-pin) pin=0; shift ;;
        --out) out=${2:?}; shift 2 ;;
        --*) die "unknown option $1" ;;
        *) positional+=("$1"); shift ;;
    esac
done
((${#positional[@]} <= 2)) || die "more than two build directories"
((${#positional[@]} >= 1)) && before=${positional[0]}
((${#positional[@]} >= 2)) && after=${positional[1]}
[[ -n $before && -n $after ]] || die "need BEFORE_BUILD and AFTER_BUILD (see --help)"
[[ $micro_reps =~ ^[1-9][0-9]*$ ]] || die "bad --micro-reps '$micro_reps'"
# Absolute paths: the echo driver and the output directory must not depend on the current one.
[[ -d $before ]] || die "no directory $before"
[[ -d $after ]] || die "no directory $after"
before=$(cd "$before" && pwd)
after=$(cd "$after" && pwd)

for f in "$before/examples/echo_server" "$after/examples/echo_server" "$before/bench/echo_load" \
    "$before/bench/c_echo_server"; do
    ((do_echo)) || break
    [[ -x $f ]] || die "$f not built (see bench/README.md)"
done
for f in "$before/bench/micro" "$after/bench/micro"; do
    ((do_micro)) || break
    [[ -x $f ]] || die "$f not built (see bench/README.md)"
done
((do_echo == 0)) || [[ -x $run_echo ]] || die "$run_echo not found (set RUN_ECHO_BENCH)"

out=${out:-$PWD/bench-compare-$(date '+%Y%m%d-%H%M%S')}
mkdir -p "$out"
out=$(cd "$out" && pwd)
# From here on, everything on stdout also goes to compare.txt.
exec > >(tee "$out/compare.txt")

build_type() { sed -n 's/^CMAKE_BUILD_TYPE:[^=]*=//p' "$1/CMakeCache.txt" 2>/dev/null || true; }
echo "# corio before vs after, $(date -u '+%Y-%m-%d %H:%M UTC')"
echo
echo "before: $before ($(build_type "$before"))"
echo "after:  $after ($(build_type "$after"))"
echo "machine: $(getconf _NPROCESSORS_ONLN) cores, $(uname -sr); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
if [[ $(build_type "$before") != "$(build_type "$after")" ]]; then
    echo "WARNING: the two builds have different CMAKE_BUILD_TYPEs: the comparison is unfair"
fi
echo

failures=0

# How busy the machine was with other work: CPU time (user + nice + system, all cores, from
# /proc/stat) minus the CPU time of this script's own children (bash's `times`), over the run.
machine_cpu() { awk '/^cpu / { print $2 + $3 + $4; exit }' /proc/stat; }
# `times` must run in this shell itself (in a $(...) subshell it would see only that subshell's
# children): own_cpu_ticks writes the children's user + system, in clock ticks, to own_ticks.
own_cpu_ticks() {
    times >"$out/.times"
    own_ticks=$(awk -v hz="$(getconf CLK_TCK)" 'NR == 2 {
        n = split($1 " " $2, f, " "); s = 0
        for (i = 1; i <= n; ++i) { split(f[i], p, "m"); sub(/s$/, "", p[2]); s += p[1] * 60 + p[2] }
        printf "%.0f", s * hz }' "$out/.times")
}
cpu_start=$(machine_cpu)
own_cpu_ticks
own_start=$own_ticks
wall_start=$(date +%s)

# Medians in awk: insertion sort of a space-separated list (a handful of values).
awk_median='
    function median(list,    n, v, i, j, t) {
        n = split(list, v, " ")
        for (i = 2; i <= n; ++i) {
            t = v[i] + 0
            for (j = i - 1; j >= 1 && v[j] + 0 > t; --j) v[j + 1] = v[j]
            v[j + 1] = t
        }
        if (n == 0) return ""
        return n % 2 ? v[(n + 1) / 2] + 0 : (v[n / 2] + v[n / 2 + 1]) / 2
    }
    function minmax(list, which,    n, v, i, m) {   # which: "min" or "max"
        n = split(list, v, " ")
        m = v[1] + 0
        for (i = 2; i <= n; ++i)
            if ((which == "min" && v[i] + 0 < m) || (which == "max" && v[i] + 0 > m)) m = v[i] + 0
        return m
    }
    function ratio(a, b) { return (a == "" || b == "" || b + 0 == 0) ? "-" : sprintf("%.3f", a / b) }
'

# --- (a) echo servers ---------------------------------------------------------------------------
if ((do_echo)); then
    echo "## Echo: C, corio-before, corio-after in turn in every round (reversed in even rounds)"
    echo
    pin_opt=()
    ((pin)) || pin_opt=(--no-pin)
    echo_status=0
    # Its progress lines go to stderr; its table to stdout (and so to compare.txt).
    "$run_echo" "$before" --rounds "$rounds" --duration "$duration" --warmup "$warmup" \
        --scenarios "$scenarios" --servers c,corio-before,corio-after \
        --server "corio-before=$before/examples/echo_server" \
        --server "corio-after=$after/examples/echo_server" \
        --work "$out/echo" --alternate "${pin_opt[@]}" || echo_status=$?
    if ((echo_status != 0)); then
        failures=$((failures + 1))
        echo "compare_builds.sh: the echo runs failed (status $echo_status): see above" >&2
    fi
    cp "$out/echo/results.tsv" "$out/echo.tsv" 2>/dev/null || true
    echo
    echo "### Echo: after / before (msgs/s: higher is better; CPU ns/msg: lower is better)"
    echo
    # results.tsv: scenario server round msgs_per_sec cpu_ns_per_msg p50_us p99_us
    awk -F'\t' -v scenarios="$(tr ',' ' ' <<<"$scenarios")" "$awk_median"'
        NR > 1 && ($2 == "corio-before" || $2 == "corio-after") {
            side = ($2 == "corio-before") ? "b" : "a"
            rate[$1, side] = rate[$1, side] " " $4
            rate_r[$1, side, $3] = $4
            if ($5 + 0 >= 0) { cpu[$1, side] = cpu[$1, side] " " $5; cpu_r[$1, side, $3] = $5 }
            p99[$1, side] = p99[$1, side] " " $7
            runs[$1, side]++
            if ($3 + 0 > maxround) maxround = $3 + 0
        }
        END {
            print "| scenario | runs | msgs/s before | msgs/s after | after/before | paired ratios (min-max) | CPU ns/msg before | CPU ns/msg after | after/before | paired ratios (min-max) | p99 µs before | p99 µs after |"
            print "| --- | ---: | ---: | ---: | ---: | :---: | ---: | ---: | ---: | :---: | ---: | ---: |"
            ns = split(scenarios, sc, " ")
            for (i = 1; i <= ns; ++i) {
                s = sc[i]
                if (!((s, "b") in runs) || !((s, "a") in runs)) {
                    printf "| %s | - | failed | | | | | | | | | |\n", s; continue
                }
                # paired ratios: after/before of the same round, when both ran
                pr = ""; pc = ""
                for (r = 1; r <= maxround; ++r) {
                    if (((s, "b", r) in rate_r) && ((s, "a", r) in rate_r) && rate_r[s, "b", r] + 0 > 0)
                        pr = pr " " rate_r[s, "a", r] / rate_r[s, "b", r]
                    if (((s, "b", r) in cpu_r) && ((s, "a", r) in cpu_r) && cpu_r[s, "b", r] + 0 > 0)
                        pc = pc " " cpu_r[s, "a", r] / cpu_r[s, "b", r]
                }
                rb = median(rate[s, "b"]); ra = median(rate[s, "a"])
                cb = median(cpu[s, "b"]); ca = median(cpu[s, "a"])
                printf "| %s | %d+%d | %.0f | %.0f | %s | %s | %s | %s | %s | %s | %.1f | %.1f |\n",
                    s, runs[s, "b"], runs[s, "a"], rb, ra, ratio(ra, rb),
                    (pr == "" ? "-" : sprintf("%.3f-%.3f", minmax(pr, "min"), minmax(pr, "max"))),
                    (cb == "" ? "-" : sprintf("%.0f", cb)), (ca == "" ? "-" : sprintf("%.0f", ca)), ratio(ca, cb),
                    (pc == "" ? "-" : sprintf("%.3f-%.3f", minmax(pc, "min"), minmax(pc, "max"))),
                    median(p99[s, "b"]), median(p99[s, "a"])
            }
        }' "$out/echo.tsv"
    echo
fi

# --- (b) microbenchmarks ------------------------------------------------------------------------
# One process per benchmark and side, before and after back to back, the order flipped every
# repetition (before after, after before, before after, ...). Why so fine-grained: on a VM the
# speed of a core can change by 2x within seconds (seen here: Yield at 17 ns then 33 ns, same
# binary, same core), so a ratio is only fair between two runs a second apart; each pair gives
# one ratio, and the table's main figure is the median of those paired ratios.
if ((do_micro)); then
    echo "## Micro: bench/micro, before and after in alternating processes, ${micro_reps} pairs per benchmark"
    echo
    micro_pin=()
    if ((pin)) && command -v taskset >/dev/null; then micro_pin=(taskset -c "$micro_cpu"); fi
    echo "filter: $micro_filter; pinning: ${micro_pin[*]:-none}; min time: ${micro_min_time:-Google Benchmark default}"
    echo
    mapfile -t names < <("$before/bench/micro" --benchmark_list_tests --benchmark_filter="$micro_filter")
    ((${#names[@]})) || die "no benchmark of $before/bench/micro matches $micro_filter"
    mapfile -t after_names < <("$after/bench/micro" --benchmark_list_tests --benchmark_filter="$micro_filter")
    if [[ ${names[*]} != "${after_names[*]}" ]]; then
        echo "NOTE: the two builds list different benchmarks: before: ${names[*]}; after: ${after_names[*]}"
        echo
    fi
    gb_args=(--benchmark_format=csv)
    [[ -n $micro_min_time ]] && gb_args+=(--benchmark_min_time="$micro_min_time")
    mkdir -p "$out/micro"
    printf 'side\trep\tname\treal_ns\tcpu_ns\n' >"$out/micro.tsv"
    for ((rep = 1; rep <= micro_reps; ++rep)); do
        sides=(before after)
        ((rep % 2)) || sides=(after before)
        for name in "${names[@]}"; do
            for side in "${sides[@]}"; do
                if [[ $side == before ]]; then dir=$before; else dir=$after; fi
                csv=$out/micro/$side-$rep-${name//\//_}.csv
                printf 'micro %-22s %-6s %d/%d ... ' "$name" "$side" "$rep" "$micro_reps" >&2
                # The name as an anchored regex: names hold letters, digits, _ and / only.
                if ! "${micro_pin[@]}" "$dir/bench/micro" --benchmark_filter="^${name}\$" \
                    "${gb_args[@]}" >"$csv" 2>"$csv.err"; then
                    failures=$((failures + 1))
                    echo "FAILED" >&2
                    sed 's/^/    /' "$csv.err" >&2
                    continue
                fi
                # CSV: name,iterations,real_time,cpu_time,time_unit,...; names are quoted. A line
                # with error_occurred set is skipped. Times are converted to ns.
                awk -F',' -v side="$side" -v rep="$rep" '
                    NR == 1 || NF < 5 { next }
                    {
                        name = $1; gsub(/"/, "", name)
                        if ($9 == "true") next
                        f = ($5 == "us") ? 1e3 : ($5 == "ms") ? 1e6 : ($5 == "s") ? 1e9 : 1
                        printf "%s\t%d\t%s\t%.4f\t%.4f\n", side, rep, name, $3 * f, $4 * f
                        printf "%.1f ns\n", $3 * f > "/dev/stderr"
                        n++
                    }
                    END { if (!n) print "no result" > "/dev/stderr" }' "$csv" >>"$out/micro.tsv"
            done
        done
    done
    awk -F'\t' "$awk_median"'
        NR > 1 {
            if (!($3 in seen)) { seen[$3] = 1; order[++n] = $3 }
            real[$3, $1] = real[$3, $1] " " $4
            t[$3, $1, $2] = $4
            runs[$3, $1]++
            if ($2 + 0 > maxrep) maxrep = $2 + 0
        }
        END {
            print "| benchmark | pairs | before ns (median) | after ns (median) | after/before (median of pairs) | pairs min-max | min after / min before |"
            print "| --- | ---: | ---: | ---: | ---: | :---: | ---: |"
            for (i = 1; i <= n; ++i) {
                b = order[i]; pr = ""; np = 0
                for (r = 1; r <= maxrep; ++r)
                    if (((b, "before", r) in t) && ((b, "after", r) in t) && t[b, "before", r] > 0) {
                        pr = pr " " t[b, "after", r] / t[b, "before", r]; np++
                    }
                printf "| %s | %d | %.1f | %.1f | %s | %s | %s |\n", b, np,
                    median(real[b, "before"]), median(real[b, "after"]),
                    (np ? sprintf("%.3f", median(pr)) : "-"),
                    (np ? sprintf("%.3f-%.3f", minmax(pr, "min"), minmax(pr, "max")) : "-"),
                    ratio(minmax(real[b, "after"], "min"), minmax(real[b, "before"], "min"))
            }
        }' "$out/micro.tsv"
    echo
    echo "ns = wall time per iteration (Google Benchmark's Time column). A pair = before and after of"
    echo "one benchmark run back to back; after/before = the median of the pairs' ratios (the figure"
    echo "to judge); min after / min before = the fastest run of each side."
    echo
fi

echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
own_cpu_ticks
other=$(($(machine_cpu) - cpu_start - (own_ticks - own_start)))
rm -f "$out/.times"
wall=$(($(date +%s) - wall_start))
awk -v t="$other" -v hz="$(getconf CLK_TCK)" -v w="$wall" 'BEGIN {
    printf "other processes used %.0f CPU-seconds during the %d s run (%.0f%% of one core on average)%s\n",
        t / hz, w, (w > 0 ? 100 * t / hz / w : 0),
        (w > 0 && t / hz / w > 0.05) ? ": NOT a quiet machine, the ratios are less trustworthy" : "" }'
echo "raw results: $out"
if ((failures)); then
    echo "compare_builds.sh: $failures failure(s)" >&2
    exit 1
fi
