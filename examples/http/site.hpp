// examples/http/site.hpp - which file a request target names, and never one outside the site.
//
// A Site is a directory (--root DIR) or one file (--file PATH). It holds the directory open and
// opens files relative to it, per request (so edits show at once). Two walls keep a client inside:
//   1. The target's path, decoded once, must be a plain relative path: no empty segment (so no
//      leading slash, which would make openat() ignore the root), no `.` or `..` segment, no
//      encoded slash, no backslash, no NUL or other control byte. Otherwise: 400.
//   2. Symbolic links cannot lead out either. Where the kernel has openat2() (Linux 5.6), the file
//      is opened with RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS: the kernel refuses any step above
//      the root, absolute links and /proc's "magic" links; links that stay below the root are the
//      owner's choice and are followed. Elsewhere (ENOSYS, or EPERM from a seccomp filter) each
//      directory is opened in turn with O_NOFOLLOW, then the file with O_NOFOLLOW: every link is
//      refused, since telling where one leads would mean following it. Refused: 404.
// The environment variable CORIO_HTTP_SERVER_NO_OPENAT2=1 forces the second way (for its tests).
#pragma once

#include <array>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <fcntl.h>
#if __has_include(<linux/openat2.h>)
#include <linux/openat2.h> // struct open_how, RESOLVE_* (Linux 5.6); elsewhere: the O_NOFOLLOW walk
#endif
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <system_error>
#include <unistd.h>
#include <utility>

#include "request.hpp" // detail::equals_ignoring_case, detail::hex_value
#include "status.hpp"

namespace examples::http {

/// An open file descriptor, closed by its destructor. Move-only.
class FileHandle {
public:
    FileHandle() noexcept = default;
    explicit FileHandle(int fd) noexcept : fd_(fd) {}
    FileHandle(FileHandle&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
    FileHandle& operator=(FileHandle&& other) noexcept {
        std::swap(fd_, other.fd_);
        return *this;
    }
    FileHandle(const FileHandle&) = delete;
    FileHandle& operator=(const FileHandle&) = delete;
    ~FileHandle() {
        if (fd_ >= 0) {
            ::close(fd_);
        }
    }
    [[nodiscard]] int get() const noexcept { return fd_; }

private:
    int fd_ = -1;
};

/// The file a target names, ready to read, or the status that says why there is none.
struct Lookup {
    Status status = Status::not_found;
    FileHandle file;
    std::uint64_t size = 0;
    std::string_view content_type;
};

/// The Content-Type for a file name, from its extension.
constexpr std::string_view content_type_of(std::string_view name) noexcept {
    const std::size_t dot = name.rfind('.');
    const std::string_view extension =
        dot == std::string_view::npos ? std::string_view() : name.substr(dot + 1);
    struct Type {
        std::string_view extension;
        std::string_view type;
    };
    constexpr Type types[] = {
        {"html", "text/html; charset=utf-8"},
        {"htm", "text/html; charset=utf-8"},
        {"css", "text/css; charset=utf-8"},
        {"js", "text/javascript; charset=utf-8"},
        {"json", "application/json"},
        {"txt", "text/plain; charset=utf-8"},
        {"svg", "image/svg+xml"},
        {"png", "image/png"},
        {"jpg", "image/jpeg"},
        {"jpeg", "image/jpeg"},
        {"gif", "image/gif"},
        {"ico", "image/x-icon"},
        {"wasm", "application/wasm"},
    };
    for (const Type& type : types) {
        if (type.extension == extension) {
            return type.type;
        }
    }
    return "application/octet-stream";
}

/// How a Site keeps what it opens below its root (see the top of this file).
enum class Confinement {
    openat2, // the kernel resolves the path, beneath the root
    walk,    // one directory at a time, no symbolic link followed
};

class Site {
public:
    /// Longest decoded path a target may name (a request head is smaller anyway).
    static constexpr std::size_t max_path = 4096;

