// corio/kernel/fd_watches.hpp - who waits on which fd, and the selector that watches them.
//
// fds are watched lazily: interest is added when a task first waits, kept while tasks come back to
// wait again (a task that waits on the same socket again costs no system call), and dropped only
// when the selector reports readiness nobody waits for (level-triggered, it would repeat it).
// On readiness each waiting task's operation is attempted; the task becomes ready only once its
// operation is done, so a stale readiness costs no resumption.
//
// On io_uring a lent read (Kind::recv_lent) is not attempted on readiness: the fd gets a receive
// armed into the ring's provided buffers, and its completions go to the ReceivedStash, from which
// the waiting reader's attempt takes them (or the next reads of the fd, if nobody waits). The
// receive stays armed (multishot) while the fd's readers keep up; when `max_unclaimed`
// pieces wait for a reader, it is paused, so that the rest stays in the socket and
// TCP's flow control holds the peer back (a peer nobody reads cannot take every buffer), and the
// next lent read that finds nothing waiting arms it again.
//
// On io_uring with synchronous cancellation (see UringSelector) sends go through the ring too:
// a send (Kind::send) that waits is not attempted on readiness; the first send among an fd's
// writers is submitted when it begins to wait, from its own memory, and its completion is
// delivered to it and it is attempted, which takes the count in and either ends it or submits the
// rest (SendOperation decides which sends wait without trying the system call first). Only then does the next send of the
// fd go, so sends keep their order and one at a time is in flight per fd. A send taken off while
// in flight (its task killed or timed out, its fd forgotten) is cancelled synchronously before
// its memory can go, and the next send of the fd is submitted.
#pragma once

#include "corio/backend/selector.hpp"
#include "corio/kernel/async_fd.hpp"
#include "corio/kernel/fd_operation.hpp"
#include "corio/kernel/lent_buffers.hpp"
#include "corio/kernel/received_stash.hpp"
#include "corio/kernel/task_record.hpp"
#include "corio/detail/fd_table.hpp"

#include <fcntl.h>

#include <cerrno>
#include <cstddef>
#include <optional>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

namespace corio::detail {

// One per fd number up to the highest one waited on.
struct FdWatch {
    TaskList readers;
    TaskList writers;
    Interest watched = Interest::none; // what the selector watches this fd for
    bool receiving = false;            // a lent receive is armed (io_uring)
    bool pausing = false;              // ... and being cancelled: too much waits unclaimed
    bool sending = false;              // the first send among the writers is in the ring (io_uring)
};
static_assert(sizeof(void*) != 8 || sizeof(FdWatch) <= 24, "corio: FdWatch grew");

class FdWatches {
public:
    /// Completions of an fd's receive that may wait for a reader before the receive is paused.
    static constexpr std::uint32_t max_unclaimed = 4;

    explicit FdWatches(Backend backend = Backend::automatic) : selector_(backend) {}
    FdWatches(const FdWatches&) = delete;
    FdWatches& operator=(const FdWatches&) = delete;
    // AsyncFds that outlive their Scheduler only close their fd then.
    ~FdWatches() {
        while (owners_.next_ != &owners_) {
            owners_.next_->unlink();
        }
    }

    [[nodiscard]] Backend backend() const noexcept { return selector_.backend(); }
    LentBuffers& lent_buffers() noexcept { return lent_; }
    [[nodiscard]] const LentBuffers& lent_buffers() const noexcept { return lent_; }
    // True once lent reads go through the ring's receives (io_uring, after the first one).
    [[nodiscard]] bool lends_natively() const noexcept { return lending_; }
    ReceivedStash& stash() noexcept { return stash_; }
    // True while a lent receive is in flight on `fd`: the bytes that arrive go to it first, so
    // no read may take bytes from the socket itself until it completes (they would overtake).
    [[nodiscard]] bool receiving(int fd) const noexcept {
        return fd >= 0 && static_cast<std::size_t>(fd) < watches_.size() &&
               watches_[static_cast<std::size_t>(fd)].receiving;
    }
    // True once sends go through the ring (io_uring, from the first send that waited).
    [[nodiscard]] bool sends_on_ring() const noexcept { return ring_sends_ == 1; }
    // A send's attempt submits its bytes (see SendOperation::try_now); the fd is waited on.
    void submit_send(int fd, const std::byte* data, std::uint32_t size) {
        selector_.send(fd, data, size);
        watches_[static_cast<std::size_t>(fd)].sending = true;
    }
    [[nodiscard]] std::size_t waiting_tasks() const noexcept { return waiting_tasks_; }
    [[nodiscard]] std::size_t watched_fds() const noexcept { return watched_fds_; }
    // Whether a wait could report anything: fds are watched, or the ring has receives or sends
    // in flight (or queued to submit).
    [[nodiscard]] bool has_work() const noexcept { return watched_fds_ > 0 || ring_in_flight(); }
    [[nodiscard]] bool ring_in_flight() const noexcept { return selector_.in_flight(); }

