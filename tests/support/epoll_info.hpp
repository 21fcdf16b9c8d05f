// Test support: what the operating system says a process's epoll instance watches, so that a test
// can check deregistration against the kernel's own view rather than the Scheduler's counters.
#pragma once

#include <dirent.h>

#include <fstream>
#include <optional>
#include <set>
#include <string>
#include <unistd.h>
#include <vector>

namespace corio::test {

/// The fds an epoll instance watches according to the kernel (/proc/self/fdinfo), or nothing if
/// there is not exactly one epoll fd in this process, /proc is not there, or the build uses poll.
/// An entry stays listed while its open file description lives: closing one of two fds that share
/// it (dup) does not remove it, which is how a test sees that an fd was deregistered before it
/// was closed. Eventfds are left out: every Scheduler that has run watches one of its own (its
/// inbox for posts and thread-pool completions) for as long as it lives.
inline std::optional<std::set<int>> kernel_epoll_targets() {
#if defined(__linux__) && !defined(CORIO_FORCE_POLL)
    DIR* dir = ::opendir("/proc/self/fd");
    if (dir == nullptr) {
        return std::nullopt;
    }
    std::vector<int> epoll_fds;
    std::set<int> eventfds;
    while (const dirent* entry = ::readdir(dir)) {
        const std::string name = entry->d_name;
        if (name == "." || name == "..") {
            continue;
        }
        char target[256] = {};
        const std::string path = "/proc/self/fd/" + name;
        const ssize_t size = ::readlink(path.c_str(), target, sizeof target - 1);
        if (size > 0 &&
            std::string(target, static_cast<std::size_t>(size)) == "anon_inode:[eventpoll]") {
            epoll_fds.push_back(std::stoi(name));
        }
        if (size > 0 &&
            std::string(target, static_cast<std::size_t>(size)) == "anon_inode:[eventfd]") {
            eventfds.insert(std::stoi(name));
        }
    }
    ::closedir(dir);
    if (epoll_fds.size() != 1) {
        return std::nullopt;
    }
    std::ifstream info("/proc/self/fdinfo/" + std::to_string(epoll_fds[0]));
    std::set<int> targets;
    std::string word;
    while (info >> word) {
        if (word == "tfd:") {
            int fd = -1;
            info >> fd;
            if (eventfds.count(fd) == 0) {
                targets.insert(fd);
            }
        }
    }
    return targets;
#else
    return std::nullopt;
#endif
}

} // namespace corio::test
