// Model test: runs a Program (program.hpp) on one Scheduler with a VirtualClock and checks every
// outcome against what the documented semantics predict. Used by tests/test_model.cpp (fixed
// seeds) and tests/fuzz/fuzz_model.cpp (libFuzzer); it needs no test framework.
//
// The reference model is a ledger the tasks keep of themselves, and the rules each operation
// must obey given the ledger at the moment it is awaited:
//   * time:    virtual time stands still while a task is ready, so every wait ends at an exact
//              time: Sleep at its deadline, a Yield or NewTask at once, a timed-out wait at its
//              deadline, a wait that completed no later than its deadline;
//   * waking:  a wait ends only for its reason (the awaited task ended, the event was set, the fd
//              has data, the deadline passed); a wake too early, twice, or never shows as a broken
//              rule here, a task left at the end, or (under ASan) a use after free;
//   * tasks:   each task runs its operations in order and ends completed (all of them, no throw),
//              failed (at its first throw) or killed (by a KillTask that said so, or itself); a
//              child exists iff its parent got past the spawn; WaitTask gives the target's end, with
//              the very exception it threw, or no_such_task iff the target was not alive; KillTask
//              says true iff the target was alive, and the target dies during the call; a failure is
//              reported to the exception handler iff no waiter received it;
//   * data:    each socket end carries a byte stream with known content: whatever recv gives
//              continues it exactly (a timeout never loses or duplicates bytes), and what is left
//              in the socket at the end is the rest of what send said it sent;
//   * the end: no task, timer, waiter or watched fd left; no frame and no fd leaked.
#pragma once

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <optional>
#include <poll.h>
#include <stdexcept>
#include <string>
#include <sys/socket.h>
#include <system_error>
#include <utility>
#include <vector>

#include <corio/diag/task_listing.hpp>
#include <corio/net/async_socket.hpp>
#include <corio/sync/event.hpp>
#include <corio/scheduler.hpp>
#include <corio/syscalls.hpp>
#include <corio/task.hpp>
#include <corio/timeout.hpp>
#include <corio/timeout_error.hpp>
#include <corio/virtual_clock.hpp>

#include "model/program.hpp"
#include "support/fd.hpp"

#ifndef CORIO_COUNT_FRAMES
#error "the model test must be built with CORIO_COUNT_FRAMES defined"
#endif

namespace corio::model {

using Clock = Scheduler::Clock;

/// What the program throws on purpose (op throw_error).
struct ThrownByProgram : std::runtime_error {
    using std::runtime_error::runtime_error;
};

/// What a run did, for the test's figures (how much each path was exercised).
struct Tally {
    std::size_t runs = 0;
    std::size_t tasks = 0;
    std::size_t ops = 0;
    std::size_t timeouts = 0;       // waits that ended by their deadline
    std::size_t kills = 0;          // KillTask calls that killed a task
    std::size_t failures = 0;       // tasks that threw
    std::size_t reported = 0;       // of those, reported to the exception handler
    std::size_t bytes = 0;          // bytes received
    std::size_t skipped = 0;        // socket operations skipped: the end was busy in another task
    std::size_t waited_tasks = 0;   // WaitTask calls that got an outcome other than no_such_task

    Tally& operator+=(const Tally& other) noexcept {
        runs += other.runs;
        tasks += other.tasks;
        ops += other.ops;
        timeouts += other.timeouts;
        kills += other.kills;
        failures += other.failures;
        reported += other.reported;
        bytes += other.bytes;
        skipped += other.skipped;
        waited_tasks += other.waited_tasks;
        return *this;
    }
};

/// The result of one run: the broken rules (empty when all is well) and the tally.
struct Verdict {
    std::vector<std::string> violations;
    Tally tally;
    [[nodiscard]] bool ok() const noexcept { return violations.empty(); }
};

namespace detail {

enum class End : std::uint8_t { unborn, pending, running, completed, failed, killed };

inline const char* name_of(End end) {
    switch (end) {
    case End::unborn: return "never spawned";
    case End::pending: return "spawned, never ran";
    case End::running: return "alive";
    case End::completed: return "completed";
    case End::failed: return "failed";
    case End::killed: return "killed";
    }
    return "?";
}

// What a task knows of itself (and its killers and waiters of it).
struct TaskLedger {
    TaskId id;
    End end = End::unborn;
    std::size_t at_op = 0; // the operation in progress; ops.size() once all are done
    std::exception_ptr error; // what it threw
    Clock::time_point ended_at{};
    bool killed_by_other = false; // a KillTask of another task said it killed this one
    bool killing_itself = false;  // it is in a KillTask of its own id
    std::size_t received = 0;     // waiters that got its failure
    std::size_t reports = 0;      // exception handler calls for it

