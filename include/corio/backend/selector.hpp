// corio/backend/selector.hpp - the backends, and how a Scheduler picks one at run time.
//
// The contract is in selector_contract.hpp. Backends: EpollSelector (Linux, level-triggered),
// UringSelector (Linux, io_uring: one-shot polls and the loop's one io_uring_enter per pass, plus
// the completions of lent receives) and PollSelector (any POSIX system).
//
// On Linux every Scheduler chooses when it is made (Selector): io_uring where the kernel allows it,
// else epoll, with one line on stderr saying why (seccomp in Docker and containerd refuses
// io_uring with EPERM; old kernels with ENOSYS or EINVAL). The environment variable CORIO_BACKEND
// (epoll, poll or io_uring) overrides the choice for every Scheduler of the process; a Scheduler
// can also be given one (Scheduler(Backend)). Elsewhere, or when CORIO_FORCE_POLL is defined (the
// same way in every translation unit), poll is the only one.
#pragma once

#include "corio/backend/poll_selector.hpp"
#include "corio/backend/selector_contract.hpp"
#if defined(__linux__)
#include "corio/backend/epoll_selector.hpp"
#include "corio/backend/uring_ring.hpp"
#include "corio/backend/uring_selector.hpp"
#endif

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>

namespace corio {

/// Which operating-system interface a Scheduler's loop waits in.
enum class Backend : std::uint8_t {
    automatic, ///< io_uring where the kernel allows it, else epoll (poll off Linux); CORIO_BACKEND overrides
    epoll,
    poll,
    io_uring,
};

/// "epoll", "poll", "io_uring" (or "automatic").
constexpr const char* to_string(Backend backend) noexcept {
    switch (backend) {
    case Backend::epoll: return "epoll";
    case Backend::poll: return "poll";
    case Backend::io_uring: return "io_uring";
    case Backend::automatic: break;
    }
    return "automatic";
}

namespace detail {

// The backend named by CORIO_BACKEND, or automatic if it is not set. Throws
// std::invalid_argument for any other value.
inline Backend backend_from_environment() {
    const char* value = std::getenv("CORIO_BACKEND");
    if (value == nullptr || *value == '\0') {
        return Backend::automatic;
    }
    const std::string_view name(value);
    for (const Backend backend : {Backend::epoll, Backend::poll, Backend::io_uring}) {
        if (name == to_string(backend)) {
            return backend;
        }
    }
    throw std::invalid_argument("corio: CORIO_BACKEND=" + std::string(name) +
                                ": expected epoll, poll or io_uring");
}

#if defined(__linux__) && !defined(CORIO_FORCE_POLL)
// Why io_uring cannot be used here (a system error's text), or empty if it can. Asked once per
// process: a ring is set up and closed.
inline const std::string& io_uring_refusal() {
    static const std::string refusal = [] {
        try {
            UringRing probe(8);
            return std::string();
        } catch (const std::system_error& error) {
            return std::string(error.what());
        }
    }();
    return refusal;
}
#endif

} // namespace detail

#if defined(__linux__) && !defined(CORIO_FORCE_POLL)

/// The backend a Scheduler waits in, chosen when it is made (see the top of this file).
class Selector {
public:
    explicit Selector(Backend wanted = Backend::automatic) : backend_(resolve(wanted)) {
        switch (backend_) {
        case Backend::poll: poll_.emplace(); break;
        case Backend::io_uring: uring_.emplace(); break;
        default: epoll_.emplace(); break;
        }
    }

    [[nodiscard]] Backend backend() const noexcept { return backend_; }
    /// The io_uring backend, or null.
    [[nodiscard]] UringSelector* uring() noexcept { return uring_ ? &*uring_ : nullptr; }

    // Lent receives (io_uring only; see UringSelector): start_lending() says whether receive()
    // may be used; it sets the provided buffers up on first use.
    bool start_lending() { return backend_ == Backend::io_uring && uring_->start_lending(); }
    void receive(int fd) { uring_->receive(fd); }
    void cancel_receive(int fd) { uring_->cancel_receive(fd); }
    void pause_receive(int fd) { uring_->pause_receive(fd); }
    [[nodiscard]] std::byte* lent_buffer(int id) const noexcept { return uring_->buffer(id); }
    // LentBuffers::Recycle: `self` is this Selector.
    static void recycle(void* self, std::int32_t id) noexcept {
        static_cast<Selector*>(self)->uring_->recycle(id);
    }

