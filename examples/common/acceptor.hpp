// examples/common/acceptor.hpp - accepting connections, even when the process is out of fds.
//
// The trap every event-loop server falls into once: the process reaches its limit of open files,
// accept() fails with EMFILE, and the connection stays queued in the listener's backlog. The
// listener therefore stays readable, the selector reports it again at once, accept fails again...
// the server spins at 100% CPU and serves nobody until a connection happens to close.
//
// The way out (libev's documentation calls it the "reserve fd" trick) is to keep one spare fd open
// for this moment. On EMFILE: close the spare, accept the pending connection, close it at once (its
// client sees the connection closed instead of hanging), and open the spare again. The backlog
// shrinks by one, so every try makes progress. Mind one more trap: accept() fails with EMFILE even
// when no connection is pending at all, so it never waits by itself while we are out of fds; once
// the backlog is empty the acceptor waits for the listener to become readable. Once connections
// close, accept works again by itself. If even the spare does not help (e.g. ENFILE: the whole
// system is out of files and someone else took the freed one), it waits a little before retrying.
#pragma once

#include <cerrno>
#include <chrono>
#include <fcntl.h>
#include <iostream>
#include <string>
#include <sys/socket.h>
#include <system_error>
#include <unistd.h>
#include <utility>

#include <corio/corio.hpp>

namespace examples {

/// Accepts connections on a listening socket and copes with running out of file descriptors.
class Acceptor {
public:
    explicit Acceptor(corio::AsyncSocket listener, bool verbose = false)
        : listener_(std::move(listener)), verbose_(verbose) {
        open_spare();
    }
    Acceptor(const Acceptor&) = delete;
    Acceptor& operator=(const Acceptor&) = delete;
    ~Acceptor() { close_spare(); }

    /// Waits for the next connection. Throws std::system_error only when the listener itself is
    /// broken; a shortage of fds or of memory is waited out.
    corio::Task<corio::Accepted> accept() {
        for (;;) {
            std::error_code error;
            try {
                co_return co_await listener_.accept();
            } catch (const std::system_error& failure) {
                if (listener_is_broken(failure.code())) {
                    throw;
                }
                error = failure.code();
            }
            if (out_of_fds(error)) {
                const Dropped dropped = drop_one_pending_connection();
                if (dropped == Dropped::one) {
                    continue; // the backlog is one shorter: progress, no spin
                }
                if (dropped == Dropped::none_pending) {
                    // accept() fails with EMFILE before it even looks at the backlog, so it
                    // cannot wait for the next connection: wait for it here, then try again.
                    co_await listener_.wait_readable();
                    continue;
                }
            }
            log("accept: " + error.message() + "; retrying in 10 ms");
            co_await corio::Sleep{std::chrono::milliseconds(10)}; // no hot loop, whatever happens
        }
    }

private:
    static bool out_of_fds(std::error_code error) noexcept {
        return error == std::errc::too_many_files_open ||         // EMFILE: this process
               error == std::errc::too_many_files_open_in_system; // ENFILE: the whole system
    }

    // Errors that say the listening socket is unusable: retrying would never help.
    static bool listener_is_broken(std::error_code error) noexcept {
        return error == std::errc::bad_file_descriptor || error == std::errc::not_a_socket ||
               error == std::errc::invalid_argument ||
               error == std::errc::operation_not_supported || error == std::errc::bad_address;
    }

    enum class Dropped { one, none_pending, failed };

    // The reserve-fd trick (see the top of this file).
    Dropped drop_one_pending_connection() {
        close_spare();
        const int fd = ::accept(listener_.fd(), nullptr, nullptr);
        const int error = errno;
        if (fd >= 0) {
            ::close(fd);
            log("out of file descriptors: closed a new connection at once");
        }
        open_spare();
        if (fd >= 0) {
            return Dropped::one;
        }
        return error == EAGAIN || error == EWOULDBLOCK ? Dropped::none_pending : Dropped::failed;
    }

    void open_spare() noexcept {
        if (spare_fd_ < 0) {
            spare_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC); // -1 if none left: retried later
        }
    }
    void close_spare() noexcept {
        if (spare_fd_ >= 0) {
            ::close(spare_fd_);
            spare_fd_ = -1;
        }
    }

    void log(const std::string& line) const {
        if (verbose_) {
            std::cerr << line + '\n';
        }
    }

    corio::AsyncSocket listener_;
    bool verbose_;
    int spare_fd_ = -1;
};

} // namespace examples