    [[nodiscard]] bool alive() const noexcept { return end == End::pending || end == End::running; }
};

// One direction of a socket pair: the bytes written on end `e` and read on end `e ^ 1`.
struct Stream {
    std::uint64_t written = 0;
    std::uint64_t read = 0;
    // The size of the send being awaited: on io_uring a send is done by the kernel while its task
    // waits, so a reader may take its bytes before the send returns and adds them to `written`.
    std::uint64_t in_flight = 0;
    bool writer_busy = false; // one sender and one receiver at a time, so that positions are known
    bool reader_busy = false;
    bool desynced = false; // a task was killed in the middle of a transfer: positions unknown
};

// The content of stream `e` at `position`: known to the checker without storing it.
inline std::byte stream_byte(int e, std::uint64_t position) noexcept {
    return static_cast<std::byte>((position * 131 + static_cast<std::uint64_t>(e) * 17 + 7) % 251);
}

// Everything the tasks of one run share. It outlives the Scheduler (the Events must, and the
// frames the Scheduler destroys at its end refer to it); the sockets are closed before.
struct World {
    World(const Program& p, VirtualClock& c)
        : program(p), clock(c), start(c.now()), tasks(p.tasks.size()) {
        for (int pair = 0; pair < socket_pairs; ++pair) {
            test::FdPair fds = test::socket_pair();
            ends[static_cast<std::size_t>(2 * pair)] = AsyncSocket(fds.first.release());
            ends[static_cast<std::size_t>(2 * pair + 1)] = AsyncSocket(fds.second.release());
        }
    }

    const Program& program;
    VirtualClock& clock;
    Scheduler* kernel = nullptr;
    Clock::time_point start;
    std::vector<TaskLedger> tasks;
    std::array<AsyncSocket, 2 * socket_pairs> ends;
    std::array<Stream, 2 * socket_pairs> streams;
    std::array<Event, event_count> events;
    std::array<std::uint64_t, event_count> event_sets{}; // how many times each event was set
    std::vector<int> victims; // targets of the KillTask calls in progress
    bool tearing_down = false;
    std::vector<std::string> violations;
    Tally tally;

    void violation(int task, std::size_t op, const std::string& what) {
        const auto& ops = program.tasks[static_cast<std::size_t>(task)].ops;
        std::string where = "task " + std::to_string(task);
        if (op < ops.size()) {
            where += " op " + std::to_string(op) + " (" + to_string(ops[op]) + ")";
        }
        violations.push_back(where + ": " + what + " [at " + elapsed(clock.now()) + "]");
    }
    // A broken rule of the run as a whole.
    void violation(const std::string& what) { violations.push_back(what); }
    TaskLedger& ledger(int task) { return tasks[static_cast<std::size_t>(task)]; }
    [[nodiscard]] bool exists(int task) const noexcept {
        return task >= 0 && static_cast<std::size_t>(task) < tasks.size();
    }
    [[nodiscard]] std::string elapsed(Clock::time_point t) const {
        return std::to_string((t - start).count()) + "ns";
    }
};

// Where an operation runs: which task, which of its operations.
struct Context {
    World& world;
    int task;
    std::size_t index;
    const Op& op;

    void violation(const std::string& what) const { world.violation(task, index, what); }
    [[nodiscard]] Clock::time_point now() const noexcept { return world.clock.now(); }
};

// The deadline of a timed wait, and the two rules it obeys in virtual time.
struct Deadline {
    Clock::time_point at;

