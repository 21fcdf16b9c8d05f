// examples/http_server in a real browser: one headless Chromium opens the default page in several
// tabs at once, and each tab must have rendered it — its text, the stylesheet applied, the script
// run (the server sends `nosniff`, so the browser uses the CSS and the script only if their
// Content-Type is right).
//
// Chromium is driven with the DevTools protocol over a pipe (--remote-debugging-pipe): it reads
// commands from its fd 3 and writes replies to its fd 4, each a JSON text ended by a NUL byte. We
// send Target.createTarget once per tab (all before waiting for any), attach to each tab, and
// evaluate a line of JavaScript in it until the page is complete. No package beyond Chromium.
//
// Without Chromium (none at /usr/bin/chromium, none on PATH, CORIO_CHROMIUM unset) the test exits
// with status 77, which ctest reports as skipped (SKIP_RETURN_CODE), never as passed. Every wait is
// bounded; the browser is asked to close, then killed by PID whatever happens.
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fcntl.h>
#include <filesystem>
#include <iostream>
#include <map>
#include <optional>
#include <poll.h>
#include <string>
#include <string_view>
#include <unistd.h>
#include <utility>
#include <vector>

#include "support/catch.hpp"
#include "support/child_process.hpp"
#include "support/fd.hpp"
#include "support/temporary_directory.hpp"

#ifndef CORIO_HTTP_SERVER_PATH
#error "CORIO_HTTP_SERVER_PATH must name the http_server example (tests/CMakeLists.txt defines it)"
#endif

namespace {

using namespace corio::test; // Child, Server, UniqueFd
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr int skipped = 77; // SKIP_RETURN_CODE in tests/CMakeLists.txt
constexpr int tabs = 8;     // more than Chromium's 6 connections per host: some tabs must queue

/// The Chromium to use: $CORIO_CHROMIUM if set (nothing if that is not executable), else
/// /usr/bin/chromium or a chromium on PATH.
std::optional<std::string> find_chromium() {
    if (const char* chosen = std::getenv("CORIO_CHROMIUM"); chosen != nullptr && *chosen != '\0') {
        return ::access(chosen, X_OK) == 0 ? std::optional<std::string>(chosen) : std::nullopt;
    }
    std::vector<std::string> candidates{"/usr/bin/chromium"};
    if (const char* path = std::getenv("PATH"); path != nullptr) {
        std::string_view directories = path;
        while (!directories.empty()) {
            const std::size_t colon = directories.find(':');
            const std::string directory(directories.substr(0, colon));
            for (const char* name : {"chromium", "chromium-browser"}) {
                candidates.push_back(directory + "/" + name);
            }
            directories = colon == std::string_view::npos ? "" : directories.substr(colon + 1);
        }
    }
    for (const std::string& candidate : candidates) {
        if (::access(candidate.c_str(), X_OK) == 0) {
            return candidate;
        }
    }
    return std::nullopt;
}

/// A JSON string literal's content: the characters of `text`, with quotes and controls escaped.
std::string json_string(std::string_view text) {
    std::string quoted = "\"";
    for (const char c : text) {
        if (c == '"' || c == '\\') {
            quoted += '\\';
            quoted += c;
        } else if (static_cast<unsigned char>(c) < 0x20) {
            char escape[8];
            std::snprintf(escape, sizeof escape, "\\u%04x", c);
            quoted += escape;
        } else {
            quoted += c;
        }
    }
    return quoted + '"';
}

/// The string value of the first `"key":"..."` in `json`, unescaped (\uXXXX beyond ASCII becomes
/// '?': we only compare ASCII); nothing if there is none. Enough for Chromium's replies.
std::optional<std::string> string_field(std::string_view json, std::string_view key) {
    const std::string pattern = "\"" + std::string(key) + "\":\"";
    std::size_t at = json.find(pattern);
    if (at == std::string_view::npos) {
        return std::nullopt;
    }
    at += pattern.size();
    std::string value;
    while (at < json.size() && json[at] != '"') {
        char c = json[at++];
        if (c == '\\' && at < json.size()) {
            const char escaped = json[at++];
            switch (escaped) {
            case 'n':
                c = '\n';
                break;
            case 't':
                c = '\t';
                break;
            case 'r':
                c = '\r';
                break;
            case 'u': {
                const unsigned long code =
                    std::strtoul(std::string(json.substr(at, 4)).c_str(), nullptr, 16);
                c = code < 0x80 ? static_cast<char>(code) : '?';
                at += 4;
                break;
            }
            default:
                c = escaped;
                break; // \" \\ \/
            }
        }
        value += c;
    }
    return value;
}

// The DevTools protocol over Chromium's pipe: commands out (its fd 3), NUL-ended replies in
// (its fd 4).
class DevTools {
public:
    DevTools(UniqueFd commands, UniqueFd replies)
        : commands_(std::move(commands)), replies_(std::move(replies)) {}

