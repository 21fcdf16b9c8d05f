// Tests of introspection (kernel/task_snapshot.hpp, kernel/task_notes.hpp): Scheduler::snapshot
// and what each TaskInfo says (what a task waits on, for how long, its spawner, its name, its
// async stack), task names (NameTask, Scheduler::set_name), find_task, wait times
// (record_wait_times) and stall warnings (warn_of_stalls).
//
// Snapshots are taken from inside a task that runs after the others have suspended (after a
// couple of Yields), kept, and checked once the run is over; the same task then releases whatever
// the others wait on, so that every run ends and leaves the Scheduler empty. The lines of frames
// are captured as `line = __LINE__; co_await ...;` on one source line, the line the library
// records for that co_await.
#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <unistd.h>
#include <utility>
#include <vector>

#include <corio/group/task_group.hpp>
#include <corio/net/async_socket.hpp>
#include <corio/run_in_thread.hpp>
#include <corio/scheduler.hpp>
#include <corio/signal_wait.hpp>
#include <corio/sync/event.hpp>
#include <corio/sync/lock.hpp>
#include <corio/sync/queue.hpp>
#include <corio/sync/semaphore.hpp>
#include <corio/syscalls.hpp>
#include <corio/timeout.hpp>
#include <corio/virtual_clock.hpp>

#include "support/catch.hpp"
#include "support/fd.hpp"
#include "support/helpers.hpp"
#include "support/leak_check.hpp"
#include "support/run_bounded.hpp"

namespace {

using namespace std::chrono_literals;
using namespace corio::test;
using corio::AsyncSocket;
using corio::Event;
using corio::FrameInfo;
using corio::TaskInfo;
using Clock = Scheduler::Clock;
using State = TaskInfo::State;
using Snapshot = std::vector<TaskInfo>;

// A limit for runs on a VirtualClock: virtual time, so it costs nothing, yet a task that would
// wait forever ends the run instead of hanging it.
constexpr auto virtual_limit = std::chrono::hours(1);

// The TaskInfo of task `id` in `tasks`; fails the test if it is not there.
const TaskInfo& info_of(const Snapshot& tasks, TaskId id) {
    const auto found = std::find_if(tasks.begin(), tasks.end(),
                                    [id](const TaskInfo& task) { return task.id == id; });
    INFO("task " << id << " in a snapshot of " << tasks.size() << " tasks");
    REQUIRE(found != tasks.end());
    return *found;
}

// The function names of a task's stack, root first.
std::vector<std::string> functions_of(const TaskInfo& task) {
    std::vector<std::string> names;
    for (const FrameInfo& frame : task.stack) {
        names.push_back(frame.function);
    }
    return names;
}

// A duration as text, "none" for none: what Catch2 v2 can show when a comparison fails.
std::string text_of(const std::optional<Clock::duration>& duration) {
    return duration ? std::to_string(duration->count()) + " ticks" : "none";
}

std::string fd_text(int fd) {
    return "fd " + std::to_string(fd);
}

// Yields a few times: long enough for every task added before the caller to have run and
// suspended (tasks run in FIFO order, one pass after another).
Task<> let_others_suspend(int passes = 3) {
    for (int i = 0; i < passes; ++i) {
        co_await corio::Yield{};
    }
}

Task<> event_waiter(Event& event) {
    co_await event.wait();
}

} // namespace

// ---- 1. what each task waits on -----------------------------------------------------------------

namespace {

Task<> read_waiter(int fd) {
    co_await corio::ReadWait{fd};
}

Task<> write_waiter(int fd) {
    co_await corio::WriteWait{fd};
}

Task<> socket_receiver(AsyncSocket socket, std::size_t& received) {
    std::array<char, 16> buffer{};
    received = co_await socket.recv(buffer);
}

Task<> socket_sender(AsyncSocket socket, std::size_t& sent) {
    sent = co_await socket.send(std::string_view("x"));
}

// The peers of the fds the waiters wait on: what the snapshot task writes to or drains.
struct FdPeers {
    int of_reader;
    int of_writer;
    int of_receiver;
    int of_sender;
};

Task<> snapshot_fd_waits(Scheduler& kernel, Snapshot& out, FdPeers peers) {
    co_await let_others_suspend();
    out = kernel.snapshot();
    char byte = 'r';
    write_all(peers.of_reader, &byte, 1);
    drain(peers.of_writer);
    write_all(peers.of_receiver, &byte, 1);
    drain(peers.of_sender);
}

} // namespace

