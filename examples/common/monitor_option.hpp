// examples/common/monitor_option.hpp - `--monitor PATH`: corio's task monitor (corio/diag/monitor.hpp)
// on a Unix socket PATH or a loopback HOST:PORT, for `echo ps | nc -U PATH`.
//
// The monitor listens while the command line is parsed, so that a bad PATH (an address that is
// not loopback, a file that exists already) is a usage error (status 2), like any other bad
// option. The server's (first) accept loop then serves it (serve_monitor_from_here), and prints
// `monitor on ADDRESS` after its `listening on` line. corio never removes a Unix socket's file
// (net/unix_socket.hpp): this program made it, so it removes it when it ends.
#pragma once

#include <sys/socket.h>
#include <unistd.h>

#include <iostream>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include <corio/corio.hpp>

#include "options.hpp"

namespace examples {

class MonitorOption {
public:
    MonitorOption() = default;
    MonitorOption(const MonitorOption&) = delete;
    MonitorOption& operator=(const MonitorOption&) = delete;
    ~MonitorOption() {
        if (made_file_) {
            ::unlink(path_.c_str());
        }
    }

    Option option(std::string help_more = "") {
        return {"--monitor", "PATH",
                "serve the task monitor (ps, pstree, where N, kill N, stats) on this Unix socket "
                "path or loopback HOST:PORT" + help_more,
                [this](std::string_view text) { open(text); }};
    }

    // The listener, for the accept loop that serves it (empty without --monitor, or once taken).
    std::optional<corio::AsyncSocket> take() { return std::exchange(listener_, std::nullopt); }

private:
    void open(std::string_view where) {
        try {
            listener_.emplace(corio::monitor_listener(where));
        } catch (const std::exception& error) { // not loopback, a file already there...
            throw UsageError("--monitor '" + std::string(where) + "': " + error.what());
        }
        path_ = std::string(where);
        made_file_ = listener_->local_address().family() == AF_UNIX;
    }

    std::optional<corio::AsyncSocket> listener_;
    std::string path_;
    bool made_file_ = false;
};

// Serves the monitor from the calling task's Scheduler, if there is one to serve, and says where.
inline corio::Task<> serve_monitor_from_here(std::optional<corio::AsyncSocket> listener) {
    if (!listener) {
        co_return;
    }
    std::cout << "monitor on " << listener->local_address().to_string() << std::endl;
    corio::Task<> monitor = corio::serve_monitor(std::move(*listener));
    co_await corio::NewTask{std::move(monitor)}; // made first: no temporary in a co_await (GCC 12)
}

} // namespace examples