    // Watches `fd` for reading for good, without waiters (the inbox's wake channel): select()
    // reports nothing for it.
    void watch_quietly(int fd) {
        selector_.watch(fd, Interest::none, Interest::read);
        quiet_fd_ = fd;
    }

    // `task` waits on `fd` for `direction`, with `operation` to attempt on readiness (null: a plain
    // wait). Throws std::system_error for a negative fd, one that is not open, or a selector error.
    // `attempt` tries the operation (null: it is done on readiness).
    void add(TaskRecord& task, int fd, Interest direction, FdOperation* operation,
             FdOperation::Attempt attempt) {
        if (fd < 0) {
            throw std::system_error(EBADF, std::generic_category(), "corio: waiting on a negative fd");
        }
        // The table grows to the highest fd waited on: a number that is not an open fd (say
        // 1'000'000'000) would make it allocate gigabytes before the selector refused it. Open fds
        // are bounded by RLIMIT_NOFILE, so the check is needed (and paid for) only on growth.
        if (static_cast<std::size_t>(fd) >= watches_.size() && ::fcntl(fd, F_GETFD) < 0) {
            const int error = errno;
            throw std::system_error(error, std::generic_category(),
                                    "corio: waiting on fd " + std::to_string(fd) + ", not open");
        }
        watches_.make_room_for(static_cast<std::size_t>(fd));
        FdWatch& watch = watches_[static_cast<std::size_t>(fd)];
        // Decided at the first wait, before any socket knows this kernel: a send asks its socket's
        // kernel whether to try a system call first, so the answer must not change later.
        const bool ring_sends = send_on_ring();
        if (operation != nullptr && operation->kind() == FdOperation::Kind::send && ring_sends)
            [[unlikely]] {
            watch.writers.push_back(task);
            task.state = TaskState::waiting_fd;
            task.wait.io = {operation, attempt};
            ++waiting_tasks_;
            if (!watch.sending) {
                (void)attempt(*operation); // the first send of the fd: submitted now
            }
            return;
        }
        if (operation != nullptr && operation->kind() == FdOperation::Kind::recv_lent && lend()) {
            if (!watch.receiving) {
                selector_.receive(fd);
                watch.receiving = true;
            }
        } else if (watch.receiving && attempt != nullptr && direction == Interest::read) {
            // A read behind a receive in flight: the receive's completion attempts it.
        } else {
            if (attempt == nullptr && has(watch.watched, direction)) {
                // A plain wait ends on readiness alone, with nothing attempted to tell a stale
                // one: the selector must not report readiness that came and went before it began.
                selector_.refresh(fd, direction);
            }
            set_watched(fd, watch, watch.watched | direction);
        }
        (direction == Interest::read ? watch.readers : watch.writers).push_back(task);
        task.state = TaskState::waiting_fd;
        task.wait.io = {operation, attempt};
        ++waiting_tasks_;
    }

    // Takes a waiting task off its fd. A send in the ring is taken back first (its memory may go
    // next: see settle_send), and the fd's next send is submitted.
    void remove(TaskRecord& task) noexcept {
        const int fd = ring_send_fd(task);
        if (fd < 0) [[likely]] {
            take_off(task);
            return;
        }
        FdWatch& watch = watches_[static_cast<std::size_t>(fd)];
        const bool first = first_send(watch) == &task;
        if (first) {
            settle_send(fd, watch);
        }
        take_off(task);
        if (first) {
            start_next_send(watch);
        }
    }

    // A deadline ends the wait of `task`: if its send is in the ring, it is taken back, and true
    // if it had completed by then (the task is to resume with its result, not a timeout: the
    // bytes went).
    bool settle_before_deadline(TaskRecord& task) noexcept {
        const int fd = ring_send_fd(task);
        if (fd < 0) {
            return false;
        }
        FdWatch& watch = watches_[static_cast<std::size_t>(fd)];
        return first_send(watch) == &task && settle_send(fd, watch);
    }