TEST_CASE("introspection: a task waiting on an fd shows the fd, the direction and the operation",
          "[introspection]") {
    FrameLeakCheck leaks;
    FdPair for_reader = socket_pair();
    FdPair for_writer = socket_pair();
    FdPair for_receiver = socket_pair();
    FdPair for_sender = socket_pair();
    fill_send_buffer(for_writer.first.get());
    fill_send_buffer(for_sender.first.get());
    const int reader_fd = for_reader.first.get();
    const int writer_fd = for_writer.first.get();
    const int receiver_fd = for_receiver.first.get();
    const int sender_fd = for_sender.first.get();

    Scheduler kernel;
    Snapshot tasks;
    std::size_t received = 0;
    std::size_t sent = 0;
    const TaskId reader = kernel.add_task(read_waiter(reader_fd));
    const TaskId writer = kernel.add_task(write_waiter(writer_fd));
    const TaskId receiver =
        kernel.add_task(socket_receiver(AsyncSocket(for_receiver.first.release()), received));
    const TaskId sender =
        kernel.add_task(socket_sender(AsyncSocket(for_sender.first.release()), sent));
    const TaskId taker = kernel.add_task(
        snapshot_fd_waits(kernel, tasks,
                          FdPeers{for_reader.second.get(), for_writer.second.get(),
                                  for_receiver.second.get(), for_sender.second.get()}));
    REQUIRE(run_until_ended(kernel, {reader, writer, receiver, sender, taker}));
    CHECK(received == 1);
    CHECK(sent == 1);

    const TaskInfo& reading = info_of(tasks, reader);
    CHECK(reading.state == State::waiting);
    CHECK(reading.waits_on == fd_text(reader_fd) + " read");
    CHECK_FALSE(reading.time_left.has_value());
    CHECK(functions_of(reading) == std::vector<std::string>{"read_waiter"});

    const TaskInfo& writing = info_of(tasks, writer);
    CHECK(writing.state == State::waiting);
    CHECK(writing.waits_on == fd_text(writer_fd) + " write");
    CHECK(functions_of(writing) == std::vector<std::string>{"write_waiter"});

    const TaskInfo& receiving = info_of(tasks, receiver);
    CHECK(receiving.state == State::waiting);
    CHECK(receiving.waits_on == fd_text(receiver_fd) + " read (recv)");
    CHECK(functions_of(receiving) == std::vector<std::string>{"socket_receiver"});

    const TaskInfo& sending = info_of(tasks, sender);
    CHECK(sending.state == State::waiting);
    CHECK(sending.waits_on == fd_text(sender_fd) + " write (send)");
    CHECK(functions_of(sending) == std::vector<std::string>{"socket_sender"});

    kernel.forget_fd(reader_fd); // the sockets were closed (and forgotten) as their tasks ended
    kernel.forget_fd(writer_fd);
    require_empty(kernel);
}

namespace {

Task<> task_waiter(TaskId target) {
    const corio::TaskExit exit = co_await corio::WaitTask{target};
    exit.rethrow_if_failed();
}

Task<> lock_waiter(corio::Lock& lock) {
    const corio::Lock::Guard guard = co_await lock.acquire();
}

Task<> semaphore_waiter(corio::Semaphore& semaphore) {
    co_await semaphore.acquire();
    semaphore.release();
}

Task<> queue_getter(corio::Queue<int>& queue, int& got) {
    got = co_await queue.get();
}

Task<> queue_putter(corio::Queue<int>& queue) {
    co_await queue.put(2);
}

Task<> group_child(Event& event) {
    co_await event.wait();
}

Task<> group_owner(Event& event, TaskId& child) {
    corio::TaskGroup group;
    child = co_await group.spawn(group_child(event));
    co_await group.wait();
}

Task<> yielder(const bool& stop) {
    for (int i = 0; i < 1000 && !stop; ++i) {
        co_await corio::Yield{};
    }
}

Task<> sleeper(Clock::duration length) {
    co_await corio::Sleep{length};
}

Task<> event_waiter_with_deadline(Event& event, Clock::duration delay) {
    co_await corio::timeout_after(delay, event.wait());
}

Task<> sleeper_with_deadline(Clock::duration length, Clock::duration delay, bool& completed) {
    completed = co_await corio::ignore_after(delay, corio::Sleep{length});
}

Task<> not_started_yet() {
    co_return;
}

// What the tasks of the next test wait on, and what releases them.
struct KernelObjects {
    Event event;
    Event group_event;
    Event deadline_event;
    corio::Lock lock;
    std::optional<corio::Lock::Guard> held;
    corio::Semaphore semaphore{0};
    corio::Queue<int> empty_queue;
    corio::Queue<int> full_queue{1};
    bool stop_yielding = false;
};

Task<> snapshot_kernel_waits(Scheduler& kernel, Snapshot& out, KernelObjects& objects,
                             TaskId& fresh) {
    co_await let_others_suspend();
    fresh = co_await corio::NewTask{not_started_yet()};
    out = kernel.snapshot();
    objects.event.set();
    objects.group_event.set();
    objects.deadline_event.set();
    objects.held.reset();
    objects.semaphore.release();
    objects.empty_queue.try_put(5);
    (void)objects.full_queue.try_get();
    objects.stop_yielding = true;
}

} // namespace

