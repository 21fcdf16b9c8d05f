// The task monitor and the dump (corio/diag/monitor.hpp, corio/diag/task_dump.hpp): the answers
// of answer_monitor_command; the monitor served over a real Unix socket and over loopback TCP,
// under load, and against garbage and too many clients; which addresses monitor_listener takes;
// the dump on a signal; and the example servers' --monitor option (the real processes).
//
// Rules that keep these tests from hanging: every socket operation of a task is bounded with
// timeout_after, every loop is bounded in count, every Scheduler runs through run_until_ended
// (a watchdog), and every child process is ended by its PID (support/child_process.hpp).
#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <poll.h>
#include <set>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <sys/socket.h>
#include <sys/un.h>
#include <system_error>
#include <thread>
#include <unistd.h>
#include <utility>
#include <vector>

#include <corio/diag/monitor.hpp>
#include <corio/diag/task_dump.hpp>
#include <corio/diag/task_listing.hpp>
#include <corio/net/async_socket.hpp>
#include <corio/net/socket_address.hpp>
#include <corio/net/unix_socket.hpp>
#include <corio/scheduler.hpp>
#include <corio/signal_wait.hpp>
#include <corio/sync/event.hpp>
#include <corio/syscalls.hpp>
#include <corio/timeout.hpp>

#include "support/catch.hpp"
#include "support/child_process.hpp"
#include "support/fd.hpp"
#include "support/helpers.hpp"
#include "support/leak_check.hpp"
#include "support/run_bounded.hpp"
#include "support/tcp_client.hpp"
#include "support/temporary_directory.hpp"