    // Stops watching `fd` and takes every task waiting on it off, handing each to
    // became_ready(TaskRecord&) (their next system call on the fd sees the error).
    template <class BecameReady>
    void forget(int fd, BecameReady&& became_ready) noexcept {
        if (fd < 0 || static_cast<std::size_t>(fd) >= watches_.size()) {
            return;
        }
        FdWatch& watch = watches_[static_cast<std::size_t>(fd)];
        settle_send(fd, watch); // before its task resumes, and its memory may go
        for (TaskList* waiting : {&watch.readers, &watch.writers}) {
            while (ListLinks* links = waiting->front()) {
                auto& task = static_cast<TaskRecord&>(*links);
                take_off(task);
                became_ready(task);
            }
        }
        if (watch.watched != Interest::none) {
            try {
                selector_.watch(fd, watch.watched, Interest::none);
            } catch (...) { // nothing to do: the fd is going away, the kernel drops it on close
            }
            watch.watched = Interest::none;
            --watched_fds_;
        }
        if (watch.receiving) {
            watch.receiving = false;
            try {
                selector_.cancel_receive(fd); // else the receive would keep the socket open
            } catch (...) { // the ring is gone with its requests
            }
        }
        stash_.drop(fd, lent_);
    }

    // The fd and direction a task in state waiting_fd waits on ({-1, none} if it is not found):
    // for introspection.
    [[nodiscard]] std::pair<int, Interest> waited_on(const TaskRecord& task) const noexcept {
        const long fd = watches_.index_of(task.owner);
        if (fd < 0) {
            return {-1, Interest::none};
        }
        const FdWatch& watch = watches_[static_cast<std::size_t>(fd)];
        return {static_cast<int>(fd), task.owner == &watch.writers ? Interest::write : Interest::read};
    }

    // The first operation of `kind` waiting on `fd` for `direction`, or null.
    [[nodiscard]] const FdOperation* first_operation(int fd, Interest direction,
                                                     FdOperation::Kind kind) const noexcept {
        if (fd < 0 || static_cast<std::size_t>(fd) >= watches_.size()) {
            return nullptr;
        }
        const FdWatch& watch = watches_[static_cast<std::size_t>(fd)];
        const TaskRecord* task = first_of(direction == Interest::read ? watch.readers : watch.writers, kind);
        return task != nullptr ? task->wait.io.operation : nullptr;
    }

    // Waits up to `timeout_ms` (-1: no limit; 0: a look) for readiness, and hands every task whose
    // operation it completed to became_ready(TaskRecord&). Gives the number of ready fds.
    template <class BecameReady>
    std::size_t select(int timeout_ms, BecameReady&& became_ready) {
        const std::size_t events = selector_.wait(
            timeout_ms,
            [&](int fd, Interest ready, Interest disarmed) { on_ready(fd, ready, disarmed, became_ready); },
            [&](int fd, std::int32_t result, int id, bool more) {
                on_received(fd, result, id, more, became_ready);
            },
            [&](int fd, std::int32_t result) { on_sent(fd, result, became_ready); });
        settle_interest();
        return events;
    }

    // The ring of AsyncFds that waited here (see async_fd.hpp).
    AsyncFd& owners() noexcept { return owners_; }

private:
    template <class BecameReady>
    void on_ready(int fd, Interest ready, Interest disarmed, BecameReady& became_ready) {
        if (fd == quiet_fd_) {
            quiet_disarmed_ = disarmed != Interest::none;
            return;
        }
        if (fd < 0 || static_cast<std::size_t>(fd) >= watches_.size()) {
            return;
        }
        FdWatch& watch = watches_[static_cast<std::size_t>(fd)];
        if (disarmed != Interest::none) [[unlikely]] { // a one-shot backend: see settle_interest
            const Interest left = watch.watched & ~disarmed;
            watched_fds_ -= left == Interest::none && watch.watched != Interest::none ? 1 : 0;
            watch.watched = left;
            rearm_.push_back(fd);
        }
        Interest unwanted = Interest::none;
        if (has(ready, Interest::read)) {
            if (watch.readers.empty()) {
                unwanted = unwanted | (watch.watched & Interest::read);
            }
            complete(watch.readers, became_ready);
        }
        if (has(ready, Interest::write)) {
            if (!wants_write_poll(watch)) {
                unwanted = unwanted | (watch.watched & Interest::write);
            }
            complete(watch.writers, became_ready);
        }
        if (unwanted != Interest::none) {
            stale_.emplace_back(fd, unwanted);
        }
    }

    void take_off(TaskRecord& task) noexcept {
        task.owner->remove(task);
        task.wait = {};
        --waiting_tasks_;
    }