TEST_CASE("introspection: waits on tasks, sync objects, children, timers and yields",
          "[introspection]") {
    FrameLeakCheck leaks;
    KernelObjects objects; // outlives the Scheduler: no task is left waiting on them
    objects.held = objects.lock.try_acquire();
    REQUIRE(objects.held.has_value());
    REQUIRE(objects.full_queue.try_put(1));
    VirtualClock clock;
    Scheduler kernel(clock);
    Snapshot tasks;
    TaskId group_child_id;
    TaskId fresh;
    int got = 0;
    bool sleep_completed = true;

    const TaskId on_event = kernel.add_task(event_waiter(objects.event));
    const TaskId on_task = kernel.add_task(task_waiter(on_event));
    const TaskId on_lock = kernel.add_task(lock_waiter(objects.lock));
    const TaskId on_semaphore = kernel.add_task(semaphore_waiter(objects.semaphore));
    const TaskId on_get = kernel.add_task(queue_getter(objects.empty_queue, got));
    const TaskId on_put = kernel.add_task(queue_putter(objects.full_queue));
    const TaskId on_children = kernel.add_task(group_owner(objects.group_event, group_child_id));
    const TaskId yielding = kernel.add_task(yielder(objects.stop_yielding));
    const TaskId sleeping = kernel.add_task(sleeper(7s));
    const TaskId on_deadline =
        kernel.add_task(event_waiter_with_deadline(objects.deadline_event, 3s));
    const TaskId sleeping_on_deadline =
        kernel.add_task(sleeper_with_deadline(7s, 2s, sleep_completed));
    const TaskId taker = kernel.add_task(snapshot_kernel_waits(kernel, tasks, objects, fresh));
    REQUIRE(run_until_ended(kernel,
                            {on_event, on_task, on_lock, on_semaphore, on_get, on_put, on_children,
                             yielding, sleeping, on_deadline, sleeping_on_deadline, taker, fresh},
                            virtual_limit));
    CHECK(got == 5);
    CHECK_FALSE(sleep_completed);

    const TaskInfo& event = info_of(tasks, on_event);
    CHECK(event.state == State::waiting);
    CHECK(event.waits_on == "event");
    CHECK_FALSE(event.time_left.has_value());
    CHECK(functions_of(event) == std::vector<std::string>{"event_waiter"});

    const TaskInfo& task = info_of(tasks, on_task);
    CHECK(task.state == State::waiting);
    CHECK(task.waits_on == "task " + std::to_string(on_event.serial()));
    CHECK(functions_of(task) == std::vector<std::string>{"task_waiter"});

    const TaskInfo& lock = info_of(tasks, on_lock);
    CHECK(lock.state == State::waiting);
    CHECK(lock.waits_on == "lock");
    CHECK(functions_of(lock) == std::vector<std::string>{"lock_waiter"});

    const TaskInfo& semaphore = info_of(tasks, on_semaphore);
    CHECK(semaphore.state == State::waiting);
    CHECK(semaphore.waits_on == "semaphore");

    const TaskInfo& getter = info_of(tasks, on_get);
    CHECK(getter.state == State::waiting);
    CHECK(getter.waits_on == "queue get");

    const TaskInfo& putter = info_of(tasks, on_put);
    CHECK(putter.state == State::waiting);
    CHECK(putter.waits_on == "queue put");

    const TaskInfo& owner = info_of(tasks, on_children);
    CHECK(owner.state == State::waiting);
    CHECK(owner.waits_on == "children");
    REQUIRE(owner.stack.size() == 2); // group_owner, then TaskGroup::wait
    CHECK(owner.stack.front().function == "group_owner");
    const TaskInfo& child = info_of(tasks, group_child_id);
    CHECK(child.state == State::waiting);
    CHECK(child.waits_on == "event");
    CHECK(child.parent == on_children);
    CHECK(child.name == "group_child"); // its coroutine's, not the group's supervisor's
    REQUIRE(child.stack.size() == 2);   // the group's supervisor, then the child itself
    CHECK(child.stack.back().function == "group_child");

    const TaskInfo& yield = info_of(tasks, yielding);
    CHECK(yield.state == State::ready);
    CHECK(yield.waits_on == "yield");
    CHECK_FALSE(yield.time_left.has_value());
    CHECK(functions_of(yield) == std::vector<std::string>{"yielder"});

    const TaskInfo& sleep = info_of(tasks, sleeping);
    CHECK(sleep.state == State::waiting);
    CHECK(sleep.waits_on == "sleep");
    CHECK(text_of(sleep.time_left) == text_of(7s)); // no virtual time has passed
    CHECK(functions_of(sleep) == std::vector<std::string>{"sleeper"});

    const TaskInfo& deadline = info_of(tasks, on_deadline);
    CHECK(deadline.state == State::waiting);
    CHECK(deadline.waits_on == "event");
    CHECK(text_of(deadline.time_left) == text_of(3s));
    REQUIRE(deadline.stack.size() == 2); // the task, then timeout_after's frame
    CHECK(deadline.stack.front().function == "event_waiter_with_deadline");

    const TaskInfo& nearest = info_of(tasks, sleeping_on_deadline);
    CHECK(nearest.waits_on == "sleep");
    CHECK(text_of(nearest.time_left) == text_of(2s)); // the deadline comes first

    const TaskInfo& not_started = info_of(tasks, fresh);
    CHECK(not_started.state == State::ready);
    CHECK(not_started.waits_on.empty());
    CHECK(not_started.stack.empty());
    CHECK(not_started.name == "not_started_yet");
    CHECK(not_started.parent == taker);

    const TaskInfo& self = info_of(tasks, taker);
    CHECK(self.state == State::running);
    CHECK(self.waits_on.empty());
    CHECK(self.stack.empty());
    CHECK(self.name == "snapshot_kernel_waits");
    CHECK_FALSE(self.time_left.has_value());

    require_empty(kernel);
}

namespace {

int wait_for_release(const std::atomic<bool>* released) {
    for (int i = 0; i < 10'000 && !released->load(); ++i) { // at most 10 s
        std::this_thread::sleep_for(1ms);
    }
    return released->load() ? 1 : 0;
}

Task<> pool_waiter(const std::atomic<bool>& released, int& result) {
    result = co_await corio::run_in_thread(wait_for_release, &released);
}

Task<> snapshot_then_release(Scheduler& kernel, Snapshot& out, std::atomic<bool>& released) {
    co_await let_others_suspend();
    out = kernel.snapshot();
    released.store(true);
}

} // namespace