    // A wait that completed did so no later than its deadline.
    void completed(const Context& c) const {
        if (c.now() > at) {
            c.violation("completed after its deadline " + c.world.elapsed(at));
        }
    }
    // A timed-out wait ends exactly at its deadline.
    void timed_out(const Context& c) const {
        ++c.world.tally.timeouts;
        if (c.now() != at) {
            c.violation("timed out at another time than its deadline " + c.world.elapsed(at));
        }
    }
};

inline Deadline deadline_after(const Context& c, Duration delay) {
    return Deadline{c.world.kernel->deadline_after(delay)};
}

// Marks a task killed when its frame is destroyed before it ended, and checks somebody killed it.
class Witness {
public:
    Witness(World& world, int task) noexcept : world_(world), task_(task) {}
    Witness(const Witness&) = delete;
    Witness& operator=(const Witness&) = delete;
    ~Witness() {
        TaskLedger& me = world_.ledger(task_);
        if (me.end != End::running) {
            return; // it ended by itself
        }
        me.end = End::killed;
        me.ended_at = world_.clock.now();
        const bool expected = world_.tearing_down || me.killing_itself ||
                              std::find(world_.victims.begin(), world_.victims.end(), task_) !=
                                  world_.victims.end();
        if (!expected) {
            world_.violation(task_, me.at_op, "its frame was destroyed but nobody killed it");
        }
    }

private:
    World& world_;
    int task_;
};

// Holds one direction of a stream for a transfer; if the task dies with the transfer unfinished
// (killed), nobody knows any more how much of it went through.
class Transfer {
public:
    Transfer(Stream& stream, bool Stream::*busy) noexcept : stream_(stream), busy_(busy) {
        stream_.*busy_ = true;
    }
    Transfer(const Transfer&) = delete;
    Transfer& operator=(const Transfer&) = delete;
    ~Transfer() {
        stream_.*busy_ = false;
        if (in_flight_) {
            stream_.desynced = true;
        }
    }
    void begin() noexcept { in_flight_ = true; }
    void end() noexcept { in_flight_ = false; }

private:
    Stream& stream_;
    bool Stream::*busy_;
    bool in_flight_ = false;
};

inline bool fd_ready(int fd, short events) {
    pollfd probe{fd, events, 0};
    return ::poll(&probe, 1, 0) == 1 && (probe.revents & events) != 0;
}

// ---- the operations -----------------------------------------------------------------------------

inline Task<> op_spawn(Context c);

// A snapshot taken mid-run agrees with the ledger: one entry per live task, the task taking it
// running and without a stack, every other one named after run_task, its spawner its parent, and
// a waiting one with its frames from run_task down. Rendering it walks every suspended frame's
// chain (ASan checks that chain in the sanitizer stage).
inline void check_snapshot(const Context& c) {
    World& w = c.world;
    const std::vector<TaskInfo> tasks = w.kernel->snapshot();
    static_cast<void>(format_pstree(tasks));
    if (tasks.size() != w.kernel->task_count()) {
        c.violation("the snapshot lists " + std::to_string(tasks.size()) + " of " +
                    std::to_string(w.kernel->task_count()) + " tasks");
    }
    for (const TaskInfo& info : tasks) {
        static_cast<void>(format_where(info));
        std::size_t j = 0;
        while (j < w.tasks.size() && !(w.tasks[j].id == info.id)) {
            ++j;
        }
        if (j == w.tasks.size()) {
            c.violation("the snapshot lists task " + std::to_string(info.id.serial()) + " of no program");
            continue;
        }
        const std::string who = "the snapshot of task " + std::to_string(j);
        const bool me = static_cast<int>(j) == c.task;
        if (me != (info.state == TaskInfo::State::running) || (me && !info.stack.empty())) {
            c.violation(who + " says " + to_string(info.state) + " with " +
                        std::to_string(info.stack.size()) + " frames");
        }
        if (info.name != "run_task") {
            c.violation(who + " names it " + info.name);
        }
        const int parent = w.program.tasks[j].parent;
        if (!(info.parent == (parent < 0 ? TaskId{} : w.ledger(parent).id))) {
            c.violation(who + " gives it parent " + std::to_string(info.parent.serial()));
        }
        if (info.state == TaskInfo::State::waiting &&
            (info.waits_on.empty() || info.stack.empty() || info.stack.front().function != "run_task")) {
            c.violation(who + " says it waits on '" + info.waits_on + "' in " +
                        std::to_string(info.stack.size()) + " frames");
        }
    }
}

inline Task<> op_yield(Context c) {
    check_snapshot(c);
    const Clock::time_point before = c.now();
    co_await Yield{};
    if (c.now() != before) {
        c.violation("time passed during a Yield");
    }
}

inline Task<> op_sleep(Context c) {
    const Clock::time_point before = c.now();
    const Clock::time_point expected =
        c.op.duration <= Duration::zero() ? before : c.world.kernel->deadline_after(c.op.duration);
    co_await Sleep{c.op.duration};
    if (c.now() != expected) {
        c.violation("woke at " + c.world.elapsed(c.now()) + ", expected " + c.world.elapsed(expected));
    }
}

inline Task<> op_sleep_until(Context c) {
    const Clock::time_point deadline = c.world.start + c.op.duration;
    const Clock::time_point expected = std::max(deadline, c.now());
    co_await SleepUntil{deadline};
    if (c.now() != expected) {
        c.violation("woke at " + c.world.elapsed(c.now()) + ", expected " + c.world.elapsed(expected));
    }
}

inline Task<> op_wait(Context c) {
    World& w = c.world;
    const bool target_alive = w.exists(c.op.target) && w.ledger(c.op.target).alive();
    const TaskId id = w.exists(c.op.target) ? w.ledger(c.op.target).id : TaskId{};
    std::optional<Deadline> deadline;
    TaskExit exit;
    try {
        if (c.op.timeout) {
            deadline = deadline_after(c, *c.op.timeout);
            exit = co_await timeout_after(*c.op.timeout, WaitTask{id});
        } else {
            exit = co_await WaitTask{id};
        }
    } catch (const TimeoutError&) {
        deadline->timed_out(c);
        if (!target_alive) {
            c.violation("timed out waiting for a task that was not alive");
        } else if (!w.ledger(c.op.target).alive() && w.ledger(c.op.target).ended_at < c.now()) {
            c.violation("timed out although the task ended at " +
                        w.elapsed(w.ledger(c.op.target).ended_at));
        }
        co_return;
    }
    if (deadline) {
        deadline->completed(c);
    }
    if (!target_alive) {
        if (exit.outcome != TaskExit::Outcome::no_such_task) {
            c.violation("a task that was not alive gave an outcome other than no_such_task");
        }
        co_return;
    }
    ++w.tally.waited_tasks;
    const TaskLedger& target = w.ledger(c.op.target);
    const End expected = target.end;
    const bool matches = (expected == End::completed && exit.completed() && !exit.error) ||
                         (expected == End::killed && exit.killed() && !exit.error) ||
                         (expected == End::failed && exit.failed() && exit.error == target.error);
    if (!matches) {
        c.violation(std::string("WaitTask gave outcome ") +
                    std::to_string(static_cast<int>(exit.outcome)) + " for a task that is " +
                    name_of(expected));
    }
    if (expected == End::failed && exit.failed()) {
        ++w.ledger(c.op.target).received;
    }
}

inline Task<> op_kill(Context c) {
    World& w = c.world;
    const bool target_alive = w.exists(c.op.target) && w.ledger(c.op.target).alive();
    const TaskId id = w.exists(c.op.target) ? w.ledger(c.op.target).id : TaskId{};
    const bool self = c.op.target == c.task;
    if (self) {
        w.ledger(c.task).killing_itself = true; // it never comes back to say so: its witness knows
    } else {
        w.victims.push_back(c.op.target);
    }
    const bool existed = co_await KillTask{id};
    if (self) {
        c.violation("came back from killing itself");
    } else {
        w.victims.pop_back();
    }
    if (existed != target_alive) {
        c.violation(std::string("KillTask said ") + (existed ? "true" : "false") + " for a task that was " +
                    (target_alive ? "alive" : "not alive"));
    }
    if (!existed || !w.exists(c.op.target)) {
        co_return;
    }
    TaskLedger& target = w.ledger(c.op.target);
    if (target.end == End::pending) { // it never ran: no witness in its frame to say it died
        target.end = End::killed;
        target.ended_at = c.now();
    }
    if (target.end != End::killed || target.ended_at != c.now()) {
        c.violation(std::string("the killed task is ") + name_of(target.end));
    }
    target.killed_by_other = true;
    ++w.tally.kills;
}

// recv (lent: recv_lent, which reads whatever has arrived into a buffer the Scheduler lends).
inline Task<> op_recv(Context c, bool lent) {
    World& w = c.world;
    const auto end = static_cast<std::size_t>(c.op.target);
    Stream& stream = w.streams[end ^ 1];
    if (stream.reader_busy) {
        ++w.tally.skipped;
        co_return;
    }
    Transfer transfer(stream, &Stream::reader_busy);
    std::vector<std::byte> buffer(lent ? 0 : c.op.size);
    LentBytes loan;
    const Deadline deadline = deadline_after(c, *c.op.timeout);
    std::size_t received = 0;
    transfer.begin();
    try {
        if (lent) {
            loan = co_await timeout_after(*c.op.timeout, w.ends[end].recv_lent());
            received = loan.size();
        } else {
            received = co_await timeout_after(*c.op.timeout, w.ends[end].recv(buffer));
        }
    } catch (const TimeoutError&) {
        transfer.end(); // a timed-out recv took nothing: the stream checks below see if it did
        deadline.timed_out(c);
        co_return;
    }
    transfer.end();
    deadline.completed(c);
    if (received == 0) {
        c.violation("recv gave end-of-stream on a socket whose peer is open");
        co_return;
    }
    w.tally.bytes += received;
    const std::byte* bytes = lent ? loan.data() : buffer.data();
    if (!stream.desynced) {
        for (std::size_t i = 0; i < received; ++i) {
            if (bytes[i] != stream_byte(static_cast<int>(end ^ 1), stream.read + i)) {
                c.violation("byte " + std::to_string(stream.read + i) + " of the stream is wrong "
                            "(lost, duplicated or reordered data)");
                stream.desynced = true;
                break;
            }
        }
    }
    stream.read += received;
    if (!stream.desynced && stream.read > stream.written + stream.in_flight) {
        c.violation("received more than was sent");
    }
}

inline Task<> op_send(Context c) {
    World& w = c.world;
    const auto end = static_cast<std::size_t>(c.op.target);
    Stream& stream = w.streams[end];
    if (stream.writer_busy) {
        ++w.tally.skipped;
        co_return;
    }
    Transfer transfer(stream, &Stream::writer_busy);
    std::vector<std::byte> data(c.op.size);
    for (std::size_t i = 0; i < data.size(); ++i) {
        data[i] = stream_byte(static_cast<int>(end), stream.written + i);
    }
    const Deadline deadline = deadline_after(c, *c.op.timeout);
    std::size_t sent = 0;
    transfer.begin();
    struct InFlight { // also when the task is killed in the send
        Stream& stream;
        ~InFlight() { stream.in_flight = 0; }
    } in_flight{stream};
    stream.in_flight = data.size();
    try {
        sent = co_await timeout_after(*c.op.timeout, w.ends[end].send(std::span<const std::byte>(data)));
    } catch (const TimeoutError&) {
        transfer.end();
        deadline.timed_out(c);
        co_return;
    }
    transfer.end();
    stream.in_flight = 0;
    deadline.completed(c);
    if (sent == 0 || sent > data.size()) {
        c.violation("send said it sent " + std::to_string(sent) + " bytes");
    }
    stream.written += sent;
}

// ReadWait / WriteWait on a raw fd: ends only when the fd is ready (or by the deadline).
inline Task<> op_fd_wait(Context c) {
    World& w = c.world;
    const auto end = static_cast<std::size_t>(c.op.target);
    const int fd = w.ends[end].fd();
    const bool reading = c.op.kind == OpKind::read_wait;
    // The stream whose traffic could make the readiness stale by the time this task runs.
    const Stream& stream = w.streams[reading ? end ^ 1 : end];
    const std::uint64_t moved_before = reading ? stream.read : stream.written;
    const Deadline deadline = deadline_after(c, *c.op.timeout);
    try {
        if (reading) {
            co_await timeout_after(*c.op.timeout, ReadWait{fd});
        } else {
            co_await timeout_after(*c.op.timeout, WriteWait{fd});
        }
    } catch (const TimeoutError&) {
        deadline.timed_out(c);
        co_return;
    }
    deadline.completed(c);
    const bool others_moved = (reading ? stream.read : stream.written) != moved_before ||
                              (reading ? stream.reader_busy : stream.writer_busy) || stream.desynced;
    // Bytes a lent read's receive brought wait in the kernel's stash (io_uring): readable too.
    const bool stashed = reading && w.kernel->received_stash().holds(fd);
    if (!others_moved && !stashed && !fd_ready(fd, reading ? POLLIN : POLLOUT)) {
        c.violation(std::string("woken but the fd is not ") + (reading ? "readable" : "writable"));
    }
}

inline Task<> op_event_wait(Context c, Event& event) {
    World& w = c.world;
    const auto e = static_cast<std::size_t>(c.op.target);
    const bool was_set = event.is_set();
    const std::uint64_t sets_before = w.event_sets[e];
    const Deadline deadline = deadline_after(c, *c.op.timeout);
    try {
        co_await timeout_after(*c.op.timeout, event.wait());
    } catch (const TimeoutError&) {
        deadline.timed_out(c);
        if (was_set) {
            c.violation("timed out waiting for an event that was set");
        }
        co_return;
    }
    deadline.completed(c);
    if (!was_set && w.event_sets[e] == sets_before) {
        c.violation("woken but the event was never set");
    }
}

// timeout_after(outer, timeout_after(inner, Sleep{sleep})): the first of the three to come wins,
// deadlines before the sleep on a tie (their timers were armed first); a sleep of zero yields,
// and a yield is a wait like any other: a zero deadline ends it.
inline Task<> op_nested_timeout(Context c) {
    const Duration outer = c.op.duration;
    const Duration inner = *c.op.timeout;
    const Duration sleep(static_cast<Duration::rep>(c.op.size));
    const Clock::time_point start = c.now();
    const bool times_out = std::min(outer, inner) <= std::max(sleep, Duration::zero());
    const Duration expected = sleep <= Duration::zero() ? Duration::zero()
                              : times_out                ? std::min(outer, inner)
                                                         : sleep;
    bool timed_out = false;
    try {
        co_await timeout_after(outer, timeout_after(inner, Sleep{sleep}));
    } catch (const TimeoutError&) {
        timed_out = true;
        ++c.world.tally.timeouts;
    }
    if (timed_out != times_out || c.now() != start + expected) {
        c.violation(std::string(timed_out ? "timed out" : "completed") + " after " +
                    to_string(c.now() - start) + "; expected " +
                    (times_out ? "a timeout" : "completion") + " after " + to_string(expected));
    }
}

inline Task<> run_op(Context c) {
    auto& events = c.world.events;
    switch (c.op.kind) {
    case OpKind::spawn: co_await op_spawn(c); break;
    case OpKind::yield: co_await op_yield(c); break;
    case OpKind::sleep: co_await op_sleep(c); break;
    case OpKind::sleep_until: co_await op_sleep_until(c); break;
    case OpKind::wait: co_await op_wait(c); break;
    case OpKind::kill: co_await op_kill(c); break;
    case OpKind::recv: co_await op_recv(c, false); break;
    case OpKind::recv_lent: co_await op_recv(c, true); break;
    case OpKind::send: co_await op_send(c); break;
    case OpKind::read_wait:
    case OpKind::write_wait: co_await op_fd_wait(c); break;
    case OpKind::event_wait:
        co_await op_event_wait(c, events[static_cast<std::size_t>(c.op.target)]);
        break;
    case OpKind::event_set:
        events[static_cast<std::size_t>(c.op.target)].set();
        ++c.world.event_sets[static_cast<std::size_t>(c.op.target)];
        break;
    case OpKind::event_clear: events[static_cast<std::size_t>(c.op.target)].clear(); break;
    case OpKind::nested_timeout: co_await op_nested_timeout(c); break;
    case OpKind::throw_error: break; // run_task throws it: it must leave the task
    }
}

inline Task<> run_task(World& w, int index) {
    Witness witness(w, index);
    TaskLedger& me = w.ledger(index);
    if (me.end != End::pending) {
        w.violation(index, 0, std::string("started although it is ") + name_of(me.end));
    }
    me.end = End::running;
    const auto& ops = w.program.tasks[static_cast<std::size_t>(index)].ops;
    for (std::size_t k = 0; k < ops.size(); ++k) {
        me.at_op = k;
        ++w.tally.ops;
        if (ops[k].kind == OpKind::throw_error) {
            me.error = std::make_exception_ptr(
                ThrownByProgram("task " + std::to_string(index) + " op " + std::to_string(k)));
            me.end = End::failed;
            me.ended_at = w.clock.now();
            ++w.tally.failures;
            std::rethrow_exception(me.error);
        }
        try {
            co_await run_op(Context{w, index, k, ops[k]});
        } catch (const std::exception& e) {
            w.violation(index, k, std::string("unexpected exception: ") + e.what());
        }
        if (me.end != End::running) {
            w.violation(index, k, std::string("resumed although it is ") + name_of(me.end));
        }
    }
    me.at_op = ops.size();
    me.end = End::completed;
    me.ended_at = w.clock.now();
}

inline Task<> op_spawn(Context c) {
    World& w = c.world;
    const Clock::time_point before = c.now();
    TaskLedger& child = w.ledger(c.op.target);
    if (child.end != End::unborn) {
        c.violation(std::string("spawning a task that is ") + name_of(child.end));
    }
    const TaskId id = co_await NewTask{run_task(w, c.op.target)};
    child.id = id;
    child.end = End::pending;
    ++w.tally.tasks;
    if (c.now() != before) {
        c.violation("time passed during NewTask");
    }
}

// After the run: each task's end is the one its program, its killers and its waiters imply.
inline void check_tasks(World& w) {
    const Program& program = w.program;
    for (std::size_t j = 0; j < program.tasks.size(); ++j) {
        const TaskProgram& tp = program.tasks[j];
        const TaskLedger& me = w.tasks[j];
        const int task = static_cast<int>(j);
        auto fail = [&](const std::string& what) { w.violation(task, me.at_op, what); };

        bool should_exist = j == 0;
        if (tp.parent >= 0) {
            const TaskLedger& parent = w.tasks[static_cast<std::size_t>(tp.parent)];
            const auto& parent_ops = program.tasks[static_cast<std::size_t>(tp.parent)].ops;
            for (std::size_t k = 0; k < parent_ops.size(); ++k) {
                if (parent_ops[k].kind == OpKind::spawn && parent_ops[k].target == task) {
                    should_exist = parent.end != End::unborn && parent.end != End::pending &&
                                   parent.at_op > k;
                }
            }
        }
        if (should_exist != (me.end != End::unborn)) {
            fail(should_exist ? "its parent spawned it but it never existed"
                              : "it exists but its parent never got to spawn it");
        }
        const auto first_throw = static_cast<std::size_t>(
            std::find_if(tp.ops.begin(), tp.ops.end(),
                         [](const Op& op) { return op.kind == OpKind::throw_error; }) -
            tp.ops.begin());
        switch (me.end) {
        case End::unborn: break;
        case End::pending:
        case End::running: fail(std::string("still ") + name_of(me.end) + " after the run"); break;
        case End::completed:
            if (first_throw != tp.ops.size()) {
                fail("completed although its program throws");
            }
            break;
        case End::failed:
            if (me.at_op != first_throw) {
                fail("failed elsewhere than at its first throw");
            }
            break;
        case End::killed: {
            const bool killed_itself = me.at_op < tp.ops.size() &&
                                       tp.ops[me.at_op].kind == OpKind::kill &&
                                       tp.ops[me.at_op].target == task;
            if (!me.killed_by_other && !killed_itself) {
                fail("killed, but no KillTask killed it");
            }
            break;
        }
        }
        // A failure reaches the waiters that were there when it failed, or else the handler.
        if (me.end == End::failed) {
            if (me.received == 0 && me.reports != 1) {
                fail("its failure reached no waiter and was reported " + std::to_string(me.reports) +
                     " times");
            }
            if (me.received > 0 && me.reports != 0) {
                fail("its failure reached a waiter and was reported too");
            }
            w.tally.reported += me.reports;
        } else if (me.reports != 0) {
            fail(std::string("reported as failed although it ") + name_of(me.end));
        }
    }
}

// After the run: what is left in each socket is the rest of its stream: first what a lent read's
// receive brought that no read took (io_uring: the kernel's stash), then what the socket holds.
inline void check_streams(World& w) {
    for (std::size_t e = 0; e < w.streams.size(); ++e) {
        Stream& stream = w.streams[e];
        std::array<std::byte, 65536> buffer{};
        const int fd = w.ends[e ^ 1].fd();
        for (;;) {
            std::int32_t stashed = 0;
            ssize_t count = 0;
            if (w.kernel->received_stash().copy(fd, buffer.data(), buffer.size(), stashed,
                                                w.kernel->lent_buffers())) {
                count = stashed;
            } else {
                count = ::recv(fd, buffer.data(), buffer.size(), MSG_DONTWAIT);
            }
            if (count <= 0) {
                break;
            }
            for (ssize_t i = 0; i < count && !stream.desynced; ++i) {
                if (buffer[static_cast<std::size_t>(i)] !=
                    stream_byte(static_cast<int>(e), stream.read + static_cast<std::uint64_t>(i))) {
                    w.violation("stream " + std::to_string(e) + ": byte " +
                                std::to_string(stream.read + static_cast<std::uint64_t>(i)) +
                                " left in the socket is wrong");
                    stream.desynced = true;
                }
            }
            stream.read += static_cast<std::uint64_t>(count);
        }
        if (!stream.desynced && stream.read != stream.written) {
            w.violation("stream " + std::to_string(e) + ": " + std::to_string(stream.written) +
                        " bytes sent, " + std::to_string(stream.read) + " arrived");
        }
    }
}

inline std::size_t open_fd_count() {
    std::error_code ignored;
    std::size_t count = 0;
    for (auto it = std::filesystem::directory_iterator("/proc/self/fd", ignored);
         it != std::filesystem::directory_iterator(); it.increment(ignored)) {
        ++count;
    }
    return count;
}

} // namespace detail

namespace detail {

// Closes the sockets before the Scheduler they registered with goes, however the run ends.
struct CloseSockets {
    World& world;
    ~CloseSockets() {
        for (AsyncSocket& end : world.ends) {
            end.close();
        }
    }
};

inline void record_reports(World& world) {
    world.kernel->set_exception_handler([&world](TaskId id, const std::exception_ptr& error) {
        for (std::size_t j = 0; j < world.tasks.size(); ++j) {
            TaskLedger& task = world.tasks[j];
            if (task.id == id && task.end != End::unborn) {
                ++task.reports;
                if (error != task.error) {
                    world.violation(static_cast<int>(j), task.at_op,
                                    "reported with another exception than it threw");
                }
                return;
            }
        }
        world.violation("a failure was reported for a task of no program");
    });
}

// After the run: the kernel holds nothing, and forgets every fd it was told to.
inline void check_kernel_empty(World& world) {
    const Scheduler::Stats left = world.kernel->stats();
    if (left.tasks != 0 || left.ready != 0 || left.waiting_on_fds != 0 || left.timers != 0) {
        world.violation("the run ended with " + std::to_string(left.tasks) + " tasks, " +
                        std::to_string(left.ready) + " ready, " +
                        std::to_string(left.waiting_on_fds) + " waiting on fds, " +
                        std::to_string(left.timers) + " timers");
    }
    for (AsyncSocket& end : world.ends) {
        world.kernel->forget_fd(end.fd()); // ReadWait/WriteWait used the raw fds
    }
    if (const std::size_t watched = world.kernel->stats().watched_fds; watched != 0) {
        world.violation(std::to_string(watched) + " fds still watched after forget_fd on each");
    }
    if (const std::size_t lent = world.kernel->stats().lent_buffers; lent != 0) {
        world.violation(std::to_string(lent) + " lent buffers never came back");
    }
}

} // namespace detail

/// Runs `program` on a new Scheduler (on a VirtualClock) and checks it; see the top of this file.
inline Verdict run_program(const Program& program) {
    const long frames_before = corio::detail::live_frame_count.load();
    const std::size_t fds_before = detail::open_fd_count();
    std::vector<std::string> violations;
    Tally tally;
    {
        VirtualClock clock;
        detail::World world(program, clock);
        {
            Scheduler kernel(clock);
            detail::CloseSockets close_sockets{world};
            world.kernel = &kernel;
            detail::record_reports(world);
            try {
                world.tasks[0].id = kernel.add_task(detail::run_task(world, 0));
                world.tasks[0].end = detail::End::pending;
                world.tally.tasks = 1;
                kernel.run();
                detail::check_streams(world); // before check_kernel_empty forgets the fds
                detail::check_kernel_empty(world);
                detail::check_tasks(world);
            } catch (const std::exception& e) {
                world.violation(std::string("the run threw: ") + e.what());
            }
            world.tearing_down = true; // whatever is left dies with the Scheduler
        }
        violations = std::move(world.violations);
        tally = world.tally;
        tally.runs = 1;
    }
    if (const long leaked = corio::detail::live_frame_count.load() - frames_before; leaked != 0) {
        violations.push_back(std::to_string(leaked) + " coroutine frames leaked");
    }
    if (const std::size_t fds_after = detail::open_fd_count(); fds_after != fds_before) {
        violations.push_back("open fds: " + std::to_string(fds_before) + " before the run, " +
                             std::to_string(fds_after) + " after");
    }
    return Verdict{std::move(violations), tally};
}

/// Decodes and runs `bytes`.
inline Verdict run_bytes(std::span<const std::uint8_t> bytes) {
    return run_program(decode(bytes));
}

} // namespace corio::model