namespace {

using namespace corio::test;
using namespace std::chrono_literals;
using corio::AsyncSocket;
using corio::SocketAddress;
using corio::TaskExit;
using corio::TaskInfo;

// ---- reading listings ---------------------------------------------------------------------------

/// One line of a `ps` or `pstree` answer, cut at the columns of its header.
struct Row {
    std::uint64_t id = 0;
    std::string parent; // "-" or a number
    std::string state;
    std::string waited;
    std::string left;
    std::size_t indent = 0; // spaces before the name (pstree: 2 per level)
    std::string name;
    std::string waits_on;
};

std::string trimmed(std::string_view text) {
    while (!text.empty() && text.front() == ' ') {
        text.remove_prefix(1);
    }
    while (!text.empty() && text.back() == ' ') {
        text.remove_suffix(1);
    }
    return std::string(text);
}

std::vector<std::string> lines_of(std::string_view text) {
    std::vector<std::string> lines;
    while (!text.empty()) {
        const std::size_t newline = text.find('\n');
        lines.emplace_back(text.substr(0, newline));
        if (newline == std::string_view::npos) {
            break;
        }
        text.remove_prefix(newline + 1);
    }
    return lines;
}

constexpr std::string_view header =
    "    ID  PARENT  STATE    WAITED  LEFT    NAME                  WAITS ON";

// The rows of a listing (its first line must be the header). A line that is no task line fails
// the test. A name longer than its column pushes what it waits on to the right, one space after
// it: such a name must have no space of its own (a template's coroutine has none).
std::vector<Row> parse_listing(std::string_view text) {
    const std::vector<std::string> lines = lines_of(text);
    REQUIRE(!lines.empty());
    REQUIRE(lines.front() == header);
    const std::size_t name_at = header.find("NAME");
    const std::size_t waits_at = header.find("WAITS ON");
    std::vector<Row> rows;
    for (std::size_t i = 1; i < lines.size(); ++i) {
        const std::string& line = lines[i];
        INFO("line: '" << line << "'");
        REQUIRE(line.size() > name_at);
        Row row;
        const std::string id = trimmed(line.substr(0, 6));
        REQUIRE(!id.empty());
        REQUIRE(id.find_first_not_of("0123456789") == std::string::npos);
        row.id = std::stoull(id);
        row.parent = trimmed(line.substr(8, 6));
        row.state = trimmed(line.substr(16, 9));
        row.waited = trimmed(line.substr(25, 8));
        row.left = trimmed(line.substr(33, 8));
        std::size_t name_end = std::min(waits_at, line.size());
        if (line.size() > waits_at && line[waits_at - 1] != ' ') { // the name overflows its column
            name_end = std::min(line.find(' ', waits_at), line.size());
        }
        const std::string name_field = line.substr(name_at, name_end - name_at);
        row.indent = name_field.find_first_not_of(' ');
        REQUIRE(row.indent != std::string::npos);
        row.name = trimmed(name_field);
        row.waits_on = line.size() > name_end ? trimmed(line.substr(name_end)) : "";
        const std::set<std::string> states{"ready", "running", "waiting", "dying"};
        REQUIRE(states.count(row.state) == 1);
        REQUIRE(!row.waited.empty());
        REQUIRE(!row.left.empty());
        rows.push_back(row);
    }
    return rows;
}

const Row* find_row(const std::vector<Row>& rows, TaskId id) {
    for (const Row& row : rows) {
        if (row.id == id.serial()) {
            return &row;
        }
    }
    return nullptr;
}

// The row of task `id`, which must be listed.
const Row& row_of(const std::vector<Row>& rows, TaskId id) {
    const Row* row = find_row(rows, id);
    INFO("task " << id.serial() << " is not listed");
    REQUIRE(row != nullptr);
    return *row;
}

std::size_t count_named(const std::vector<Row>& rows, std::string_view name) {
    return static_cast<std::size_t>(
        std::count_if(rows.begin(), rows.end(), [&](const Row& row) { return row.name == name; }));
}

// Rows whose name is `name` or `name<...>` (a coroutine template: serve_connection<AsyncSocket>).
std::size_t count_coroutine(const std::vector<Row>& rows, std::string_view name) {
    return static_cast<std::size_t>(std::count_if(rows.begin(), rows.end(), [&](const Row& row) {
        return row.name == name || (row.name.starts_with(name) && row.name[name.size()] == '<');
    }));
}

/// The function names of a `where` answer's frames ("  #0 NAME at FILE:LINE"), in its order.
std::vector<std::string> frames_of(std::string_view where, std::vector<std::string>* files = nullptr) {
    std::vector<std::string> functions;
    for (const std::string& line : lines_of(where)) {
        if (!line.starts_with("  #")) {
            continue;
        }
        const std::size_t space = line.find(' ', 3);
        const std::size_t at = line.find(" at ", space);
        REQUIRE(space != std::string::npos);
        REQUIRE(at != std::string::npos);
        CHECK(line.substr(3, space - 3) == std::to_string(functions.size())); // #0, #1, ...
        functions.push_back(line.substr(space + 1, at - space - 1));
        if (files != nullptr) {
            files->push_back(line.substr(at + 4, line.rfind(':') - at - 4));
        }
    }
    return functions;
}

bool ends_with_newline(std::string_view text) {
    return !text.empty() && text.back() == '\n';
}

// True if `text` is whole lines, one of which starts with `start`.
bool ends_with_line_of(std::string_view text, std::string_view start) {
    if (text.empty() || text.back() != '\n') {
        return false;
    }
    for (const std::string& line : lines_of(text)) {
        if (line.starts_with(start)) {
            return true;
        }
    }
    return false;
}

// ---- the tasks the monitor looks at -------------------------------------------------------------

Task<> nap_deeper() {
    co_await corio::Sleep{long_sleep};
}

Task<> nap_deep() {
    co_await nap_deeper();
}

// Named "sleeper"; its frames, innermost first: nap_deeper, nap_deep, sleeper.
Task<> sleeper() {
    co_await corio::NameTask{"sleeper"};
    co_await nap_deep();
}

Task<> read_forever(AsyncSocket& socket) {
    co_await corio::NameTask{"reader"};
    std::array<char, 16> buffer{};
    (void)co_await socket.recv(buffer);
}

Task<> child_sleeps() { // unnamed: listed under its root coroutine's name
    co_await corio::Sleep{long_sleep};
}

Task<> parent_waits(TaskId& child) {
    co_await corio::NameTask{"parent"};
    child = co_await corio::NewTask{child_sleeps()};
    (void)co_await corio::WaitTask{child};
}

Task<> watch(TaskId victim, std::optional<TaskExit::Outcome>& outcome) {
    co_await corio::NameTask{"watcher"};
    const TaskExit exit = co_await corio::WaitTask{victim};
    outcome = exit.outcome;
}

Task<> wait_for_event(corio::Event& event) {
    co_await corio::NameTask{"event waiter"};
    co_await event.wait();
}

// Kills every task still alive, newest first (a kill destroys the task's frames at once).
void kill_all(Scheduler& kernel) {
    std::vector<TaskInfo> tasks = kernel.snapshot();
    std::sort(tasks.begin(), tasks.end(), [](const TaskInfo& a, const TaskInfo& b) { return b.id < a.id; });
    for (const TaskInfo& task : tasks) {
        kernel.kill(task.id);
    }
}

// ---- a monitor client inside the Scheduler ------------------------------------------------------

constexpr auto io_limit = 5s; // any one socket operation of a test's task

// Receives into `text` until `done(text)`; false if the peer closed first. Each recv is bounded.
Task<bool> read_until(AsyncSocket& socket, std::string& text,
                      std::function<bool(const std::string&)> done) {
    std::array<char, 4096> buffer{};
    for (int i = 0; i < 10000 && !done(text); ++i) {
        const std::size_t received = co_await corio::timeout_after(io_limit, socket.recv(buffer));
        if (received == 0) {
            co_return false;
        }
        text.append(buffer.data(), received);
    }
    co_return done(text);
}

// Everything until the peer closes. `how` says how it ended: "closed" (recv gave 0) or the
// error that ended it (e.g. a reset).
Task<> read_to_end(AsyncSocket& socket, std::string& text, std::string& how) {
    std::array<char, 4096> buffer{};
    try {
        for (int i = 0; i < 10000; ++i) {
            const std::size_t received = co_await corio::timeout_after(io_limit, socket.recv(buffer));
            if (received == 0) {
                how = "closed";
                co_return;
            }
            text.append(buffer.data(), received);
        }
        how = "still open";
    } catch (const std::system_error& error) {
        how = error.what();
    }
}

// The answer to one command line: sends it, reads until `done`.
Task<std::string> ask(AsyncSocket& socket, std::string line, std::function<bool(const std::string&)> done) {
    co_await corio::timeout_after(io_limit, socket.send_all(std::string_view(line)));
    std::string answer;
    const bool complete = co_await read_until(socket, answer, std::move(done));
    if (!complete) {
        throw std::runtime_error("the monitor closed before it answered " + line + answer);
    }
    co_return answer;
}

// A `ps` answer is complete once the line of the newest task, which is the monitor client
// answering it, has come.
bool ps_complete(const std::string& text) {
    return text.starts_with(header) && ends_with_newline(text) &&
           lines_of(text).back().find("monitor client") != std::string::npos;
}

bool help_complete(const std::string& text) {
    return ends_with_line_of(text, "  help ");
}

Task<AsyncSocket> connect_to_monitor(SocketAddress address) {
    co_return co_await corio::timeout_after(io_limit, AsyncSocket::connect(std::move(address)));
}

// The monitor's client tasks: named "monitor client" once they ran, their coroutine's name before.
std::vector<TaskId> monitor_clients(const Scheduler& kernel) {
    std::vector<TaskId> clients;
    for (const TaskInfo& task : kernel.snapshot()) {
        if (task.name == "monitor client" || task.name == "serve_monitor_client") {
            clients.push_back(task.id);
        }
    }
    return clients;
}

// Waits (bounded) for the monitor clients still alive to end (their peers have closed), then
// kills what is left.
void finish(Scheduler& kernel) {
    CHECK(run_until_ended(kernel, monitor_clients(kernel), 5s));
    kill_all(kernel);
}

// =================================================================================================
// a. answer_monitor_command
// =================================================================================================

TEST_CASE("answer_monitor_command: ps, pstree, where, kill, stats, help and errors", "[monitor]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    auto [left, right] = corio::unix_socket_pair();
    corio::Event event;
    TaskId child;
    std::optional<TaskExit::Outcome> outcome;
    const TaskId napping = kernel.add_task(sleeper());
    const TaskId reading = kernel.add_task(read_forever(left));
    const TaskId parent = kernel.add_task(parent_waits(child));
    const TaskId waiting = kernel.add_task(wait_for_event(event));
    kernel.run_until_complete(yield_times(3)); // every task has started and waits
    REQUIRE(child);
    const TaskId watcher = kernel.add_task(watch(child, outcome));
    kernel.run_until_complete(yield_times(3));
    REQUIRE(kernel.task_count() == 6);

    SECTION("ps lists every task with its name and what it waits on") {
        const std::string ps = corio::answer_monitor_command(kernel, "ps");
        INFO(ps);
        const std::vector<Row> rows = parse_listing(ps);
        REQUIRE(rows.size() == 6);
        const auto expect = [&](TaskId id, std::string_view name, const std::string& waits_on) {
            const Row* row = find_row(rows, id);
            INFO("task " << id.serial() << " (" << name << ")");
            REQUIRE(row != nullptr);
            CHECK(row->name == name);
            CHECK(row->state == "waiting");
            CHECK(row->indent == 0);
            CHECK(row->waits_on.starts_with(waits_on));
        };
        expect(napping, "sleeper", "sleep");
        expect(reading, "reader", "fd " + std::to_string(left.fd()) + " read");
        expect(parent, "parent", "task " + std::to_string(child.serial()));
        expect(child, "child_sleeps", "sleep");
        expect(waiting, "event waiter", "event");
        expect(watcher, "watcher", "task " + std::to_string(child.serial()));
        CHECK(row_of(rows, child).parent == std::to_string(parent.serial()));
        CHECK(row_of(rows, napping).parent == "-");
        CHECK(row_of(rows, napping).left != "-");  // a sleep ends by itself
        CHECK(row_of(rows, reading).left == "-");  // a read does not
        CHECK(row_of(rows, napping).waited == "-"); // wait times are off: nobody serves a monitor
        // Oldest first.
        for (std::size_t i = 1; i < rows.size(); ++i) {
            CHECK(rows[i - 1].id < rows[i].id);
        }
        CHECK(corio::answer_monitor_command(kernel, "  ps \r") == corio::answer_monitor_command(kernel, "ps"));
    }

    SECTION("pstree puts a spawned child under its parent") {
        const std::string tree = corio::answer_monitor_command(kernel, "pstree");
        INFO(tree);
        const std::vector<Row> rows = parse_listing(tree);
        REQUIRE(rows.size() == 6);
        const auto at = [&](TaskId id) {
            const auto found = std::find_if(rows.begin(), rows.end(), [&](const Row& row) { return row.id == id.serial(); });
            REQUIRE(found != rows.end());
            return static_cast<std::size_t>(found - rows.begin());
        };
        const std::size_t parent_at = at(parent);
        REQUIRE(parent_at + 1 < rows.size());
        CHECK(rows[parent_at + 1].id == child.serial()); // right under it
        CHECK(rows[parent_at].indent == 0);
        CHECK(rows[parent_at + 1].indent == 2);
        CHECK(rows[parent_at + 1].name == "child_sleeps");
        for (const TaskId top : {napping, reading, waiting, watcher}) {
            CHECK(rows[at(top)].indent == 0);
        }
    }

    SECTION("where shows a task's frames, innermost first") {
        const std::string where = corio::answer_monitor_command(kernel, "where " + std::to_string(napping.serial()));
        INFO(where);
        CHECK(where.starts_with("task " + std::to_string(napping.serial()) + " (sleeper), waiting on sleep"));
        std::vector<std::string> files;
        const std::vector<std::string> frames = frames_of(where, &files);
        CHECK(frames == std::vector<std::string>{"nap_deeper", "nap_deep", "sleeper"});
        for (const std::string& file : files) {
            CHECK(file.ends_with("test_monitor.cpp"));
        }
        const std::string parents = corio::answer_monitor_command(kernel, " where  " + std::to_string(parent.serial()) + " ");
        INFO(parents);
        CHECK(parents.starts_with("task " + std::to_string(parent.serial()) + " (parent), waiting on task " +
                                  std::to_string(child.serial())));
        CHECK(frames_of(parents) == std::vector<std::string>{"parent_waits"});
    }

    SECTION("kill kills the task: its waiters see it killed") {
        const std::string answer = corio::answer_monitor_command(kernel, "kill " + std::to_string(child.serial()));
        CHECK(answer == "killed " + std::to_string(child.serial()) + "\n");
        kernel.run_until_complete(yield_times(3));
        CHECK_FALSE(kernel.contains(child));
        REQUIRE(outcome.has_value());
        CHECK(*outcome == TaskExit::Outcome::killed);
        CHECK_FALSE(kernel.contains(watcher)); // it saw the end, and ended
        CHECK_FALSE(kernel.contains(parent));  // so did the parent, which waited too
        const std::vector<Row> rows = parse_listing(corio::answer_monitor_command(kernel, "ps"));
        CHECK(rows.size() == 3);
        CHECK(find_row(rows, child) == nullptr);
        CHECK(corio::answer_monitor_command(kernel, "kill " + std::to_string(child.serial())) ==
              "error: no task " + std::to_string(child.serial()) + "\n");
    }

    SECTION("what is no command is an error") {
        for (const std::string line : {"kill 999999", "where 999999", "where abc", "where", "kill", "where -1",
                                       "where 1 2", "where 0x1", "bogus", "ps now", "stats all", "PS", "where\t1"}) {
            const std::string answer = corio::answer_monitor_command(kernel, line);
            INFO("'" << line << "' -> " << answer);
            CHECK(answer.starts_with("error: "));
            CHECK(std::count(answer.begin(), answer.end(), '\n') == 1);
            CHECK(answer.back() == '\n');
        }
        CHECK(corio::answer_monitor_command(kernel, "kill 999999") == "error: no task 999999\n");
        CHECK(corio::answer_monitor_command(kernel, "where abc") == "error: where takes a task number\n");
        CHECK(corio::answer_monitor_command(kernel, "bogus") == "error: unknown command (try help)\n");
        CHECK(kernel.task_count() == 6); // nothing was killed
    }

    SECTION("stats says how many tasks, and which backend") {
        const std::string stats = corio::answer_monitor_command(kernel, "stats");
        INFO(stats);
        const std::vector<std::string> lines = lines_of(stats);
        const auto has = [&](const std::string& line) { return std::find(lines.begin(), lines.end(), line) != lines.end(); };
        CHECK(has("tasks 6"));
        CHECK(has(std::string("backend ") + corio::to_string(kernel.backend())));
        const std::string backend = corio::to_string(kernel.backend());
        CHECK((backend == "epoll" || backend == "io_uring" || backend == "poll"));
#if CORIO_FORCE_POLL
        CHECK(backend == "poll");
#endif
        CHECK(has("waiting_on_fds 1")); // the reader
    }

    SECTION("help lists the commands") {
        const std::string help = corio::answer_monitor_command(kernel, "help");
        for (const std::string_view command : {"ps", "pstree", "where N", "kill N", "stats", "help"}) {
            INFO(command);
            CHECK(help.find("\n  " + std::string(command) + " ") != std::string::npos);
        }
        CHECK(corio::answer_monitor_command(kernel, "") == help);
    }

    kill_all(kernel);
    left.close();
    right.close();
    require_empty(kernel);
}

// =================================================================================================
// b. The monitor over real sockets
// =================================================================================================

struct Conversation {
    std::string ps;
    std::string where;
    std::string stats;
};

// A person with `nc`: ps, then where for the sleeper, then stats.
Task<> talk_to_monitor(SocketAddress address, TaskId napping, Conversation& heard) {
    co_await corio::NameTask{"test client"};
    AsyncSocket socket = co_await connect_to_monitor(std::move(address));
    heard.ps = co_await ask(socket, "ps\n", ps_complete);
    heard.where = co_await ask(socket, "where " + std::to_string(napping.serial()) + "\n",
                               [](const std::string& text) { return ends_with_line_of(text, "  #2 "); });
    heard.stats = co_await ask(socket, "stats\n",
                               [](const std::string& text) { return ends_with_line_of(text, "lent_buffers "); });
}

void converse(const std::string& where_to_listen, bool tcp) {
    FrameLeakCheck leaks;
    Scheduler kernel;
    AsyncSocket listener = corio::monitor_listener(where_to_listen);
    const SocketAddress address = listener.local_address();
    if (tcp) {
        CHECK(address.port() != 0);
        CHECK(address.host() == "127.0.0.1");
    } else {
        CHECK(address.family() == AF_UNIX);
        CHECK(address.path() == where_to_listen);
    }
    const TaskId napping = kernel.add_task(sleeper());
    const TaskId monitor = kernel.add_task(corio::serve_monitor(kernel, std::move(listener)));
    Conversation heard;
    const TaskId client = kernel.add_task(talk_to_monitor(address, napping, heard));
    REQUIRE(run_until_ended(kernel, {client}));

    INFO("ps:\n" << heard.ps);
    const std::vector<Row> rows = parse_listing(heard.ps);
    const Row* monitor_row = find_row(rows, monitor);
    REQUIRE(monitor_row != nullptr);
    CHECK(monitor_row->name == "monitor");
    CHECK(monitor_row->state == "waiting");
    CHECK(monitor_row->waits_on.starts_with("fd "));
    CHECK(monitor_row->waited != "-"); // serve_monitor records wait times
    REQUIRE(count_named(rows, "monitor client") == 1);
    const Row& answering = rows.back();
    CHECK(answering.name == "monitor client");
    CHECK(answering.state == "running");
    CHECK(answering.parent == std::to_string(monitor.serial()));
    CHECK(row_of(rows, client).name == "test client");
    CHECK(row_of(rows, napping).name == "sleeper");

    INFO("where:\n" << heard.where);
    CHECK(heard.where.starts_with("task " + std::to_string(napping.serial()) + " (sleeper), waiting on sleep"));
    CHECK(frames_of(heard.where) == std::vector<std::string>{"nap_deeper", "nap_deep", "sleeper"});

    INFO("stats:\n" << heard.stats);
    // The same tasks as ps listed: the sleeper, the monitor, its client, ours, run_until_ended's.
    CHECK(heard.stats.find("\ntasks " + std::to_string(rows.size()) + "\n") != std::string::npos);
    CHECK(heard.stats.starts_with(std::string("backend ") + corio::to_string(kernel.backend()) + "\n"));

    finish(kernel);
    require_empty(kernel);
}

namespace {
// Asks the monitor to kill its own task while the task's frame is being destroyed.
struct KillSelfWhenDestroyed {
    Scheduler* kernel = nullptr;
    std::uint64_t serial = 0;
    std::string* answer = nullptr;
    ~KillSelfWhenDestroyed() {
        if (kernel != nullptr) {
            *answer = corio::answer_monitor_command(*kernel, "kill " + std::to_string(serial));
        }
    }
};

Task<> ask_kill_of_self_while_dying(Scheduler& kernel, std::string& answer) {
    KillSelfWhenDestroyed guard;
    guard.serial = (co_await corio::GetTid{}).serial();
    guard.kernel = &kernel;
    guard.answer = &answer;
    co_await corio::Sleep{std::chrono::hours(1)};
}
} // namespace

TEST_CASE("the monitor's kill N of a task that is ending already is an error, not killed", "[monitor]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    std::string answer;
    const TaskId dying = kernel.add_task(ask_kill_of_self_while_dying(kernel, answer));
    kernel.run_until_complete(yield_times(2));
    REQUIRE(kernel.kill(dying)); // its destructor asks for its own kill as it dies
    CHECK(answer == "error: task " + std::to_string(dying.serial()) + " is ending already\n");
    require_empty(kernel);
}

TEST_CASE("the monitor answers over a Unix socket in a temporary directory", "[monitor]") {
    TemporaryDirectory directory("corio-monitor-");
    const std::string path = (directory.path() / "monitor.sock").string();
    converse(path, false);
    CHECK(std::filesystem::is_socket(path)); // corio leaves the file: the program removes it
}

TEST_CASE("the monitor answers over loopback TCP on port 0", "[monitor]") {
    converse("127.0.0.1:0", true);
}

// =================================================================================================
// c. Under load
// =================================================================================================

struct Load {
    int rounds = 0; // pings answered, counted by the pingers
    int echoed = 0; // bytes echoed by the pongers
    int finished = 0;
};

constexpr int load_rounds = 300;

Task<> pinger(AsyncSocket& socket, Load& load, corio::Event& release) {
    std::array<char, 1> byte{};
    for (int i = 0; i < load_rounds; ++i) {
        co_await corio::timeout_after(io_limit, socket.send_all(std::string_view("p")));
        const std::size_t received = co_await corio::timeout_after(io_limit, socket.recv(byte));
        if (received != 1) {
            throw std::runtime_error("pinger: the ponger hung up");
        }
        ++load.rounds;
    }
    socket.shutdown_write();
    ++load.finished;
    co_await release.wait(); // stays listed until the monitor's client is done
}

Task<> ponger(AsyncSocket& socket, Load& load, corio::Event& release) {
    std::array<char, 1> byte{};
    for (int i = 0; i <= load_rounds; ++i) {
        const std::size_t received = co_await corio::timeout_after(io_limit, socket.recv(byte));
        if (received == 0) {
            break;
        }
        co_await corio::timeout_after(io_limit, socket.send_all(std::span(byte).first(received)));
        ++load.echoed;
    }
    ++load.finished;
    co_await release.wait();
}

// Reads until `text` holds `count` lines (more would be a fault of the monitor).
Task<std::string> read_lines(AsyncSocket& socket, std::size_t count) {
    std::string text;
    const bool complete = co_await read_until(socket, text, [count](const std::string& got) {
        return static_cast<std::size_t>(std::count(got.begin(), got.end(), '\n')) >= count;
    });
    if (!complete) {
        throw std::runtime_error("the monitor closed in the middle of an answer");
    }
    co_return text;
}

// Asks `ps` `times` times in a row, each time once the last answer has come whole; then
// releases the load tasks. Until then no task begins or ends, so each answer has as many lines
// as there are tasks, plus the header.
Task<> ask_ps_repeatedly(Scheduler& kernel, SocketAddress address, int times,
                         std::vector<std::string>& answers, corio::Event& release) {
    co_await corio::NameTask{"test client"};
    AsyncSocket socket = co_await connect_to_monitor(std::move(address));
    (void)co_await ask(socket, "help\n", help_complete); // the monitor has our client's task now
    for (int i = 0; i < times; ++i) {
        const std::size_t tasks = kernel.task_count();
        co_await corio::timeout_after(io_limit, socket.send_all(std::string_view("ps\n")));
        answers.push_back(co_await read_lines(socket, tasks + 1));
    }
    // Nothing came after the last answer.
    std::array<char, 64> buffer{};
    const std::optional<std::size_t> more = co_await corio::ignore_after(50ms, socket.recv(buffer));
    if (more) {
        throw std::runtime_error("the monitor sent more than it was asked for");
    }
    release.set();
}

// Serves the monitor from `kernel` on a Unix socket in `directory`: where to connect, and the
// monitor's task.
struct ServedMonitor {
    SocketAddress address;
    TaskId monitor;
};
ServedMonitor serve_monitor_in(Scheduler& kernel, const TemporaryDirectory& directory,
                               corio::MonitorLimits limits = {}) {
    AsyncSocket listener = corio::monitor_listener((directory.path() / "m.sock").string());
    SocketAddress address = listener.local_address();
    const TaskId monitor = kernel.add_task(corio::serve_monitor(kernel, std::move(listener), limits));
    return {std::move(address), monitor};
}

TEST_CASE("the monitor answers 20 ps requests in a row while 50 tasks ping-pong", "[monitor]") {
    FrameLeakCheck leaks;
    TemporaryDirectory directory("corio-monitor-");
    Scheduler kernel;
    const ServedMonitor served = serve_monitor_in(kernel, directory);
    const SocketAddress& address = served.address;
    const TaskId monitor = served.monitor;

    Load load;
    corio::Event release;
    std::vector<std::pair<AsyncSocket, AsyncSocket>> pairs;
    std::vector<TaskId> load_tasks;
    for (int i = 0; i < 25; ++i) {
        pairs.push_back(corio::unix_socket_pair());
    }
    for (auto& [ping, pong] : pairs) {
        load_tasks.push_back(kernel.add_task(pinger(ping, load, release)));
        load_tasks.push_back(kernel.add_task(ponger(pong, load, release)));
    }
    std::vector<std::string> answers;
    const TaskId client = kernel.add_task(ask_ps_repeatedly(kernel, address, 20, answers, release));
    std::vector<TaskId> all = load_tasks;
    all.push_back(client);
    REQUIRE(run_until_ended(kernel, all, 20s));

    CHECK(load.rounds == 25 * load_rounds);
    CHECK(load.echoed == 25 * load_rounds);
    CHECK(load.finished == 50);
    REQUIRE(answers.size() == 20);
    int answers_with_load_on_fds = 0;
    for (const std::string& answer : answers) {
        INFO(answer);
        const std::vector<Row> rows = parse_listing(answer); // every line a whole task line
        for (std::size_t i = 1; i < rows.size(); ++i) {
            CHECK(rows[i - 1].id < rows[i].id);
        }
        for (const TaskId id : load_tasks) {
            const Row* row = find_row(rows, id);
            REQUIRE(row != nullptr);
            CHECK((row->name == "pinger" || row->name == "ponger"));
        }
        CHECK(row_of(rows, monitor).name == "monitor");
        CHECK(row_of(rows, client).name == "test client");
        CHECK(count_named(rows, "monitor client") == 1);
        answers_with_load_on_fds += std::any_of(rows.begin(), rows.end(), [](const Row& row) {
            return (row.name == "pinger" || row.name == "ponger") && row.waits_on.starts_with("fd ");
        }) ? 1 : 0;
    }
    CHECK(answers_with_load_on_fds > 0); // the answers came while the load ran, not after

    finish(kernel);
    pairs.clear();
    require_empty(kernel);
}

// =================================================================================================
// d. Garbage, and too many clients
// =================================================================================================

struct Exchange {
    std::string answer;
    std::string how; // "closed": recv gave 0
};

// Connects, sends `bytes`, reads until the monitor closes.
Task<> send_garbage(SocketAddress address, std::string bytes, Exchange& heard) {
    AsyncSocket socket = co_await connect_to_monitor(std::move(address));
    co_await corio::timeout_after(io_limit, socket.send_all(std::string_view(bytes)));
    co_await read_to_end(socket, heard.answer, heard.how);
}

Task<> ask_once(SocketAddress address, std::string line, std::string& answer) {
    AsyncSocket socket = co_await connect_to_monitor(std::move(address));
    answer = co_await ask(socket, std::move(line), ps_complete);
}

TEST_CASE("the monitor closes a connection that sends garbage, and serves the next one", "[monitor]") {
    FrameLeakCheck leaks;
    TemporaryDirectory directory("corio-monitor-");
    Scheduler kernel;
    const SocketAddress address = serve_monitor_in(kernel, directory).address;
    const std::size_t max_line = corio::MonitorLimits{}.max_line;

    const auto exchange = [&](const std::string& bytes) {
        Exchange heard;
        REQUIRE(run_until_ended(kernel, {kernel.add_task(send_garbage(address, bytes, heard))}));
        return heard;
    };
    const auto check_refused = [&](const std::string& bytes, const std::string& error) {
        const Exchange heard = exchange(bytes);
        CHECK(heard.answer == error);
        CHECK(heard.how == "closed");
    };

    SECTION("a line longer than max_line") {
        INFO("max_line + 1, no newline yet");
        check_refused(std::string(max_line + 1, 'x'), "error: line too long\n");
        INFO("max_line + 1, and its newline");
        check_refused(std::string(max_line + 1, 'x') + "\n", "error: line too long\n");
        INFO("64 KiB of one line, more than the monitor reads before it refuses");
        check_refused(std::string(64 * 1024, 'x') + "\n", "error: line too long\n");
        INFO("a good line, then a long one: the first is answered");
        const Exchange heard = exchange("stats\n" + std::string(4 * max_line, 'y'));
        CHECK(heard.answer.starts_with("backend "));
        CHECK(heard.answer.ends_with("\nerror: line too long\n"));
        CHECK(heard.how == "closed");
    }
    SECTION("a line of max_line is no garbage") {
        std::string answer;
        std::string line = "ps" + std::string(max_line - 2, ' ') + "\n"; // trailing spaces are ignored
        REQUIRE(run_until_ended(kernel, {kernel.add_task(ask_once(address, line, answer))}));
        CHECK(answer.starts_with(std::string(header) + "\n"));
    }
    SECTION("a line with a NUL byte") {
        check_refused(std::string("ps\0\n", 4), "error: not a text command\n");
    }
    SECTION("a line with a 0xff byte") {
        check_refused("\xffps\n", "error: not a text command\n");
        check_refused("where \x1b[2J1\n", "error: not a text command\n");
    }
    SECTION("a burst of binary bytes after the garbage") {
        std::string bytes(100 * 1024, '\0');
        for (std::size_t i = 0; i < bytes.size(); ++i) {
            bytes[i] = static_cast<char>(i * 7919 % 251);
        }
        check_refused(bytes, "error: not a text command\n");
    }

    // The monitor serves whoever comes next.
    std::string answer;
    REQUIRE(run_until_ended(kernel, {kernel.add_task(ask_once(address, "ps\n", answer))}));
    INFO(answer);
    CHECK(count_named(parse_listing(answer), "monitor") == 1);

    finish(kernel);
    require_empty(kernel);
}

// Two clients, served; a third refused; the two still served; once one leaves, a fourth served.
struct Crowd {
    std::string first_help, second_help, refused, refused_how, first_ps, second_ps, fourth_stats;
    int fourth_attempts = 0;
};

Task<> crowd(SocketAddress address, Crowd& heard) {
    AsyncSocket first = co_await connect_to_monitor(address);
    heard.first_help = co_await ask(first, "help\n", help_complete);
    AsyncSocket second = co_await connect_to_monitor(address);
    heard.second_help = co_await ask(second, "help\n", help_complete);
    {
        AsyncSocket third = co_await connect_to_monitor(address);
        co_await read_to_end(third, heard.refused, heard.refused_how);
    }
    heard.first_ps = co_await ask(first, "ps\n", [](const std::string& text) {
        return ends_with_line_of(text, "") && std::count(text.begin(), text.end(), '\n') >= 5;
    });
    heard.second_ps = co_await ask(second, "ps\n", [](const std::string& text) {
        return ends_with_line_of(text, "") && std::count(text.begin(), text.end(), '\n') >= 5;
    });
    first.close(); // its monitor client ends when it reads the end: a place comes free
    for (int attempt = 1; attempt <= 200 && heard.fourth_stats.empty(); ++attempt) {
        heard.fourth_attempts = attempt;
        AsyncSocket fourth = co_await connect_to_monitor(address);
        co_await corio::timeout_after(io_limit, fourth.send_all(std::string_view("stats\n")));
        std::string answer;
        (void)co_await read_until(fourth, answer, [](const std::string& text) {
            return ends_with_line_of(text, "lent_buffers ") || ends_with_line_of(text, "error: ");
        });
        if (answer.starts_with("backend ")) {
            heard.fourth_stats = answer;
        } else {
            co_await corio::Sleep{5ms};
        }
    }
}

TEST_CASE("the monitor refuses more than max_clients connections, and serves the others", "[monitor]") {
    FrameLeakCheck leaks;
    TemporaryDirectory directory("corio-monitor-");
    Scheduler kernel;
    corio::MonitorLimits limits;
    limits.max_clients = 2;
    const ServedMonitor served = serve_monitor_in(kernel, directory, limits);
    const SocketAddress& address = served.address;
    const TaskId monitor = served.monitor;
    Crowd heard;
    REQUIRE(run_until_ended(kernel, {kernel.add_task(crowd(address, heard))}));

    CHECK(help_complete(heard.first_help));
    CHECK(help_complete(heard.second_help));
    CHECK(heard.refused == "error: too many monitor clients\n");
    CHECK(heard.refused_how == "closed");
    for (const std::string* ps : {&heard.first_ps, &heard.second_ps}) {
        INFO(*ps);
        const std::vector<Row> rows = parse_listing(*ps);
        CHECK(count_named(rows, "monitor client") == 2); // the refused one got no task
        CHECK(find_row(rows, monitor) != nullptr);
    }
    INFO("attempts: " << heard.fourth_attempts);
    CHECK(heard.fourth_stats.starts_with("backend "));

    finish(kernel);
    require_empty(kernel);
}

// A monitor client killed before it first ran must give its place back (else max_clients such
// kills would shut everyone out).
Task<> connect_and_hold(SocketAddress address, AsyncSocket& held) {
    held = co_await connect_to_monitor(std::move(address));
}

TEST_CASE("a monitor client killed before it ran gives its place back", "[monitor]") {
    FrameLeakCheck leaks;
    TemporaryDirectory directory("corio-monitor-");
    Scheduler kernel;
    corio::MonitorLimits limits;
    limits.max_clients = 1;
    const SocketAddress address = serve_monitor_in(kernel, directory, limits).address;
    AsyncSocket held;
    REQUIRE(run_until_ended(kernel, {kernel.add_task(connect_and_hold(address, held))}));
    // Run until the monitor has spawned the client's task, and kill it before it runs.
    std::optional<TaskId> spawned;
    for (int i = 0; i < 1000 && !spawned; ++i) {
        kernel.run_until_complete(yield_times(1));
        for (const TaskInfo& task : kernel.snapshot()) {
            if (task.name != "monitor") {
                spawned = task.id;
            }
        }
    }
    REQUIRE(spawned.has_value());
    kernel.kill(*spawned);
    held.close();
    std::string answer;
    REQUIRE(run_until_ended(kernel, {kernel.add_task(ask_once(address, "ps\n", answer))}));
    INFO(answer);
    CHECK(answer.starts_with(std::string(header)));

    finish(kernel);
    require_empty(kernel);
}

// A client may kill its own monitor client: it hears the answer, then the end.
Task<> kill_own_client(SocketAddress address, Exchange& heard, std::uint64_t& own) {
    AsyncSocket socket = co_await connect_to_monitor(std::move(address));
    const std::string ps = co_await ask(socket, "ps\n", ps_complete);
    own = parse_listing(ps).back().id;
    co_await corio::timeout_after(io_limit, socket.send_all("kill " + std::to_string(own) + "\n"));
    co_await read_to_end(socket, heard.answer, heard.how);
}

TEST_CASE("kill N of the monitor client answering is answered, then the connection ends", "[monitor]") {
    FrameLeakCheck leaks;
    TemporaryDirectory directory("corio-monitor-");
    Scheduler kernel;
    const SocketAddress address = serve_monitor_in(kernel, directory).address;
    Exchange heard;
    std::uint64_t own = 0;
    REQUIRE(run_until_ended(kernel, {kernel.add_task(kill_own_client(address, heard, own))}));
    CHECK(heard.answer == "killed " + std::to_string(own) + "\n");
    CHECK(heard.how == "closed");
    finish(kernel);
    require_empty(kernel);
}

// Clients that send requests and leave without reading the answers: each of their connections
// ends (a broken pipe, a reset), and nothing else. No task fails.
// One at a time: each leaves once its monitor client has begun to answer (the answers, 200 long
// pstrees, fill the socket's buffer), and the next comes once that client has ended.
Task<> ask_and_leave(Scheduler& kernel, SocketAddress address, int times, int& left_mid_answer) {
    std::string requests;
    for (int j = 0; j < 200; ++j) {
        requests += "pstree\n";
    }
    for (int i = 0; i < times; ++i) {
        {
            AsyncSocket socket = co_await connect_to_monitor(address);
            co_await corio::timeout_after(io_limit, socket.send_all(std::string_view(requests)));
            bool answering = false;
            for (int wait = 0; wait < 5000 && !answering; ++wait) {
                co_await corio::Sleep{1ms};
                for (const TaskInfo& task : kernel.snapshot()) {
                    answering = answering || (task.name == "monitor client" && task.waits_on.find("write") != std::string::npos);
                }
            }
            left_mid_answer += answering ? 1 : 0;
        } // the socket closes, unread answers in it
        for (int wait = 0; wait < 5000 && !monitor_clients(kernel).empty(); ++wait) {
            co_await corio::Sleep{1ms};
        }
    }
}

TEST_CASE("a monitor client that leaves in the middle of answers costs its connection only", "[monitor]") {
    FrameLeakCheck leaks;
    TemporaryDirectory directory("corio-monitor-");
    Scheduler kernel;
    Log reports;
    record_reports(kernel, reports); // a monitor client's failure would land here
    const ServedMonitor served = serve_monitor_in(kernel, directory);
    const SocketAddress& address = served.address;
    const TaskId monitor = served.monitor;
    for (int i = 0; i < 20; ++i) { // many tasks, so that each pstree is long
        kernel.add_task(sleeper());
    }
    int left_mid_answer = 0;
    REQUIRE(run_until_ended(kernel, {kernel.add_task(ask_and_leave(kernel, address, 10, left_mid_answer))}));
    CHECK(left_mid_answer == 10); // each left while its monitor client waited to send more
    CHECK(monitor_clients(kernel).empty());
    std::string answer;
    REQUIRE(run_until_ended(kernel, {kernel.add_task(ask_once(address, "ps\n", answer))}));
    CHECK(count_named(parse_listing(answer), "monitor") == 1);
    CHECK(kernel.contains(monitor));
    finish(kernel);
    INFO("reported: " << (reports.empty() ? "" : reports.front()));
    CHECK(reports.empty());
    require_empty(kernel);
}

// =================================================================================================
// e. monitor_listener
// =================================================================================================

TEST_CASE("monitor_listener takes loopback addresses and Unix paths only", "[monitor]") {
    for (const char* refused : {"0.0.0.0:0", "8.8.8.8:1", "192.168.1.1:0", "10.0.0.1:9000", "[::]:0",
                                "[2001:db8::1]:0", "[::ffff:127.0.0.1]:0", "127.0.0.1:", "127.0.0.1:x",
                                "127.0.0.1:99999", "127.0.0.1:-1", "[::1]:65536"}) {
        INFO(refused);
        CHECK_THROWS_AS(corio::monitor_listener(refused), std::invalid_argument);
    }

    AsyncSocket ipv4 = corio::monitor_listener("127.0.0.1:0");
    CHECK(ipv4.local_address().host() == "127.0.0.1");
    CHECK(ipv4.local_address().port() != 0);
    AsyncSocket other_loopback = corio::monitor_listener("127.0.0.2:0"); // all of 127/8 is loopback
    CHECK(other_loopback.local_address().host() == "127.0.0.2");

    TemporaryDirectory directory("corio-monitor-");
    const std::string path = (directory.path() / "m.sock").string();
    AsyncSocket unix_listener = corio::monitor_listener(path);
    CHECK(unix_listener.local_address().path() == path);
    INFO("a path that exists already");
    CHECK_THROWS_AS(corio::monitor_listener(path), std::system_error);

    try {
        AsyncSocket ipv6 = corio::monitor_listener("[::1]:0");
        CHECK(ipv6.local_address().host() == "::1");
        CHECK(ipv6.local_address().port() != 0);
    } catch (const std::system_error& error) {
        if (error.code() != std::errc::address_not_available &&
            error.code() != std::errc::address_family_not_supported) {
            throw;
        }
        WARN("IPv6 is unavailable here (" << error.what() << "): [::1]:0 not checked");
    }
}

// =================================================================================================
// f. The dump on a signal
// =================================================================================================

// Takes the SIGUSR1s an earlier case may have left pending, so that this one starts clean.
Task<> take_leftovers() {
    for (int i = 0; i < 100; ++i) {
        const std::optional<int> taken = co_await corio::ignore_after(1ms, corio::SignalWait{SIGUSR1});
        if (!taken) {
            break;
        }
    }
}

// Raises SIGUSR1 once the other tasks wait, then reads the dump from the pipe until it holds
// the frames of `napping`.
Task<> raise_and_read(int pipe_fd, TaskId napping, std::string& dump) {
    for (int i = 0; i < 3; ++i) {
        co_await corio::Yield{};
    }
    REQUIRE(::raise(SIGUSR1) == 0);
    const std::string napping_where = "task " + std::to_string(napping.serial()) + " (sleeper)";
    for (int i = 0; i < 1000; ++i) {
        co_await corio::timeout_after(io_limit, corio::ReadWait{pipe_fd});
        std::array<char, 4096> chunk{};
        const ssize_t count = ::read(pipe_fd, chunk.data(), chunk.size());
        if (count > 0) {
            dump.append(chunk.data(), static_cast<std::size_t>(count));
        }
        const std::size_t at = dump.find(napping_where);
        if (at != std::string::npos && dump.find("  #2 ", at) != std::string::npos &&
            dump.back() == '\n') {
            break;
        }
    }
}

TEST_CASE("monitor dump: dump_tasks_on_signal writes every task and its frames when the signal comes", "[monitor]") {
    corio::claim_signals({SIGUSR1});
    corio::run(take_leftovers());
    FrameLeakCheck leaks;
    FdPair pipe = make_pipe();
    Scheduler kernel;
    const TaskId napping = kernel.add_task(sleeper());
    const TaskId dumper = kernel.add_task(corio::dump_tasks_on_signal(kernel, SIGUSR1, pipe.second.get()));
    std::string dump;
    const TaskId reader = kernel.add_task(raise_and_read(pipe.first.get(), napping, dump));
    REQUIRE(run_until_ended(kernel, {reader}));

    INFO(dump);
    CHECK(dump.starts_with("corio: task dump ("));
    const std::vector<std::string> lines = lines_of(dump);
    REQUIRE(lines.size() > 2);
    CHECK(lines[1] == header);
    // The tree: the dumper, the sleeper, the reader (running when it asked), and run_bounded's own.
    const std::size_t tree_end = dump.find("\n\n");
    REQUIRE(tree_end != std::string::npos);
    const std::vector<Row> rows = parse_listing(dump.substr(dump.find('\n') + 1, tree_end - dump.find('\n')));
    CHECK(find_row(rows, napping) != nullptr);
    REQUIRE(find_row(rows, dumper) != nullptr);
    CHECK(row_of(rows, dumper).name == "task dump");
    CHECK(row_of(rows, dumper).state == "running");
    // The where of the waiting sleeper, frames innermost first.
    const std::size_t where_at = dump.find("\ntask " + std::to_string(napping.serial()) + " (sleeper), waiting on sleep");
    REQUIRE(where_at != std::string::npos);
    const std::size_t where_end = dump.find("\n\n", where_at + 1);
    const std::string where = dump.substr(where_at + 1, where_end == std::string::npos ? std::string::npos : where_end - where_at);
    CHECK(frames_of(where) == std::vector<std::string>{"nap_deeper", "nap_deep", "sleeper"});
    // One where block per task of the tree.
    std::size_t blocks = 0;
    for (const std::string& line : lines) {
        blocks += line.starts_with("task ") ? 1 : 0;
    }
    CHECK(blocks == rows.size());

    kill_all(kernel);
    kernel.forget_fd(pipe.first.get()); // raise_and_read waited on it
    require_empty(kernel);
}

namespace {
// SIGPIPE at its default (death) while it lives; this test program ignores it otherwise.
struct SigpipeDefault {
    SigpipeDefault() { std::signal(SIGPIPE, SIG_DFL); }
    SigpipeDefault(const SigpipeDefault&) = delete;
    SigpipeDefault& operator=(const SigpipeDefault&) = delete;
    ~SigpipeDefault() { std::signal(SIGPIPE, SIG_IGN); }
};

bool sigpipe_pending() {
    sigset_t pending;
    sigemptyset(&pending);
    return ::sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1;
}

Task<> raise_twice_then_stop(Scheduler& kernel, TaskId dumper, bool& dumper_alive) {
    for (int i = 0; i < 2; ++i) {
        co_await corio::Yield{};
        REQUIRE(::raise(SIGUSR1) == 0);
        co_await corio::Sleep{10ms};
    }
    dumper_alive = kernel.contains(dumper);
    kernel.kill(dumper);
}
} // namespace

TEST_CASE("monitor dump: a dump to a pipe whose reader is gone is lost, the process goes on", "[monitor]") {
    corio::claim_signals({SIGUSR1});
    corio::run(take_leftovers());
    FrameLeakCheck leaks;
    const SigpipeDefault deadly; // without the fix, the write below ends this test program
    FdPair pipe = make_pipe();
    pipe.first.reset(); // nobody will read
    Scheduler kernel;
    const TaskId dumper = kernel.add_task(corio::dump_tasks_on_signal(kernel, SIGUSR1, pipe.second.get()));
    bool dumper_alive = false;
    REQUIRE(run_until_ended(kernel, {kernel.add_task(raise_twice_then_stop(kernel, dumper, dumper_alive))}));
    CHECK(dumper_alive); // both dumps were lost, and it waited for the next signal
    CHECK_FALSE(sigpipe_pending());
    require_empty(kernel);
}

// Many tasks, so that the dump outgrows a pipe's buffer; the write end is non-blocking, as
// stderr may be. A thread reads the pipe meanwhile (the loop's thread writes the dump).
// Raises the signal, then waits (bounded) until the reader has begun to read the dump: the dumper
// writes all of it in one resumption, so by the time this task runs again it is written.
Task<> raise_once(const std::atomic<std::size_t>& read_so_far) {
    co_await corio::Yield{};
    REQUIRE(::raise(SIGUSR1) == 0);
    for (int i = 0; i < 5000 && read_so_far.load() == 0; ++i) {
        co_await corio::Sleep{1ms};
    }
}

TEST_CASE("monitor dump: dump_tasks_on_signal writes a dump larger than a pipe's buffer to a non-blocking fd whole",
          "[monitor]") {
    corio::claim_signals({SIGUSR1});
    corio::run(take_leftovers());
    FrameLeakCheck leaks;
    FdPair pipe = make_pipe(); // both ends non-blocking
    std::string dump;
    std::atomic<std::size_t> read_so_far{0};
    std::thread reader([&dump, &read_so_far, fd = pipe.first.get()] {
        // Until the writer's end closes, or 10 s.
        const auto deadline = ProcessClock::now() + 10s;
        std::vector<char> chunk(65536);
        while (ProcessClock::now() < deadline) {
            pollfd watched{fd, POLLIN, 0};
            if (::poll(&watched, 1, 100) <= 0) {
                continue;
            }
            const ssize_t count = ::read(fd, chunk.data(), chunk.size());
            if (count > 0) {
                dump.append(chunk.data(), static_cast<std::size_t>(count));
                read_so_far = dump.size();
            } else if (count == 0) {
                return;
            }
        }
    });
    std::size_t tasks = 0;
    {
        Scheduler kernel;
        for (int i = 0; i < 1500; ++i) {
            kernel.add_task(sleeper());
        }
        kernel.add_task(corio::dump_tasks_on_signal(kernel, SIGUSR1, pipe.second.get()));
        kernel.run_until_complete(yield_times(2)); // all asleep
        tasks = kernel.task_count() + 1;          // and raise_once
        kernel.run_until_complete(raise_once(read_so_far));
        kill_all(kernel);
    }
    pipe.second.reset(); // the reader sees the end
    reader.join();
    CHECK(dump.size() > 64 * 1024);
    CHECK(dump.starts_with("corio: task dump (" + std::to_string(tasks) + " tasks)\n"));
    std::size_t blocks = 0;
    for (const std::string& line : lines_of(dump)) {
        blocks += line.starts_with("task ") ? 1 : 0;
    }
    CHECK(blocks == tasks); // every task's where block came, the last one too
    CHECK(dump.ends_with("\n"));
}

// =================================================================================================
// g. The example servers' --monitor
// =================================================================================================

#ifdef CORIO_ECHO_SERVER_PATH

// A blocking Unix-socket client of a monitor whose reads and writes give up after 5 s.
UniqueFd connect_unix(const std::string& path) {
    UniqueFd socket(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    REQUIRE(socket.get() >= 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    REQUIRE(path.size() < sizeof address.sun_path);
    std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
    set_timeouts(socket.get(), 5s);
    int result = 0;
    do {
        result = ::connect(socket.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address);
    } while (result < 0 && errno == EINTR);
    INFO("connect to " << path << ": " << errno_text(errno));
    REQUIRE(result == 0);
    return socket;
}

// Reads (poll with a timeout) until `done` says the answer is whole, or 5 s have passed.
std::string read_answer(int fd, const std::function<bool(const std::string&)>& done) {
    std::string answer;
    const auto deadline = ProcessClock::now() + 5s;
    while (!done(answer) && ProcessClock::now() < deadline) {
        const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - ProcessClock::now());
        Reading reading = read_some(fd, left);
        if (reading.kind != Reading::Kind::data) {
            break;
        }
        answer += reading.data;
    }
    return answer;
}

std::string ask_process(int fd, const std::string& line, const std::function<bool(const std::string&)>& done) {
    send_text(fd, line);
    const std::string answer = read_answer(fd, done);
    INFO("asked " << trimmed(line) << ", got: " << answer);
    REQUIRE(done(answer));
    return answer;
}

// What an example server is made of, as its monitor lists it.
struct ExampleServer {
    std::string program;
    std::string coroutine;            // its accept loop's coroutine (the task is "accept loop")
    std::string request;              // something a client sends, which the server answers
    std::string connection_coroutine; // the task that serves a connection
};

// An example server started with --monitor on a path of `directory`: checks what its monitor
// says, then that it exits with status 0 on SIGTERM and removes its socket file.
void check_example_monitor(const ExampleServer& example, const std::filesystem::path& directory) {
    const std::string path = (directory / "m.sock").string();
    Server server(example.program, {"--monitor", path});
    const std::optional<std::string> said = server.process.read_line(5s);
    REQUIRE(said.has_value());
    CHECK(*said == "monitor on " + path);

    // A connection of the server's own, answered, so that its task is listed too.
    const UniqueFd connection = connect_to(server.port);
    send_text(connection.get(), example.request);
    CHECK(!read_some(connection.get(), 5s).data.empty());

    const UniqueFd monitor = connect_unix(path);
    const std::string ps = ask_process(monitor.get(), "ps\n", ps_complete);
    INFO(ps);
    const std::vector<Row> rows = parse_listing(ps);
    CHECK(count_named(rows, "monitor") == 1);
    CHECK(count_named(rows, "monitor client") == 1);
    REQUIRE(count_named(rows, "accept loop") == 1); // with --threads, the first thread's only
    CHECK(count_coroutine(rows, example.connection_coroutine) == 1);
    const auto accept_loop = std::find_if(rows.begin(), rows.end(), [](const Row& row) { return row.name == "accept loop"; });
    CHECK(accept_loop->state == "waiting");
    CHECK(accept_loop->waits_on.starts_with("fd "));
    const Row& monitor_row = *std::find_if(rows.begin(), rows.end(), [](const Row& row) { return row.name == "monitor"; });
    CHECK(monitor_row.parent == std::to_string(accept_loop->id));

    const std::string loop_frame = " " + example.coroutine + " at ";
    const std::string where = ask_process(monitor.get(), "where " + std::to_string(accept_loop->id) + "\n",
                                          [&](const std::string& text) {
                                              return ends_with_newline(text) && text.find(loop_frame) != std::string::npos;
                                          });
    INFO(where);
    const std::vector<std::string> frames = frames_of(where);
    REQUIRE(!frames.empty());
    CHECK(frames.front() == "accept"); // innermost: the accept it waits in
    CHECK(std::count(frames.begin(), frames.end(), example.coroutine) == 1);

    // Clients that ask and leave without reading: the server goes on (a monitor client's
    // failure would be a task failure, which the example servers take as fatal).
    for (int i = 0; i < 10; ++i) {
        const UniqueFd leaving = connect_unix(path);
        std::string requests;
        for (int j = 0; j < 500; ++j) {
            requests += "pstree\n";
        }
        // It may be refused and closed before all of it is sent (too many clients, for a moment).
        static_cast<void>(::send(leaving.get(), requests.data(), requests.size(), MSG_NOSIGNAL));
    }
    // A new client is served once the monitor has seen them go (until then it may be told that
    // there are too many clients).
    std::string again;
    for (int attempt = 0; attempt < 200 && !ps_complete(again); ++attempt) {
        const UniqueFd client = connect_unix(path);
        static_cast<void>(::send(client.get(), "ps\n", 3, MSG_NOSIGNAL)); // a refusal may close it first
        again = read_answer(client.get(), [](const std::string& text) {
            return ps_complete(text) || text.starts_with("error: ");
        });
        if (!ps_complete(again)) {
            std::this_thread::sleep_for(10ms);
        }
    }
    INFO(again);
    REQUIRE(ps_complete(again));
    CHECK(count_named(parse_listing(again), "accept loop") == 1);
    CHECK(server.process.running());

    server.process.send_signal(SIGTERM);
    const auto status = server.process.wait_exit(5s);
    INFO(describe_status(status) << "; stderr: " << server.process.stderr_text());
    CHECK(exited_with(status, 0));
    CHECK(server.process.stderr_text().empty());
    CHECK_FALSE(std::filesystem::exists(path)); // the server removed its socket file
}

// Each of these --monitor values makes `program` exit with status 2 and a message, and serve
// nothing; a file that was there stays.
void check_bad_monitor_paths(const std::string& program, const std::filesystem::path& directory) {
    const std::string existing = (directory / "taken").string();
    std::ofstream(existing) << "not a socket\n";
    const std::vector<std::string> values{"8.8.8.8:1", "0.0.0.0:0", "[::]:0", "127.0.0.1:99999", "", existing,
                                          (directory / "no/such/dir/m.sock").string()};
    for (const std::string& value : values) {
        INFO(program << " --monitor '" << value << "'");
        Child child(program, {"--port", "0", "--monitor", value});
        const auto status = child.wait_exit(5s);
        INFO(describe_status(status));
        CHECK(exited_with(status, 2));
        const std::string error = child.stderr_text();
        INFO("stderr: " << error);
        CHECK(error.find("--monitor") != std::string::npos);
        CHECK(child.read_stdout_to_end(1s).empty()); // never said "listening on"
    }
    CHECK(std::filesystem::is_regular_file(existing));
}

TEST_CASE("echo_server --monitor serves the monitor on a Unix socket", "[monitor][examples]") {
    TemporaryDirectory directory("corio-monitor-");
    check_example_monitor({CORIO_ECHO_SERVER_PATH, "echo_server", "hi\n", "handle_client"}, directory.path());
}

TEST_CASE("echo_server --threads 2 --monitor watches the first thread", "[monitor][examples]") {
    TemporaryDirectory directory("corio-monitor-");
    // The connection may land on either thread: list it only if it is on the first. So no
    // connection task is counted here; the accept loop must be listed once.
    const std::string path = (directory.path() / "m.sock").string();
    Server server(CORIO_ECHO_SERVER_PATH, {"--threads", "2", "--monitor", path});
    const std::optional<std::string> said = server.process.read_line(5s);
    REQUIRE(said.has_value());
    CHECK(*said == "monitor on " + path);
    const UniqueFd monitor = connect_unix(path);
    const std::string ps = ask_process(monitor.get(), "ps\n", ps_complete);
    INFO(ps);
    const std::vector<Row> rows = parse_listing(ps);
    CHECK(count_named(rows, "accept loop") == 1);
    CHECK(count_named(rows, "monitor") == 1);
    server.process.send_signal(SIGTERM);
    CHECK(exited_with(server.process.wait_exit(5s), 0));
    CHECK_FALSE(std::filesystem::exists(path));
}

TEST_CASE("echo_server --monitor on loopback TCP says its port", "[monitor][examples]") {
    Server server(CORIO_ECHO_SERVER_PATH, {"--monitor", "127.0.0.1:0"});
    const std::optional<std::string> said = server.process.read_line(5s);
    REQUIRE(said.has_value());
    REQUIRE(said->starts_with("monitor on 127.0.0.1:"));
    const int port = std::stoi(said->substr(said->rfind(':') + 1));
    REQUIRE(port > 0);
    const UniqueFd monitor = connect_to(static_cast<std::uint16_t>(port));
    const std::string stats = ask_process(monitor.get(), "stats\n",
                                          [](const std::string& text) { return ends_with_line_of(text, "lent_buffers "); });
    CHECK(stats.starts_with("backend "));
    server.process.send_signal(SIGTERM);
    CHECK(exited_with(server.process.wait_exit(5s), 0));
}

TEST_CASE("echo_server rejects a bad --monitor with status 2", "[monitor][examples][options]") {
    TemporaryDirectory directory("corio-monitor-");
    check_bad_monitor_paths(CORIO_ECHO_SERVER_PATH, directory.path());
    Child help(CORIO_ECHO_SERVER_PATH, {"--help"});
    const std::string usage = help.read_stdout_to_end(5s);
    CHECK(usage.find("--monitor PATH") != std::string::npos);
    CHECK(exited_with(help.wait_exit(5s), 0));
}
#endif

#ifdef CORIO_HELLO_SERVER_PATH
TEST_CASE("hello_server --monitor serves the monitor on a Unix socket", "[monitor][examples]") {
    TemporaryDirectory directory("corio-monitor-");
    check_example_monitor({CORIO_HELLO_SERVER_PATH, "hello_server", "hi\n", "greet"}, directory.path());
}

TEST_CASE("hello_server rejects a bad --monitor with status 2", "[monitor][examples][options]") {
    TemporaryDirectory directory("corio-monitor-");
    check_bad_monitor_paths(CORIO_HELLO_SERVER_PATH, directory.path());
}
#endif

#ifdef CORIO_HTTP_SERVER_PATH
TEST_CASE("http_server --monitor serves the monitor on a Unix socket", "[monitor][examples]") {
    TemporaryDirectory directory("corio-monitor-");
    check_example_monitor({CORIO_HTTP_SERVER_PATH, "http_server", "HEAD / HTTP/1.1\r\nHost: x\r\n\r\n",
                           "serve_connection"},
                          directory.path());
}

TEST_CASE("http_server rejects a bad --monitor with status 2", "[monitor][examples][options]") {
    TemporaryDirectory directory("corio-monitor-");
    check_bad_monitor_paths(CORIO_HTTP_SERVER_PATH, directory.path());
}
#endif

} // namespace