TEST_CASE("introspection: a task waiting for its run_in_thread job shows a thread-pool job",
          "[introspection][thread-pool]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    Snapshot tasks;
    std::atomic<bool> released{false};
    int result = 0;
    const TaskId waiter = kernel.add_task(pool_waiter(released, result));
    const TaskId taker = kernel.add_task(snapshot_then_release(kernel, tasks, released));
    const bool ended = run_until_ended(kernel, {waiter, taker});
    released.store(true); // whatever happened, the job ends
    REQUIRE(ended);
    CHECK(result == 1);

    const TaskInfo& waiting = info_of(tasks, waiter);
    CHECK(waiting.state == State::waiting);
    CHECK(waiting.waits_on == "thread-pool job");
    CHECK_FALSE(waiting.time_left.has_value());
    CHECK(functions_of(waiting) == std::vector<std::string>{"pool_waiter"});
    CHECK(kernel.stats().thread_jobs == 0);
    require_empty(kernel);
}

namespace {

// Takes SIGUSR1s an earlier run may have left pending, so that the wait below really waits.
Task<> take_leftover_signals() {
    for (int i = 0; i < 100; ++i) {
        const std::optional<int> taken =
            co_await corio::ignore_after(1ms, corio::SignalWait{SIGUSR1});
        if (!taken) {
            break;
        }
    }
}

Task<> signal_waiter(int& got) {
    got = co_await corio::SignalWait{SIGUSR1};
}

// What /proc says the fd is ("anon_inode:[signalfd]", "pipe:[1234]"...), or the error.
std::string what_fd_is(int fd) {
    const std::string path = "/proc/self/fd/" + std::to_string(fd);
    std::array<char, 256> target{};
    const ssize_t length = ::readlink(path.c_str(), target.data(), target.size() - 1);
    if (length < 0) {
        return "readlink: " + std::to_string(errno);
    }
    return std::string(target.data(), static_cast<std::size_t>(length));
}

// The N of "signal (fd N)", or -1 if the text is not of that form.
int signal_fd_in(std::string_view text) {
    constexpr std::string_view head = "signal (fd ";
    if (!text.starts_with(head) || !text.ends_with(")") || text.size() <= head.size() + 1) {
        return -1;
    }
    const std::string_view digits = text.substr(head.size(), text.size() - head.size() - 1);
    if (!std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }) ||
        digits.size() > 6) {
        return -1;
    }
    return std::stoi(std::string(digits));
}

struct SignalSeen {
    Snapshot tasks;
    std::string fd_is; // what the fd named in the snapshot was, while the wait had it open
};

Task<> snapshot_then_raise(Scheduler& kernel, TaskId waiter, SignalSeen& seen) {
    co_await let_others_suspend();
    seen.tasks = kernel.snapshot();
    const int fd = signal_fd_in(info_of(seen.tasks, waiter).waits_on);
    if (fd >= 0) {
        seen.fd_is = what_fd_is(fd);
    }
    REQUIRE(::raise(SIGUSR1) == 0);
}

} // namespace

TEST_CASE("introspection: a task in SignalWait shows the fd the signals come through",
          "[introspection][signal]") {
    corio::claim_signals({SIGUSR1});
    corio::run(take_leftover_signals());
    FrameLeakCheck leaks;
    Scheduler kernel;
    SignalSeen seen;
    int got = 0;
    const TaskId waiter = kernel.add_task(signal_waiter(got));
    const TaskId taker = kernel.add_task(snapshot_then_raise(kernel, waiter, seen));
    REQUIRE(run_until_ended(kernel, {waiter, taker}, 5s));
    CHECK(got == SIGUSR1);

    const TaskInfo& waiting = info_of(seen.tasks, waiter);
    CHECK(waiting.state == State::waiting);
    INFO("waits on: " << waiting.waits_on);
    CHECK(signal_fd_in(waiting.waits_on) >= 0);
#if CORIO_SIGNAL_USES_SIGNALFD
    CHECK(seen.fd_is == "anon_inode:[signalfd]");
#else
    CHECK(seen.fd_is.starts_with("pipe:"));
#endif
    CHECK(functions_of(waiting) == std::vector<std::string>{"signal_waiter"});
    require_empty(kernel);
}

// ---- 2. spawners --------------------------------------------------------------------------------

namespace {

struct Family {
    TaskId child;
    TaskId grandchild;
    std::uint32_t spawned_on = 0; // the line of the NewTask
};

Task<> grandchild_task(Event& release) {
    co_await release.wait();
}

Task<> child_task(Event& release, Family& family) {
    family.grandchild = co_await corio::NewTask{grandchild_task(release)};
    co_await release.wait();
}

// The line is taken on the line of the NewTask: keep the pair on one line.
// clang-format off
Task<> parent_task(Event& release, Family& out) {
    out.spawned_on = __LINE__; out.child = co_await corio::NewTask{child_task(release, out)};
    co_await release.wait();
}
// clang-format on

Task<> spawn_and_leave() {
    (void)co_await corio::NewTask{yield_times(2)};
}

Task<> snapshot_then_set(Scheduler& kernel, Snapshot& out, Event& release) {
    co_await let_others_suspend();
    out = kernel.snapshot();
    release.set();
}

} // namespace