    /// Serves the files below `root`. Throws std::system_error if it is not an openable directory,
    /// saying `what` was wrong with `root`. `wanted`: openat2 if the kernel has it (else the walk),
    /// or the walk.
    static Site directory(const std::string& root, const std::string& what = "--root",
                          Confinement wanted = Confinement::openat2) {
        FileHandle directory = open_directory(root, what + " " + root);
        const Confinement confinement = wanted == Confinement::openat2 && has_openat2(directory)
                                            ? Confinement::openat2
                                            : Confinement::walk;
        return Site(std::move(directory), {}, confinement);
    }

    /// Serves one file, at "/" and at "/<its name>". Throws std::system_error if it cannot be read.
    static Site single_file(const std::string& path) {
        const std::size_t slash = path.rfind('/');
        const std::string parent =
            slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
        std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
        // The name comes from the command line, not from a client: it is opened as given (a
        // symbolic link included), and a client can only ask for it.
        Site site(open_directory(parent, "--file " + path), std::move(name), Confinement::walk);
        if (site.open_file(site.only_name_->c_str()).status != Status::ok) {
            throw std::system_error(ENOENT, std::generic_category(),
                                    "--file " + path + ": not a readable regular file");
        }
        return site;
    }

    /// Opens the file that `target` (a request target as sent) names.
    [[nodiscard]] Lookup open(std::string_view target) const {
        std::array<char, max_path + 16> path{}; // + room for "index.html" and the NUL
        const Status decoded = decode_path(target, path);
        if (decoded != Status::ok) {
            return Lookup{decoded, {}, 0, {}};
        }
        if (only_name_) {
            // "/" or "/<name>" (decoded: "index.html" stands for "/") name the one file.
            const std::string_view asked(path.data());
            if (asked != "index.html" && asked != *only_name_) {
                return Lookup{};
            }
            return open_file(only_name_->c_str());
        }
        return open_file(path.data());
    }

    [[nodiscard]] Confinement confinement() const noexcept { return confinement_; }

private:
    Site(FileHandle root, std::optional<std::string> only_name, Confinement confinement)
        : root_(std::move(root)), only_name_(std::move(only_name)), confinement_(confinement) {}

    static FileHandle open_directory(const std::string& path, const std::string& what) {
        const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0) {
            throw std::system_error(errno, std::generic_category(), what);
        }
        return FileHandle(fd);
    }

    // The target's path, percent-decoded once, relative to the root, NUL-terminated, with
    // "index.html" added to a directory ("/" or ".../"). 400 for what no client should send (see
    // the top of this file, and a bad escape), 404 for paths too long to exist.
    static Status decode_path(std::string_view target, std::span<char> out) noexcept {
        target = target.substr(0, target.find_first_of("?#")); // the query is not part of the path
        // Absolute form ("http://host/path"), which servers must accept: keep the path.
        for (const std::string_view scheme : {"http://", "https://"}) {
            if (detail::equals_ignoring_case(target.substr(0, scheme.size()), scheme)) {
                const std::size_t path_start = target.find('/', scheme.size());
                target = path_start == std::string_view::npos ? std::string_view("/")
                                                              : target.substr(path_start);
            }
        }
        if (!target.starts_with('/')) {
            return Status::bad_request; // "*" or an authority: not a file
        }
        target.remove_prefix(1);
        std::size_t size = 0;
        std::size_t segment_start = 0;
        const std::size_t room = out.size() - 16;
        for (std::size_t i = 0; i <= target.size(); ++i) {
            const bool last = i == target.size(); // the end closes the last segment
            char c = last ? '/' : target[i];
            if (c == '%') {
                const int high = detail::hex_value(i + 1 < target.size() ? target[i + 1] : 'x');
                const int low = detail::hex_value(i + 2 < target.size() ? target[i + 2] : 'x');
                if (high < 0 || low < 0) {
                    return Status::bad_request;
                }
                c = static_cast<char>(high * 16 + low);
                i += 2;
                if (c == '/') {
                    return Status::bad_request; // a slash that is not a separator: no such name
                }
            } else if (c == '/') { // a segment ends: it must name something, and not climb
                const std::string_view segment(out.data() + segment_start, size - segment_start);
                if ((segment.empty() && !last) || segment == "." || segment == "..") {
                    return Status::bad_request;
                }
                segment_start = size + 1;
                if (last) {
                    break;
                }
            }
            const auto byte = static_cast<unsigned char>(c);
            if (byte < 0x20 || byte == 0x7f || c == '\\') { // NUL, controls; a Windows separator
                return Status::bad_request;
            }
            if (size == room) {
                return Status::not_found;
            }
            out[size++] = c;
        }
        if (size == 0 || out[size - 1] == '/') {
            constexpr std::string_view index = "index.html";
            index.copy(out.data() + size, index.size());
            size += index.size();
        }
        out[size] = '\0';
        return Status::ok;
    }

