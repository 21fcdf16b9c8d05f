// corio/corio.hpp - everything: Task, Scheduler, system calls, selectors, AsyncSocket.
#pragma once

#include "corio/async_socket.hpp"
#include "corio/scheduler.hpp"
#include "corio/selector.hpp"
#include "corio/syscalls.hpp"
#include "corio/system_call.hpp"
#include "corio/task.hpp"
#include "corio/task_exit.hpp"
#include "corio/timeout.hpp"
#include "corio/timeout_error.hpp"
#include "corio/virtual_clock.hpp"
