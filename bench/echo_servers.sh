# shellcheck shell=bash
# echo_servers.sh - the echo servers the bench scripts know by name. Sourced by
# run_echo_bench.sh and count_syscalls.sh (bash), not run.
#
#   echo_server_spec NAME BUILD_DIR
#
# prints PATH|ARGUMENTS|ENVIRONMENT|OPT_IN for a known NAME and returns 0; returns 1 for an
# unknown one. ARGUMENTS are extra words for the command line (after `--host --port`),
# ENVIRONMENT is one VAR=VALUE or nothing, OPT_IN is "opt-in" for a server that runs only when
# --servers names it. Every server runs with CORIO_BACKEND removed from its environment, then
# ENVIRONMENT added, so `corio` is the default echo_server whatever the caller's environment.
#
#   c            bench/c_echo_server: the epoll limit (one shared 64 KiB read buffer)
#   c-per-conn   bench/c_echo_server --per-conn-buffer: the earlier baseline, a 16 KiB buffer per
#                connection (opt-in)
#   c-uring      bench/c_uring_echo_server: the io_uring limit (built when liburing is found)
#   corio        examples/echo_server, its default backend
#   corio-epoll  examples/echo_server with CORIO_BACKEND=epoll (opt-in)
#   corio-poll   examples/echo_server with CORIO_BACKEND=poll (opt-in)
#   corio-uring  examples/echo_server with CORIO_BACKEND=io_uring (opt-in)
#   asio         bench/asio_echo_server (built when Asio is found)
#   corio-t2     examples/echo_server --threads 2 (opt-in)
#   corio-monitor examples/echo_server --monitor 127.0.0.1:0: the task monitor served, so wait
#                times are recorded (a clock read per wait) (opt-in)
# shellcheck disable=SC2034 # used by the scripts that source this file
echo_server_default_order=c,c-uring,corio,asio

echo_server_spec() {
    local name=$1 build=$2
    case $name in
        c) echo "$build/bench/c_echo_server|||" ;;
        c-per-conn) echo "$build/bench/c_echo_server|--per-conn-buffer||opt-in" ;;
        c-uring) echo "$build/bench/c_uring_echo_server|||" ;;
        corio) echo "$build/examples/echo_server|||" ;;
        corio-epoll) echo "$build/examples/echo_server||CORIO_BACKEND=epoll|opt-in" ;;
        corio-poll) echo "$build/examples/echo_server||CORIO_BACKEND=poll|opt-in" ;;
        corio-uring) echo "$build/examples/echo_server||CORIO_BACKEND=io_uring|opt-in" ;;
        asio) echo "$build/bench/asio_echo_server|||" ;;
        corio-t2) echo "$build/examples/echo_server|--threads 2||opt-in" ;;
        corio-monitor) echo "$build/examples/echo_server|--monitor 127.0.0.1:0||opt-in" ;;
        *) return 1 ;;
    esac
}
