// Step 4 of docs/how-it-works.md: step 3's server on corio's kernel, call for call.
//
//     4_corio_syscalls_hello [PORT]
//
// tiny::Task is corio::Task, tiny::Kernel is corio::Scheduler, and the system calls keep their
// names: corio::NewTask, corio::ReadWait, corio::WriteWait. One call is our own, ForgetFd: it
// shows the shape every system call has, and it is needed here because this step still works
// with raw fds (step 5's AsyncSocket does it for you).
#include <sys/socket.h>

#include <cerrno>

#include <corio/corio.hpp>

#include "listening_socket.hpp"

namespace {

// A system call of our own (see corio/syscall_concept.hpp): the kernel stops watching `fd` before
// it is closed. `handle` runs in the kernel; returning false lets the task go on at once.
struct ForgetFd {
    explicit ForgetFd(int forgotten) noexcept : fd(forgotten) {}

    int fd;

    bool handle(corio::Scheduler& kernel, corio::TaskId /*caller*/) {
        kernel.forget_fd(fd);
        return false;
    }
    void result() const noexcept {}
};

corio::Task<> handle_client(steps::Fd client) {
    char request[4096];
    for (;;) {
        co_await corio::ReadWait{client.get()};
        const ssize_t received = ::recv(client.get(), request, sizeof request, 0);
        if (received < 0 && (errno == EAGAIN || errno == EINTR)) {
            continue; // readiness is a hint: the system call is the truth
        }
        if (received <= 0) {
            break;
        }
        co_await corio::WriteWait{client.get()};
        if (::send(client.get(), steps::hello.data(), steps::hello.size(), MSG_NOSIGNAL) < 0) {
            break;
        }
    }
    co_await ForgetFd{client.get()};
} // `client` closes with the frame

corio::Task<> serve(steps::Fd listener) {
    for (;;) {
        co_await corio::ReadWait{listener.get()};
        steps::Fd client(::accept4(listener.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
        if (client.get() >= 0) {
            // NewTask gives the new task's id, as Beazley's does (the kernel's answer to the call).
            [[maybe_unused]] const corio::TaskId id =
                co_await corio::NewTask{handle_client(std::move(client))};
        }
    }
}

} // namespace

int main(int argc, char* argv[]) {
    steps::Fd listener = steps::listen_on_loopback(steps::port_argument(argc, argv));
    steps::make_non_blocking(listener.get());
    corio::Scheduler kernel;
    kernel.add_task(serve(std::move(listener)));
    kernel.run();
}
