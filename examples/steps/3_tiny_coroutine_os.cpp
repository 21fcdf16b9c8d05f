// Step 3 of docs/how-it-works.md: a coroutine "operating system" in about a hundred lines of
// plain C++20 (no corio), after David Beazley's generator-based scheduler.
//
//     3_tiny_coroutine_os [PORT]
//
// The server is written again the blocking way of step 1, one function per client, yet it serves
// every client at once like step 2. Each function is a coroutine (a Task). Where step 1 would
// block, a task `co_await`s a system call instead: the call suspends it and tells the kernel what
// it waits for. The kernel is step 2's poll loop, which now resumes tasks instead of calling
// handlers: a client's progress is wherever its coroutine stopped, not a record kept by hand.
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <coroutine>
#include <deque>
#include <exception>
#include <map>
#include <utility>
#include <vector>

#include "listening_socket.hpp"

namespace tiny {

class Kernel;

// A coroutine whose frame the Task owns. It starts suspended: the kernel runs it.
class Task {
public:
    struct promise_type;
    using Handle = std::coroutine_handle<promise_type>;

    // A system call: an object with `bool handle(kernel, task)`, which tells the kernel what the
    // task waits for (true: stay suspended until the kernel resumes it; false: go on at once),
    // and `result()`, what the task gets back. `co_await call` is the trap that runs it.
    template <class Call>
    struct Trap {
        explicit Trap(Call&& trapped) : call(std::move(trapped)) {} // see NewTask's constructor
        Call call;
        bool await_ready() const noexcept { return false; }
        bool await_suspend(Handle self) { return call.handle(*self.promise().kernel, self); }
        auto await_resume() { return call.result(); }
    };

    struct promise_type {
        Kernel* kernel = nullptr;
        Task get_return_object() { return Task(Handle::from_promise(*this)); }
        std::suspend_always initial_suspend() noexcept { return {}; }
        std::suspend_always final_suspend() noexcept { return {}; } // the kernel destroys it
        void return_void() noexcept {}
        void unhandled_exception() { throw; } // out of resume(), to the kernel's caller
        template <class Call>
        Trap<Call> await_transform(Call call) { return Trap<Call>(std::move(call)); }
    };

    explicit Task(Handle frame) noexcept : frame_(frame) {}
    Task(Task&& other) noexcept : frame_(std::exchange(other.frame_, {})) {}
    Task& operator=(Task&&) = delete;
    ~Task() {
        if (frame_) {
            frame_.destroy();
        }
    }
    Handle release() noexcept { return std::exchange(frame_, {}); }

private:
    Handle frame_;
};

// The kernel: the tasks, a queue of the ready ones, and the tasks waiting on each fd.
class Kernel {
public:
    Kernel() = default;
    Kernel(const Kernel&) = delete;
    Kernel& operator=(const Kernel&) = delete;
    ~Kernel() {
        for (Task::Handle task : tasks_) {
            task.destroy(); // its locals' destructors run: its sockets close
        }
    }

    void spawn(Task task) {
        Task::Handle frame = task.release();
        frame.promise().kernel = this;
        tasks_.push_back(frame);
        ready_.push_back(frame);
    }
    void wait_for(int fd, short events, Task::Handle task) { waiting_[{fd, events}] = task; }

    // One pass: resume every ready task, then wait until an fd is ready; its task becomes ready.
    void run() {
        while (!tasks_.empty()) {
            std::deque<Task::Handle> resuming = std::exchange(ready_, {});
            for (Task::Handle task : resuming) {
                task.resume(); // runs until its next system call (or its end)
                if (task.done()) {
                    std::erase(tasks_, task);
                    task.destroy();
                }
            }
            poll_fds(ready_.empty() ? -1 : 0);
        }
    }

private:
    void poll_fds(int timeout_ms) {
        std::vector<pollfd> watched;
        for (const auto& [key, task] : waiting_) {
            watched.push_back(pollfd{key.first, key.second, 0});
        }
        if (::poll(watched.data(), watched.size(), timeout_ms) < 0 && errno != EINTR) {
            steps::die("poll");
        }
        for (const pollfd& fd : watched) {
            if (fd.revents != 0) { // ready, hung up or in error: the task's next call tells which
                auto waiter = waiting_.extract({fd.fd, fd.events});
                ready_.push_back(waiter.mapped());
            }
        }
    }

    std::vector<Task::Handle> tasks_;
    std::deque<Task::Handle> ready_;
    std::map<std::pair<int, short>, Task::Handle> waiting_; // (fd, POLLIN or POLLOUT) -> task
};

// The system calls.
struct NewTask { // starts another task; the caller goes on
    // A constructor, not aggregate initialisation: GCC 12 destroys an aggregate temporary with a
    // non-trivial member twice when it is the operand of co_await (corio/syscalls.hpp says more).
    explicit NewTask(Task spawned) noexcept : task(std::move(spawned)) {}
    Task task;
    bool handle(Kernel& kernel, Task::Handle /*self*/) {
        kernel.spawn(std::move(task));
        return false;
    }
    void result() const noexcept {}
};
struct ReadWait { // suspends the caller until fd is readable
    int fd;
    bool handle(Kernel& kernel, Task::Handle self) {
        kernel.wait_for(fd, POLLIN, self);
        return true;
    }
    void result() const noexcept {}
};
struct WriteWait { // suspends the caller until fd is writable
    int fd;
    bool handle(Kernel& kernel, Task::Handle self) {
        kernel.wait_for(fd, POLLOUT, self);
        return true;
    }
    void result() const noexcept {}
};

} // namespace tiny

namespace {

// Step 1's inner loop, with a wait before each call that would block.
tiny::Task handle_client(steps::Fd client) {
    char request[4096];
    for (;;) {
        co_await tiny::ReadWait{client.get()};
        const ssize_t received = ::recv(client.get(), request, sizeof request, 0);
        if (received < 0 && (errno == EAGAIN || errno == EINTR)) {
            continue; // readiness is a hint: the system call is the truth
        }
        if (received <= 0) {
            break;
        }
        co_await tiny::WriteWait{client.get()};
        if (::send(client.get(), steps::hello.data(), steps::hello.size(), MSG_NOSIGNAL) < 0) {
            break; // (a short write of 12 bytes to a writable socket does not happen in practice)
        }
    }
} // `client` closes with the frame

// Step 1's outer loop: one task per client.
tiny::Task serve(steps::Fd listener) {
    for (;;) {
        co_await tiny::ReadWait{listener.get()};
        steps::Fd client(::accept4(listener.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
        if (client.get() >= 0) {
            co_await tiny::NewTask{handle_client(std::move(client))};
        }
    }
}

} // namespace

int main(int argc, char* argv[]) {
    steps::Fd listener = steps::listen_on_loopback(steps::port_argument(argc, argv));
    steps::make_non_blocking(listener.get());
    tiny::Kernel kernel;
    kernel.spawn(serve(std::move(listener)));
    kernel.run();
}