    // O_NONBLOCK: opening a FIFO someone left in the root must not block the whole server; it is
    // then refused with everything else that is not a regular file.
    static constexpr int file_flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;

    // openat2(directory, path, file_flags, beneath `directory`); -1 and errno if refused, ENOSYS
    // where this build or the kernel has no openat2.
    static int open_beneath(int directory, const char* path, int flags) noexcept {
#if defined(SYS_openat2) && defined(RESOLVE_BENEATH)
        open_how how{};
        how.flags = static_cast<std::uint64_t>(flags);
        how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
        return static_cast<int>(::syscall(SYS_openat2, directory, path, &how, sizeof how));
#else
        (void)directory;
        (void)path;
        (void)flags;
        errno = ENOSYS;
        return -1;
#endif
    }

    // Asked once, at startup: an old kernel says ENOSYS, a seccomp filter (some containers) EPERM.
    static bool has_openat2(const FileHandle& directory) noexcept {
        const FileHandle itself(
            open_beneath(directory.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        return itself.get() >= 0;
    }

    // The walk: each directory of `relative` (clean: see decode_path) opened from the one before
    // with O_NOFOLLOW, then the file with O_NOFOLLOW. A symbolic link anywhere fails with ELOOP
    // (or ENOTDIR).
    [[nodiscard]] FileHandle open_by_walk(const char* relative) const {
        FileHandle directory; // the directory reached so far, once past the root
        std::string_view rest(relative);
        for (std::size_t slash = rest.find('/'); slash != std::string_view::npos;
             slash = rest.find('/')) {
            std::array<char, 256> name{}; // NAME_MAX + 1: longer names do not exist
            if (slash >= name.size()) {
                return FileHandle();
            }
            rest.copy(name.data(), slash);
            const int from = directory.get() >= 0 ? directory.get() : root_.get();
            directory = FileHandle(
                ::openat(from, name.data(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
            if (directory.get() < 0) {
                return FileHandle();
            }
            rest.remove_prefix(slash + 1);
        }
        const int from = directory.get() >= 0 ? directory.get() : root_.get();
        return FileHandle(::openat(from, rest.data(), file_flags | O_NOFOLLOW)); // NUL-terminated
    }

    [[nodiscard]] Lookup open_file(const char* relative) const {
        FileHandle file;
        if (only_name_) {
            file = FileHandle(::openat(root_.get(), relative, file_flags)); // see single_file
        } else if (confinement_ == Confinement::openat2) {
            file = FileHandle(open_beneath(root_.get(), relative, file_flags));
        } else {
            file = open_by_walk(relative);
        }
        struct stat status {};
        if (file.get() < 0 || ::fstat(file.get(), &status) < 0 || !S_ISREG(status.st_mode)) {
            return Lookup{};
        }
        return Lookup{Status::ok, std::move(file), static_cast<std::uint64_t>(status.st_size),
                      content_type_of(relative)};
    }

    FileHandle root_;
    std::optional<std::string> only_name_; // set: serve this one file of root_ only
    Confinement confinement_;
};

} // namespace examples::http
