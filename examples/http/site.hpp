// examples/http/site.hpp - which file a request target names, and never one outside the site.
//
// A Site is a directory (--root DIR) or one file (--file PATH). It holds the directory open and
// opens files relative to it with openat(), after decoding the path and refusing any `..` segment:
// nothing a client writes can name a file above the root (symbolic links inside the root are the
// owner's choice and are followed). Files are opened per request, so edits show at once.
#pragma once

#include <array>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <fcntl.h>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <sys/stat.h>
#include <system_error>
#include <unistd.h>
#include <utility>

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

class Site {
public:
    /// Longest decoded path a target may name (a request head is smaller anyway).
    static constexpr std::size_t max_path = 4096;

    /// Serves the files below `root`. Throws std::system_error if it is not an openable directory,
    /// saying `what` was wrong with `root`.
    static Site directory(const std::string& root, const std::string& what = "--root") {
        return Site(open_directory(root, what + " " + root), {});
    }

    /// Serves one file, at "/" and at "/<its name>". Throws std::system_error if it cannot be read.
    static Site single_file(const std::string& path) {
        const std::size_t slash = path.rfind('/');
        const std::string parent =
            slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
        std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
        Site site(open_directory(parent, "--file " + path), std::move(name));
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
        const char* relative = path.data();
        if (only_name_) {
            // "/" or "/<name>" (decoded: "index.html" stands for "/") name the one file.
            const std::string_view asked(relative);
            if (asked != "index.html" && asked != *only_name_) {
                return Lookup{};
            }
            relative = only_name_->c_str();
        }
        return open_file(relative);
    }

private:
    Site(FileHandle root, std::optional<std::string> only_name)
        : root_(std::move(root)), only_name_(std::move(only_name)) {}

    static FileHandle open_directory(const std::string& path, const std::string& what) {
        const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0) {
            throw std::system_error(errno, std::generic_category(), what);
        }
        return FileHandle(fd);
    }

    // The target's path, percent-decoded, relative to the root, NUL-terminated, with "index.html"
    // added to a directory ("/" or ".../"). 400 for what no client should send (an encoded NUL,
    // a bad escape, a `..` segment: trying to leave the root), 404 for paths too long to exist.
    static Status decode_path(std::string_view target, std::span<char> out) noexcept {
        // Absolute form ("http://host/path"), which servers must accept: keep the path.
        if (target.starts_with("http://") || target.starts_with("https://")) {
            const std::size_t path_start = target.find('/', target.find("//") + 2);
            target = path_start == std::string_view::npos ? std::string_view("/")
                                                          : target.substr(path_start);
        }
        target = target.substr(0, target.find_first_of("?#")); // the query is not part of the path
        if (!target.starts_with('/')) {
            return Status::bad_request; // "*" or an authority: not a file
        }
        target.remove_prefix(1);
        std::size_t size = 0;
        std::size_t segment_start = 0;
        const std::size_t room = out.size() - 16;
        for (std::size_t i = 0; i <= target.size(); ++i) {
            char c = '/'; // the end closes the last segment
            if (i < target.size()) {
                c = target[i];
                if (c == '%') {
                    const int high = hex_value(i + 1 < target.size() ? target[i + 1] : 0);
                    const int low = hex_value(i + 2 < target.size() ? target[i + 2] : 0);
                    if (high < 0 || low < 0 || (high == 0 && low == 0)) {
                        return Status::bad_request;
                    }
                    c = static_cast<char>(high * 16 + low);
                    i += 2;
                }
            }
            if (c == '/') { // a segment ends: it must not climb out
                if (std::string_view(out.data() + segment_start, size - segment_start) == "..") {
                    return Status::bad_request;
                }
                segment_start = size + 1;
            }
            if (i < target.size()) {
                if (size == room) {
                    return Status::not_found;
                }
                out[size++] = c;
            }
        }
        if (size == 0 || out[size - 1] == '/') {
            constexpr std::string_view index = "index.html";
            index.copy(out.data() + size, index.size());
            size += index.size();
        }
        out[size] = '\0';
        return Status::ok;
    }

    static int hex_value(char c) noexcept {
        if (c >= '0' && c <= '9') {
            return c - '0';
        }
        if (c >= 'a' && c <= 'f') {
            return c - 'a' + 10;
        }
        if (c >= 'A' && c <= 'F') {
            return c - 'A' + 10;
        }
        return -1;
    }

    // O_NONBLOCK: opening a FIFO someone left in the root must not block the whole server; it is
    // then refused with everything else that is not a regular file.
    [[nodiscard]] Lookup open_file(const char* relative) const {
        FileHandle file(
            ::openat(root_.get(), relative, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
        struct stat status {};
        if (file.get() < 0 || ::fstat(file.get(), &status) < 0 || !S_ISREG(status.st_mode)) {
            return Lookup{};
        }
        return Lookup{Status::ok, std::move(file), static_cast<std::uint64_t>(status.st_size),
                      content_type_of(relative)};
    }

    FileHandle root_;
    std::optional<std::string> only_name_; // set: serve this one file of root_ only
};

} // namespace examples::http