    // A send the ring completes (not one attempted on readiness).
    [[nodiscard]] bool is_ring_send(const FdOperation* operation) const noexcept {
        return sends_on_ring() && operation != nullptr && operation->kind() == FdOperation::Kind::send;
    }
    // The fd a waiting task's ring send is on, or -1 if it waits for something else.
    [[nodiscard]] int ring_send_fd(const TaskRecord& task) const noexcept {
        return is_ring_send(task.wait.io.operation) ? waited_on(task).first : -1;
    }

    // Sends go through the ring if the selector can (asked at the first send that waits).
    bool send_on_ring() {
        if (ring_sends_ == 0) {
            ring_sends_ = selector_.start_sending() ? 1 : 2;
        }
        return ring_sends_ == 1;
    }
    // The first send among the fd's writers (the one whose turn it is), or null.
    static TaskRecord* first_send(const FdWatch& watch) noexcept {
        return first_of(watch.writers, FdOperation::Kind::send);
    }
    // The first task in `waiting` whose operation is of `kind`, or null.
    static TaskRecord* first_of(const TaskList& waiting, FdOperation::Kind kind) noexcept {
        for (ListLinks* links = waiting.front(); links != nullptr; links = waiting.after(*links)) {
            auto& task = static_cast<TaskRecord&>(*links);
            if (task.wait.io.operation != nullptr && task.wait.io.operation->kind() == kind) {
                return &task;
            }
        }
        return nullptr;
    }
    // A writer that needs the fd polled for writing: a plain wait, or an operation that is not a
    // ring send.
    bool wants_write_poll(const FdWatch& watch) const noexcept {
        for (ListLinks* links = watch.writers.front(); links != nullptr; links = watch.writers.after(*links)) {
            if (!is_ring_send(static_cast<TaskRecord&>(*links).wait.io.operation)) {
                return true;
            }
        }
        return false;
    }
    // Takes back the send in the ring on `fd`, if any: when this returns the kernel no longer
    // reads its memory. What it did before the cancel could stop it is delivered to it (not to be
    // submitted again); true if that completed it.
    bool settle_send(int fd, FdWatch& watch) noexcept {
        if (!watch.sending) {
            return false;
        }
        watch.sending = false;
        std::optional<std::int32_t> result;
        try {
            result = selector_.cancel_send(fd);
        } catch (...) { // the ring failed: the loop's next io_uring_enter reports it
        }
        TaskRecord* task = first_send(watch);
        if (!result || task == nullptr) {
            return false;
        }
        task->wait.io.operation->deliver(*result, true);
        return task->wait.io.attempt(*task->wait.io.operation);
    }
    // Submits the send whose turn it is, if any (its attempt submits it).
    void start_next_send(FdWatch& watch) noexcept {
        if (TaskRecord* next = first_send(watch); next != nullptr && !watch.sending) {
            (void)next->wait.io.attempt(*next->wait.io.operation);
        }
    }
    // The send in the ring on `fd` completed (io_uring): it takes the result in, and ends, or
    // submits what is left; once it ends the fd's next send goes.
    template <class BecameReady>
    void on_sent(int fd, std::int32_t result, BecameReady& became_ready) {
        FdWatch& watch = watches_[static_cast<std::size_t>(fd)];
        watch.sending = false;
        TaskRecord* task = first_send(watch);
        if (task == nullptr) {
            return; // cannot be: a send taken off is cancelled, and its completion dropped
        }
        task->wait.io.operation->deliver(result);
        if (task->wait.io.attempt(*task->wait.io.operation)) {
            take_off(*task);
            became_ready(*task);
            start_next_send(watch);
        }
    }

    // A lent receive on `fd` completed (io_uring), and is still armed if `more`: its result waits
    // in the stash for the fd's readers, whose attempts take it. The last completion of a paused
    // receive (ECANCELED) brings nothing. A ring without buffers left (ENOBUFS) sends the readers
    // through readiness and the heap buffers until one is given back.
    template <class BecameReady>
    void on_received(int fd, std::int32_t result, int id, bool more, BecameReady& became_ready) {
        FdWatch& watch = watches_[static_cast<std::size_t>(fd)];
        watch.receiving = more;
        watch.pausing = watch.pausing && more;
        if (result == -ECANCELED && !more && id < 0) { // the pause took effect
            if (first_operation(fd, Interest::read, FdOperation::Kind::recv_lent) != nullptr) {
                selector_.receive(fd); // a lent read came to wait meanwhile: arm it again
                watch.receiving = true;
            }
        } else if (result != -ENOBUFS) {
            if (id >= 0) {
                lent_.took_ring_buffer();
            }
            try {
                stash_.put(fd, result, id >= 0 ? selector_.lent_buffer(id) : nullptr, id, lent_);
            } catch (...) { // no memory to keep them: the bytes are lost (put gave the buffer back)
            }
            complete(watch.readers, became_ready);
        }
        if (more && !watch.pausing && stash_.count(fd) >= max_unclaimed) {
            watch.pausing = true;
            try {
                selector_.pause_receive(fd);
            } catch (...) { // no room to submit the cancel: it stays armed, and is paused later
                watch.pausing = false;
            }
        }
        if (!watch.receiving && !watch.readers.empty()) {
            rearm_.push_back(fd); // readers left: they wait through readiness (see settle_interest)
        }
    }