    /// Sends a command (to the browser, or to a tab's session) and gives its id.
    int send(std::string_view method, std::string_view params, std::string_view session = "") {
        const int id = next_id_++;
        std::string message = "{\"id\":" + std::to_string(id);
        if (!session.empty()) {
            message += ",\"sessionId\":" + json_string(session);
        }
        message +=
            ",\"method\":" + json_string(method) + ",\"params\":" + std::string(params) + "}";
        message += '\0';
        write_fully(commands_.get(), message, "Chromium's pipe");
        return id;
    }

    /// The reply to command `id`; nothing by the deadline. Replies to other commands that come
    /// first are kept for later; events are dropped (we enable none we need).
    std::optional<std::string> reply(int id, Clock::time_point deadline) {
        for (;;) {
            if (const auto kept = replies_by_id_.find(id); kept != replies_by_id_.end()) {
                std::string message = std::move(kept->second);
                replies_by_id_.erase(kept);
                return message;
            }
            while (std::optional<std::string> message = next_message()) {
                // Chromium writes the id first: {"id":N,...}; events have no id.
                constexpr std::string_view prefix = "{\"id\":";
                if (message->starts_with(prefix)) {
                    const int reply_id = std::atoi(message->c_str() + prefix.size());
                    replies_by_id_[reply_id] = std::move(*message);
                }
            }
            if (replies_by_id_.count(id) == 0 && !fill(deadline)) {
                return std::nullopt;
            }
        }
    }

    /// Sends a command and waits for its reply, which must come and must not be an error.
    std::string call(std::string_view method, std::string_view params, Clock::time_point deadline,
                     std::string_view session = "") {
        const std::optional<std::string> answer = reply(send(method, params, session), deadline);
        INFO(method << " " << params);
        REQUIRE(answer.has_value());
        INFO("reply: " << *answer);
        REQUIRE(answer->find("\"error\":") == std::string::npos);
        return *answer;
    }

    void close_commands() { commands_.reset(); }

private:
    std::optional<std::string> next_message() {
        const std::size_t end = buffer_.find('\0');
        if (end == std::string::npos) {
            return std::nullopt;
        }
        std::string message = buffer_.substr(0, end);
        buffer_.erase(0, end + 1);
        return message;
    }

    bool fill(Clock::time_point deadline) {
        const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
        if (left.count() <= 0) {
            return false;
        }
        pollfd watched{replies_.get(), POLLIN, 0};
        const int ready = ::poll(&watched, 1, static_cast<int>(left.count()));
        if (ready < 0 && errno == EINTR) {
            return true;
        }
        if (ready <= 0) {
            return false;
        }
        char chunk[65536];
        const ssize_t count = ::read(replies_.get(), chunk, sizeof chunk);
        if (count < 0 && errno == EINTR) {
            return true;
        }
        if (count <= 0) {
            return false; // the browser is gone
        }
        buffer_.append(chunk, static_cast<std::size_t>(count));
        return true;
    }

    UniqueFd commands_;
    UniqueFd replies_;
    std::string buffer_;
    std::map<int, std::string> replies_by_id_;
    int next_id_ = 1;
};

// What one tab shows, read by evaluating this expression in it (no await: polled until ready).
constexpr std::string_view page_state =
    "[location.href, document.readyState,"
    " (document.querySelector('h1') ? getComputedStyle(document.querySelector('h1')).color : ''),"
    " (document.body ? document.body.innerText : '')].join('\\n')";

struct TabState {
    std::string href;
    std::string ready_state;
    std::string heading_color;
    std::string text;
};

TabState parse_tab_state(const std::string& value) {
    TabState state;
    std::size_t start = 0;
    for (std::string* field : {&state.href, &state.ready_state, &state.heading_color}) {
        const std::size_t newline = value.find('\n', start);
        if (newline == std::string::npos) {
            return state;
        }
        *field = value.substr(start, newline - start);
        start = newline + 1;
    }
    state.text = value.substr(start);
    return state;
}

// Shows the browser's stderr when the test leaves by a failed REQUIRE: why it did not render.
class BrowserLog {
public:
    BrowserLog(const Child& browser, std::string name)
        : browser_(browser), name_(std::move(name)) {}
    BrowserLog(const BrowserLog&) = delete;
    BrowserLog& operator=(const BrowserLog&) = delete;
    ~BrowserLog() {
        if (std::uncaught_exceptions() > 0) {
            std::cerr << name_ << " stderr:\n" << browser_.stderr_text() << std::flush;
        }
    }

private:
    const Child& browser_;
    std::string name_;
};

std::size_t count_of(std::string_view text, std::string_view what) {
    std::size_t count = 0;
    for (std::size_t at = text.find(what); at != std::string_view::npos;
         at = text.find(what, at + what.size())) {
        ++count;
    }
    return count;
}

} // namespace