TEST_CASE(
    "introspection: a task's parent is the task that spawned it, none for one added from outside",
    "[introspection]") {
    FrameLeakCheck leaks;
    Event release;
    Scheduler kernel;
    Snapshot tasks;
    Family family;
    const std::uint32_t added_on = __LINE__ + 1; // the line of the add_task
    const TaskId parent = kernel.add_task(parent_task(release, family));
    const TaskId taker = kernel.add_task(snapshot_then_set(kernel, tasks, release));
    REQUIRE(run_until_ended(kernel, {parent, taker}));
    kernel.run(); // the child and grandchild, released too, end (if they have not yet)
    REQUIRE(kernel.task_count() == 0);
    REQUIRE(family.child);
    REQUIRE(family.grandchild);

    CHECK_FALSE(info_of(tasks, parent).parent);
    CHECK_FALSE(info_of(tasks, taker).parent);
    CHECK(info_of(tasks, family.child).parent == parent);
    CHECK(info_of(tasks, family.grandchild).parent == family.child);
    CHECK(info_of(tasks, family.child).name == "child_task");

    // Where each was spawned: the file and line of its NewTask or add_task.
    const TaskInfo& child = info_of(tasks, family.child);
    CHECK(std::string_view(child.spawned_file).ends_with("test_introspection.cpp"));
    CHECK(child.spawned_line == family.spawned_on);
    CHECK(info_of(tasks, family.grandchild).spawned_line != 0);
    CHECK(info_of(tasks, family.grandchild).spawned_line != family.spawned_on);
    const TaskInfo& added = info_of(tasks, parent);
    CHECK(std::string_view(added.spawned_file).ends_with("test_introspection.cpp"));
    CHECK(added.spawned_line == added_on);

    // A task added from outside takes the slot a spawned task had: it has no parent. (The child
    // outlives its spawner, so its slot is the last one freed, the first one taken again.)
    kernel.add_task(spawn_and_leave());
    kernel.run();
    const TaskId later = kernel.add_task(not_started_yet());
    const Snapshot after = kernel.snapshot(); // from outside the loop
    REQUIRE(after.size() == 1);
    CHECK(after.front().id == later);
    CHECK_FALSE(after.front().parent);
    kernel.run();
    require_empty(kernel);
}

// ---- 3. names -----------------------------------------------------------------------------------

namespace {

Task<> waiting_reader(Event& release) {
    co_await release.wait();
}

Task<> renamed_by_itself(Event& release) {
    co_await corio::NameTask{"x"};
    co_await release.wait();
}

Task<> slot_reuser() {
    co_return;
}

// What the snapshot calls the task that runs this.
Task<std::string> own_name(Scheduler& kernel) {
    const TaskId self = co_await corio::GetTid{};
    co_return info_of(kernel.snapshot(), self).name;
}

} // namespace

TEST_CASE(
    "introspection: a task is named after its root coroutine until NameTask or set_name names it",
    "[introspection]") {
    FrameLeakCheck leaks;
    Event release;
    Scheduler kernel;
    Snapshot tasks;
    const TaskId plain = kernel.add_task(waiting_reader(release));
    const TaskId self_named = kernel.add_task(renamed_by_itself(release));
    const TaskId given = kernel.add_task(waiting_reader(release));
    CHECK(kernel.set_name(given, "given name"));
    const TaskId taken_back = kernel.add_task(waiting_reader(release));
    CHECK(kernel.set_name(taken_back, "for a while"));
    CHECK(kernel.set_name(taken_back, "")); // takes the name back

    const Snapshot before = kernel.snapshot(); // before any task ran
    CHECK(info_of(before, plain).name == "waiting_reader");
    CHECK(info_of(before, self_named).name == "renamed_by_itself");
    CHECK(info_of(before, given).name == "given name");
    CHECK(info_of(before, taken_back).name == "waiting_reader");

    const TaskId taker = kernel.add_task(snapshot_then_set(kernel, tasks, release));
    REQUIRE(run_until_ended(kernel, {plain, self_named, given, taken_back, taker}));
    CHECK(info_of(tasks, plain).name == "waiting_reader");
    CHECK(info_of(tasks, self_named).name == "x");
    CHECK(functions_of(info_of(tasks, self_named)) ==
          std::vector<std::string>{"renamed_by_itself"});
    CHECK(info_of(tasks, given).name == "given name");
    CHECK(info_of(tasks, taken_back).name == "waiting_reader");
    CHECK(info_of(tasks, taker).name == "snapshot_then_set");

    CHECK_FALSE(kernel.set_name(given, "too late")); // it has ended
    CHECK_FALSE(kernel.set_name(TaskId{}, "nobody"));
    require_empty(kernel);
}

TEST_CASE(
    "introspection: a lambda task is named after its spawn site, a wrapped one after its coroutine",
    "[introspection]") {
    FrameLeakCheck leaks;
    Event release;
    Scheduler kernel;
    Snapshot tasks;
    const auto lambda = [](Event& event) -> Task<> { co_await event.wait(); };
    const std::uint32_t added_on = __LINE__ + 1; // the line of the add_task
    const TaskId lambda_task = kernel.add_task(lambda(release));
    const TaskId taker = kernel.add_task(snapshot_then_set(kernel, tasks, release));
    REQUIRE(run_until_ended(kernel, {lambda_task, taker}));
    CHECK(info_of(tasks, lambda_task).name ==
          "lambda@test_introspection.cpp:" + std::to_string(added_on));
    CHECK(functions_of(info_of(tasks, lambda_task)) == std::vector<std::string>{"operator()"});

    // run_until_complete wraps the task it is given: the task is still known by its coroutine.
    const std::string wrapped_name = kernel.run_until_complete(own_name(kernel));
    CHECK(wrapped_name == "own_name");
    require_empty(kernel);
}

