// corio/backend/selector.hpp - the selectors, and the one every Scheduler uses.
//
// The contract is in selector_contract.hpp. Backends: EpollSelector (Linux, level-triggered,
// registered once per fd and modified only when the interest changes) and PollSelector (any POSIX
// system). DefaultSelector is epoll on Linux and poll elsewhere, or poll everywhere when
// CORIO_FORCE_POLL is defined (define it the same way in every translation unit of a program: the
// Scheduler's layout depends on it).
#pragma once

#include "corio/backend/selector_contract.hpp"
#include "corio/backend/poll_selector.hpp"
#if defined(__linux__)
#include "corio/backend/epoll_selector.hpp"
#endif

namespace corio {
#if defined(__linux__) && !defined(CORIO_FORCE_POLL)
/// The selector every Scheduler uses: EpollSelector on Linux, PollSelector elsewhere or when
/// CORIO_FORCE_POLL is defined.
using DefaultSelector = EpollSelector;
#else
using DefaultSelector = PollSelector;
#endif
} // namespace corio