    // Readiness for the tasks in `waiting`, in order: a plain wait ends; an operation is attempted
    // and ends only if the attempt completes it. A lent read is attempted later, as its task
    // resumes (TaskState::attempting, see Kernel::resume): attempted here, every reader made
    // ready by one wait would hold a buffer until its task runs, where one buffer can go round
    // all of them, read, echoed and given back by each task in turn (no allocation, one hot buffer).
    template <class BecameReady>
    void complete(TaskList& waiting, BecameReady& became_ready) noexcept {
        ListLinks* links = waiting.front();
        while (links != nullptr) {
            auto& task = static_cast<TaskRecord&>(*links);
            links = waiting.after(*links);
            const auto& io = task.wait.io;
            if (is_ring_send(io.operation)) {
                continue; // its completion drives it (on_sent), not readiness
            }
            if (io.attempt != nullptr && io.operation->kind() == FdOperation::Kind::recv_lent) {
                const auto attempt_later = io;
                take_off(task);
                became_ready(task);
                task.state = TaskState::attempting;
                task.wait.io = attempt_later;
            } else if (io.attempt == nullptr || io.attempt(*io.operation)) {
                take_off(task);
                became_ready(task);
            }
        }
    }

    // After a wait: readiness that nobody waited for stops being watched (level-triggered, it
    // would repeat); a one-shot report that left tasks waiting (their attempts would still block,
    // or it was for the other direction) is armed again, as is the quiet fd.
    void settle_interest() {
        for (auto [fd, unwanted] : stale_) {
            FdWatch& watch = watches_[static_cast<std::size_t>(fd)];
            set_watched(fd, watch, watch.watched & ~unwanted);
        }
        stale_.clear();
        for (const int fd : rearm_) {
            FdWatch& watch = watches_[static_cast<std::size_t>(fd)];
            const Interest waited = (watch.readers.empty() ? Interest::none : Interest::read) |
                                    (wants_write_poll(watch) ? Interest::write : Interest::none);
            set_watched(fd, watch, watch.watched | waited);
        }
        rearm_.clear();
        if (quiet_disarmed_) {
            quiet_disarmed_ = false;
            selector_.watch(quiet_fd_, Interest::none, Interest::read);
        }
    }
    void set_watched(int fd, FdWatch& watch, Interest wanted) {
        if (wanted == watch.watched) {
            return;
        }
        selector_.watch(fd, watch.watched, wanted);
        watched_fds_ += watch.watched == Interest::none ? 1 : 0;
        watched_fds_ -= wanted == Interest::none ? 1 : 0;
        watch.watched = wanted;
    }

    // Lends before selecting: sets the ring's buffers up on first use, and tells LentBuffers
    // where they go back.
    bool lend() {
        if (!lending_ && selector_.start_lending()) {
            lent_.set_ring(&selector_, &Selector::recycle);
            lending_ = true;
        }
        return lending_;
    }

    LentBuffers lent_; // before selector_: outlives it (heap buffers only by then)
    Selector selector_;
    ReceivedStash stash_;
    bool lending_ = false;
    std::uint8_t ring_sends_ = 0; // 0 not asked yet, 1 sends through the ring, 2 not
    FdTable<FdWatch> watches_; // indexed by fd; never moves (tasks point into it)
    std::vector<std::pair<int, Interest>> stale_;
    std::vector<int> rearm_; // fds a one-shot report disarmed in this wait
    bool quiet_disarmed_ = false;
    std::size_t waiting_tasks_ = 0;
    std::size_t watched_fds_ = 0;
    int quiet_fd_ = -1;
    AsyncFd owners_{AsyncFd::RingHead{}};
};

} // namespace corio::detail