TEST_CASE("introspection: a name does not pass on to the task that takes its task's slot",
          "[introspection]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    const TaskId named = kernel.add_task(not_started_yet()); // the only task: the only slot
    REQUIRE(kernel.set_name(named, "old name"));
    kernel.run();
    REQUIRE_FALSE(kernel.contains(named));

    const TaskId reuser = kernel.add_task(slot_reuser()); // takes the slot just freed
    const Snapshot tasks = kernel.snapshot();
    REQUIRE(tasks.size() == 1);
    CHECK(tasks.front().id == reuser);
    CHECK(tasks.front().name == "slot_reuser");
    kernel.run();
    require_empty(kernel);
}

// ---- 4. async stacks ----------------------------------------------------------------------------

namespace {

struct StackLines {
    std::uint32_t outer = 0;
    std::uint32_t middle_first = 0;
    std::uint32_t middle_second = 0;
    std::uint32_t inner = 0;
    std::uint32_t inner_again = 0;
};

struct StackEvents {
    Event first;
    Event second;
    Event third;
};

// Each line number is taken on the line of its co_await: keep each pair on one line.
// clang-format off
Task<int> inner_frame(Event& event, std::uint32_t& line) {
    line = __LINE__; co_await event.wait();
    co_return 1;
}

Task<> middle_frame(StackEvents& events, StackLines& lines) {
    lines.middle_first = __LINE__; const int one = co_await inner_frame(events.first, lines.inner);
    lines.middle_second = __LINE__; co_await events.second.wait();
    const int two = co_await inner_frame(events.third, lines.inner_again);
    CHECK(one + two == 2);
}

Task<> outer_frame(StackEvents& events, StackLines& lines) {
    lines.outer = __LINE__; co_await middle_frame(events, lines);
}
// clang-format on

struct StackSnapshots {
    Snapshot in_inner;
    Snapshot in_middle;
    Snapshot in_inner_again;
};

Task<> snapshot_stacks(Scheduler& kernel, StackEvents& events, StackSnapshots& out) {
    co_await let_others_suspend();
    out.in_inner = kernel.snapshot();
    events.first.set();
    co_await let_others_suspend(); // the inner frame ends, the middle one waits on `second`
    out.in_middle = kernel.snapshot();
    events.second.set();
    co_await let_others_suspend(); // a new inner frame waits on `third`
    out.in_inner_again = kernel.snapshot();
    events.third.set();
}

void check_frame(const FrameInfo& frame, const char* function, std::uint32_t line) {
    INFO("frame " << frame.function << " at " << frame.file << ":" << frame.line);
    CHECK(frame.function == function);
    CHECK(std::string_view(frame.file).ends_with("test_introspection.cpp"));
    CHECK(frame.line == line);
}

} // namespace

TEST_CASE("introspection: the async stack lists a task's frames, root first, each at its co_await",
          "[introspection]") {
    FrameLeakCheck leaks;
    StackEvents events;
    Scheduler kernel;
    StackLines lines;
    StackSnapshots snapshots;
    const TaskId task = kernel.add_task(outer_frame(events, lines));
    const TaskId taker = kernel.add_task(snapshot_stacks(kernel, events, snapshots));
    REQUIRE(run_until_ended(kernel, {task, taker}));
    REQUIRE(lines.inner != 0);
    REQUIRE(lines.inner_again != 0);

    const TaskInfo& deepest = info_of(snapshots.in_inner, task);
    CHECK(deepest.name == "outer_frame");
    CHECK(deepest.waits_on == "event");
    REQUIRE(deepest.stack.size() == 3);
    check_frame(deepest.stack[0], "outer_frame", lines.outer);
    check_frame(deepest.stack[1], "middle_frame", lines.middle_first);
    check_frame(deepest.stack[2], "inner_frame", lines.inner);

    const TaskInfo& shallower = info_of(snapshots.in_middle, task); // no stale inner frame
    CHECK(shallower.waits_on == "event");
    REQUIRE(shallower.stack.size() == 2);
    check_frame(shallower.stack[0], "outer_frame", lines.outer);
    check_frame(shallower.stack[1], "middle_frame", lines.middle_second);

    const TaskInfo& deeper_again = info_of(snapshots.in_inner_again, task);
    REQUIRE(deeper_again.stack.size() == 3);
    check_frame(deeper_again.stack[0], "outer_frame", lines.outer);
    CHECK(deeper_again.stack[1].function == "middle_frame");
    CHECK(deeper_again.stack[1].line > lines.middle_second);
    check_frame(deeper_again.stack[2], "inner_frame", lines.inner_again);
    CHECK(lines.inner_again == lines.inner); // the same co_await of the same coroutine

    const TaskInfo& taker_info = info_of(snapshots.in_middle, taker);
    CHECK(taker_info.state == State::running);
    CHECK(taker_info.stack.empty());
    require_empty(kernel);
}

// ---- 5. wait times ------------------------------------------------------------------------------

namespace {

Task<> sleep_then_snapshot(Scheduler& kernel, Clock::duration length, Snapshot& out,
                           Event& release) {
    co_await corio::Sleep{length};
    out = kernel.snapshot();
    release.set();
}

// Sleeps, then waits on `event`: its wait begins a second after it was spawned.
Task<> sleep_then_wait(Event& event) {
    co_await corio::Sleep{1s};
    co_await event.wait();
}

// A task waits on an Event from second 1 to second 6, when another takes a snapshot.
Snapshot wait_times_after_five_seconds(bool recording, TaskId& waiter, TaskId& taker) {
    Event release;
    VirtualClock clock;
    Scheduler kernel(clock);
    kernel.record_wait_times(recording);
    Snapshot tasks;
    waiter = kernel.add_task(sleep_then_wait(release));
    taker = kernel.add_task(sleep_then_snapshot(kernel, 6s, tasks, release));
    REQUIRE(run_until_ended(kernel, {waiter, taker}, virtual_limit));
    require_empty(kernel);
    return tasks;
}

} // namespace