    // Sends through the ring (io_uring with synchronous cancellation only; see UringSelector):
    // start_sending() says whether send() may be used.
    bool start_sending() { return backend_ == Backend::io_uring && uring_->start_sending(); }
    // io_uring: receives or sends in flight, or submissions queued.
    [[nodiscard]] bool in_flight() const noexcept { return uring_ && uring_->in_flight(); }
    void send(int fd, const std::byte* data, std::uint32_t size) { uring_->send(fd, data, size); }
    std::optional<std::int32_t> cancel_send(int fd) { return uring_->cancel_send(fd); }

    void watch(int fd, Interest before, Interest after) {
        if (backend_ == Backend::epoll) [[likely]] {
            epoll_->watch(fd, before, after);
        } else if (backend_ == Backend::io_uring) {
            uring_->watch(fd, before, after);
        } else {
            poll_->watch(fd, before, after);
        }
    }

    // A task begins a plain wait on `fd` for `direction`, which is watched already: on io_uring
    // the poll is armed again so that readiness gone before the wait began is not reported (see
    // UringSelector::refresh); epoll and poll look at the fd's level in every wait anyway.
    void refresh(int fd, Interest direction) {
        if (backend_ == Backend::io_uring) {
            uring_->refresh(fd, direction);
        }
    }

    template <class OnReady>
    std::size_t wait(int timeout_ms, OnReady&& on_ready) {
        return wait(timeout_ms, on_ready, [](int, std::int32_t, int, bool) {}, [](int, std::int32_t) {});
    }
    /// wait(), and on io_uring the completed receives and sends too (see UringSelector).
    template <class OnReady, class OnReceived, class OnSent>
    std::size_t wait(int timeout_ms, OnReady&& on_ready, OnReceived&& on_received, OnSent&& on_sent) {
        if (backend_ == Backend::epoll) [[likely]] {
            return epoll_->wait(timeout_ms, on_ready);
        }
        if (backend_ == Backend::io_uring) {
            return uring_->wait(timeout_ms, on_ready, on_received, on_sent);
        }
        return poll_->wait(timeout_ms, on_ready);
    }

private:
    static Backend resolve(Backend wanted) {
        if (wanted == Backend::automatic) {
            wanted = detail::backend_from_environment();
        }
        if (wanted != Backend::automatic && wanted != Backend::io_uring) {
            return wanted;
        }
        const std::string& refusal = detail::io_uring_refusal();
        if (refusal.empty()) {
            return Backend::io_uring;
        }
        static const bool said = [&] { // one line per process
            std::fprintf(stderr, "corio: io_uring is not available (%s); using epoll\n", refusal.c_str());
            return true;
        }();
        static_cast<void>(said);
        return Backend::epoll;
    }

    Backend backend_;
    std::optional<EpollSelector> epoll_;
    std::optional<UringSelector> uring_;
    std::optional<PollSelector> poll_;
};

#else

/// The backend a Scheduler waits in: poll, the only one in this build.
class Selector : public PollSelector {
public:
    explicit Selector(Backend wanted = Backend::automatic) {
        static_cast<void>(detail::backend_from_environment()); // a wrong value is still an error
        if (wanted != Backend::automatic && wanted != Backend::poll) {
            throw std::invalid_argument(std::string("corio: backend ") + to_string(wanted) +
                                        " is not available in this build (poll only)");
        }
    }
    [[nodiscard]] Backend backend() const noexcept { return Backend::poll; }
    // No lent receives without io_uring (see the other Selector).
    bool start_lending() noexcept { return false; }
    void receive(int /*fd*/) noexcept {}
    void cancel_receive(int /*fd*/) noexcept {}
    void pause_receive(int /*fd*/) noexcept {}
    [[nodiscard]] std::byte* lent_buffer(int /*id*/) const noexcept { return nullptr; }
    static void recycle(void* /*self*/, std::int32_t /*id*/) noexcept {}
    void refresh(int /*fd*/, Interest /*direction*/) noexcept {} // poll looks at the level each wait
    // No ring sends either.
    bool start_sending() noexcept { return false; }
    [[nodiscard]] bool in_flight() const noexcept { return false; }
    void send(int /*fd*/, const std::byte* /*data*/, std::uint32_t /*size*/) noexcept {}
    std::optional<std::int32_t> cancel_send(int /*fd*/) noexcept { return std::nullopt; }
    template <class OnReady, class OnReceived, class OnSent>
    std::size_t wait(int timeout_ms, OnReady&& on_ready, OnReceived&& /*on_received*/, OnSent&& /*on_sent*/) {
        return PollSelector::wait(timeout_ms, on_ready);
    }
    using PollSelector::wait;
};

#endif

/// Kept for programs that named it: the selector every Scheduler uses.
using DefaultSelector = Selector;

} // namespace corio