TEST_CASE("http_server page renders in a real browser, 8 Chromium tabs at once",
          "[http_server][browser]") {
    const std::optional<std::string> chromium = find_chromium();
    if (!chromium) {
        std::cout << "SKIPPED: no Chromium found (looked at $CORIO_CHROMIUM if set, else at "
                     "/usr/bin/chromium and chromium/chromium-browser on PATH); install Debian's "
                     "chromium package to run this test\n"
                  << std::flush;
        std::exit(skipped); // ctest: SKIP_RETURN_CODE
    }

    Server server(CORIO_HTTP_SERVER_PATH, {"--verbose"}); // the default site, examples/www
    const std::string url = "http://127.0.0.1:" + std::to_string(server.port) + "/";

    FdPair to_browser = make_pipe();   // its fd 3: our commands
    FdPair from_browser = make_pipe(); // its fd 4: its replies
    // Blocking, all but the end we poll: O_NONBLOCK belongs to the open pipe, not to one fd, so
    // the browser would get it too, and Chromium takes EAGAIN on its fd 3 for a broken pipe.
    for (const int fd :
         {to_browser.first.get(), to_browser.second.get(), from_browser.second.get()}) {
        REQUIRE(::fcntl(fd, F_SETFL, 0) == 0);
    }
    TemporaryDirectory profile("corio_chromium_");
    std::vector<std::string> arguments{"--headless",
                                       "--remote-debugging-pipe",
                                       "--user-data-dir=" + profile.path().string(),
                                       "--disable-gpu",
                                       "--disable-dev-shm-usage",
                                       "--no-first-run",
                                       "--no-default-browser-check",
                                       "--disable-extensions",
                                       "--disable-background-networking",
                                       "about:blank"};
    if (::geteuid() == 0) {
        arguments.insert(arguments.begin(), "--no-sandbox"); // Chromium refuses root otherwise
    }
    Child browser(*chromium, arguments, false,
                  {{to_browser.first.get(), 3}, {from_browser.second.get(), 4}});
    to_browser.first.reset(); // the browser's ends: closed here, so EOF means it is gone
    from_browser.second.reset();
    DevTools devtools(std::move(to_browser.second), std::move(from_browser.first));
    const BrowserLog browser_log(browser, *chromium);

    const auto deadline = Clock::now() + 60s;
    // All tabs at once: every createTarget goes out before any reply is read.
    std::vector<int> creations;
    for (int tab = 0; tab < tabs; ++tab) {
        creations.push_back(
            devtools.send("Target.createTarget", "{\"url\":" + json_string(url) + "}"));
    }
    std::vector<std::string> sessions;
    for (const int creation : creations) {
        const std::optional<std::string> created = devtools.reply(creation, deadline);
        REQUIRE(created.has_value());
        const std::optional<std::string> target = string_field(*created, "targetId");
        INFO("reply: " << *created);
        REQUIRE(target.has_value());
        const std::string attached =
            devtools.call("Target.attachToTarget",
                          "{\"targetId\":" + json_string(*target) + ",\"flatten\":true}", deadline);
        const std::optional<std::string> session = string_field(attached, "sessionId");
        REQUIRE(session.has_value());
        sessions.push_back(*session);
    }

    // Poll every tab until its page is complete (or the deadline passes).
    std::vector<std::optional<TabState>> rendered(sessions.size());
    const std::string evaluate =
        "{\"expression\":" + json_string(page_state) + ",\"returnByValue\":true}";
    while (Clock::now() < deadline) {
        bool all_done = true;
        for (std::size_t tab = 0; tab < sessions.size(); ++tab) {
            if (rendered[tab]) {
                continue;
            }
            const std::optional<std::string> answer = devtools.reply(
                devtools.send("Runtime.evaluate", evaluate, sessions[tab]), deadline);
            REQUIRE(answer.has_value());
            // An error (e.g. the context went away while the page loaded) means: not yet.
            const std::optional<std::string> value = string_field(*answer, "value");
            if (value) {
                TabState state = parse_tab_state(*value);
                if (state.href == url && state.ready_state == "complete" &&
                    state.text.find("The script ran.") != std::string::npos) {
                    rendered[tab] = std::move(state);
                    continue;
                }
            }
            all_done = false;
        }
        if (all_done) {
            break;
        }
        ::usleep(100 * 1000);
    }

    for (std::size_t tab = 0; tab < sessions.size(); ++tab) {
        INFO("tab " << tab);
        REQUIRE(rendered[tab].has_value()); // rendered before the deadline
        CHECK(rendered[tab]->text.starts_with("Hello from corio"));
        CHECK(rendered[tab]->text.find("one coroutine per connection") != std::string::npos);
        CHECK(rendered[tab]->heading_color == "rgb(0, 102, 51)"); // style.css applied
    }

    // Close the browser politely; the Child kills it by PID if it does not go.
    devtools.send("Browser.close", "{}");
    CHECK(browser.wait_exit(10s).has_value());

    // Every tab fetched the page, the stylesheet and the script from our server (no-store).
    server.process.send_signal(SIGTERM);
    CHECK(exited_with(server.process.wait_exit(5s), 0));
    const std::string log = server.process.stderr_text();
    INFO("server log:\n" << log);
    CHECK(count_of(log, "GET / HTTP/1.1 -> 200") >= static_cast<std::size_t>(tabs));
    CHECK(count_of(log, "GET /style.css HTTP/1.1 -> 200") >= static_cast<std::size_t>(tabs));
    CHECK(count_of(log, "GET /app.js HTTP/1.1 -> 200") >= static_cast<std::size_t>(tabs));
}