TEST_CASE(
    "introspection: with record_wait_times, how long each task has waited, without it nothing",
    "[introspection]") {
    FrameLeakCheck leaks;
    TaskId waiter;
    TaskId taker;
    SECTION("on") {
        const Snapshot tasks = wait_times_after_five_seconds(true, waiter, taker);
        const TaskInfo& waiting = info_of(tasks, waiter);
        CHECK(waiting.waits_on == "event");
        CHECK(text_of(waiting.waited) == text_of(5s));
        CHECK_FALSE(info_of(tasks, taker).waited.has_value()); // it runs
    }
    SECTION("off") {
        const Snapshot tasks = wait_times_after_five_seconds(false, waiter, taker);
        REQUIRE_FALSE(tasks.empty());
        for (const TaskInfo& task : tasks) {
            INFO("task " << task.id << " (" << task.name << ")");
            CHECK_FALSE(task.waited.has_value());
        }
        CHECK(info_of(tasks, waiter).waits_on == "event");
    }
}

namespace {

Task<> wait_twice(Event& first, Event& second) {
    co_await first.wait();
    co_await second.wait();
}

// Recording goes off at second 5, as the waiter moves to its second wait, and on again at
// second 6; the snapshot at second 7 must not count from a wait that began before.
Task<> toggle_recording(Scheduler& kernel, Event& first, Event& second, Snapshot& out) {
    co_await corio::Sleep{5s};
    kernel.record_wait_times(false);
    first.set();
    co_await corio::Sleep{1s};
    kernel.record_wait_times(true);
    co_await corio::Sleep{1s};
    out = kernel.snapshot();
    second.set();
}

} // namespace

TEST_CASE("introspection: a wait begun while record_wait_times was off has no wait time",
          "[introspection]") {
    FrameLeakCheck leaks;
    VirtualClock clock;
    Scheduler kernel(clock);
    kernel.record_wait_times(true);
    Event first;
    Event second;
    Snapshot tasks;
    const TaskId waiter = kernel.add_task(wait_twice(first, second));
    const TaskId toggler = kernel.add_task(toggle_recording(kernel, first, second, tasks));
    REQUIRE(run_until_ended(kernel, {waiter, toggler}, virtual_limit));
    CHECK(info_of(tasks, waiter).waits_on == "event");
    CHECK_FALSE(info_of(tasks, waiter).waited.has_value()); // not 7 s: it began at second 5, unseen
    require_empty(kernel);
}

// ---- 6. find_task -------------------------------------------------------------------------------

namespace {

Task<> find_then_set(Scheduler& kernel, std::uint64_t serial, TaskId& found, Event& release) {
    co_await let_others_suspend();
    found = kernel.find_task(serial);
    release.set();
}

} // namespace

TEST_CASE("introspection: find_task finds a live task by serial, an empty id once it has ended",
          "[introspection]") {
    FrameLeakCheck leaks;
    Event release;
    Scheduler kernel;
    const TaskId waiter = kernel.add_task(event_waiter(release));
    CHECK(kernel.find_task(waiter.serial()) == waiter); // not started yet
    CHECK_FALSE(kernel.find_task(0));
    CHECK_FALSE(kernel.find_task(waiter.serial() + 1000));

    TaskId found;
    const TaskId finder = kernel.add_task(find_then_set(kernel, waiter.serial(), found, release));
    CHECK(kernel.find_task(finder.serial()) == finder);
    REQUIRE(run_until_ended(kernel, {waiter, finder}));
    CHECK(found == waiter);

    CHECK_FALSE(kernel.find_task(waiter.serial()));
    CHECK_FALSE(kernel.find_task(finder.serial()));
    // The id it gives is a usable one (the right slot too): a new task in an old slot is found by
    // its own serial, the old serial finds nothing.
    const TaskId later = kernel.add_task(not_started_yet());
    const TaskId found_later = kernel.find_task(later.serial());
    CHECK(found_later == later);
    CHECK(kernel.contains(found_later));
    CHECK(kernel.set_name(found_later, "found"));
    CHECK(info_of(kernel.snapshot(), later).name == "found");
    CHECK_FALSE(kernel.find_task(waiter.serial()));
    kernel.run();
    require_empty(kernel);
}

// ---- 7. stall warnings --------------------------------------------------------------------------

namespace {

void spin_for(std::chrono::steady_clock::duration length) {
    const auto start = std::chrono::steady_clock::now();
    while (std::chrono::steady_clock::now() - start < length) {
    }
}

// Each line number is taken on the line of its co_await: keep each pair on one line.
// clang-format off
Task<> spinning_task(std::uint32_t& line) {
    line = __LINE__; co_await corio::Yield{};
    spin_for(30ms);
}
// clang-format on

Task<> quiet_task() {
    for (int i = 0; i < 3; ++i) {
        co_await corio::Yield{};
    }
}

// Each line number is taken on the line of its co_await: keep each pair on one line.
// clang-format off
Task<> spin_inside(std::uint32_t& line) {
    line = __LINE__; co_await corio::Yield{};
    spin_for(30ms);
}
// clang-format on

Task<> named_spinner(std::uint32_t& line) {
    co_await corio::NameTask{"busy one"};
    co_await spin_inside(line);
}

// A StallReport copied (its function and file are pointers into the frame's constants).
struct SeenStall {
    TaskId task;
    std::string name;
    std::string function;
    std::string file;
    std::uint32_t line = 0;
    std::chrono::steady_clock::duration ran{};
};

std::function<void(const corio::StallReport&)> collect_into(std::vector<SeenStall>& stalls) {
    return [&stalls](const corio::StallReport& report) {
        stalls.push_back(SeenStall{report.task, report.name, report.function, report.file,
                                   report.line, report.ran});
    };
}

std::size_t stalls_of(const std::vector<SeenStall>& stalls, TaskId task) {
    return static_cast<std::size_t>(
        std::count_if(stalls.begin(), stalls.end(),
                      [task](const SeenStall& stall) { return stall.task == task; }));
}

} // namespace

TEST_CASE("introspection: a stall past the threshold is reported once, with where it resumed",
          "[introspection][stall]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    std::vector<SeenStall> stalls;
    kernel.warn_of_stalls(5ms, collect_into(stalls));
    std::uint32_t line = 0;
    const TaskId spinner = kernel.add_task(spinning_task(line));
    const TaskId quiet = kernel.add_task(quiet_task());
    kernel.run(); // bounded: the spinner spins 30 ms, then both end
    REQUIRE(line != 0);

    REQUIRE(stalls.size() == 1);
    const SeenStall& stall = stalls.front();
    CHECK(stall.task == spinner);
    CHECK(stall.name == "spinning_task");
    CHECK(stall.function == "spinning_task");
    CHECK(std::string_view(stall.file).ends_with("test_introspection.cpp"));
    CHECK(stall.line == line);
    CHECK(stall.ran >= 30ms);
    CHECK(stalls_of(stalls, quiet) == 0);
    require_empty(kernel);
}

TEST_CASE("introspection: a stall report names the task and the innermost frame it resumed in",
          "[introspection][stall]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    std::vector<SeenStall> stalls;
    kernel.warn_of_stalls(5ms, collect_into(stalls));
    std::uint32_t line = 0;
    const TaskId spinner = kernel.add_task(named_spinner(line));
    kernel.run();
    REQUIRE(stalls.size() == 1);
    const SeenStall& stall = stalls.front();
    CHECK(stall.task == spinner);
    CHECK(stall.name == "busy one");
    CHECK(stall.function == "spin_inside");
    CHECK(stall.line == line);
    CHECK(stall.ran >= 30ms);
    require_empty(kernel);
}

TEST_CASE("introspection: a zero stall threshold turns stall warnings off",
          "[introspection][stall]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    std::vector<SeenStall> stalls;
    kernel.warn_of_stalls(5ms, collect_into(stalls));
    kernel.warn_of_stalls(Clock::duration::zero(), collect_into(stalls));
    std::uint32_t line = 0;
    kernel.add_task(spinning_task(line));
    kernel.run();
    REQUIRE(line != 0); // it ran, and spun
    CHECK(stalls.empty());
    require_empty(kernel);
}

namespace {

// Sends this process's stderr (fd 2) to a temporary file while it lives.
class StderrToFile {
public:
    StderrToFile() {
        char path[] = "/tmp/corio_test_introspection_XXXXXX";
        file_ = UniqueFd(::mkstemp(path));
        REQUIRE(file_);
        path_ = path;
        std::fflush(stderr);
        saved_ = UniqueFd(::dup(STDERR_FILENO));
        REQUIRE(saved_);
        REQUIRE(::dup2(file_.get(), STDERR_FILENO) == STDERR_FILENO);
    }
    StderrToFile(const StderrToFile&) = delete;
    StderrToFile& operator=(const StderrToFile&) = delete;
    ~StderrToFile() {
        restore();
        ::unlink(path_.c_str());
    }

    // Puts stderr back and gives what was written to it meanwhile.
    std::string restore_and_read() {
        restore();
        std::string text;
        std::array<char, 4096> chunk{};
        for (off_t offset = 0; text.size() < (1u << 20);) {
            const ssize_t count = ::pread(file_.get(), chunk.data(), chunk.size(), offset);
            if (count <= 0) {
                break;
            }
            text.append(chunk.data(), static_cast<std::size_t>(count));
            offset += count;
        }
        return text;
    }

private:
    void restore() noexcept {
        if (saved_) {
            std::fflush(stderr);
            ::dup2(saved_.get(), STDERR_FILENO);
            saved_.reset();
        }
    }

    UniqueFd file_;
    UniqueFd saved_;
    std::string path_;
};

} // namespace

TEST_CASE("introspection: a stall without a handler is a line on stderr",
          "[introspection][stall]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    kernel.warn_of_stalls(5ms);
    std::uint32_t line = 0;
    TaskId spinner;
    std::string written;
    {
        StderrToFile capture;
        spinner = kernel.add_task(spinning_task(line));
        kernel.run();
        written = capture.restore_and_read();
    }
    INFO("stderr: " << written);
    CHECK(written.find("corio: task " + std::to_string(spinner.serial()) +
                       " (spinning_task) ran ") != std::string::npos);
    CHECK(written.find(" ms without suspending, resumed at " + std::string(__FILE__) + ":" +
                       std::to_string(line) + "\n") != std::string::npos);
    require_empty(kernel);
}
