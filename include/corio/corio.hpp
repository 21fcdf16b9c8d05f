// corio/corio.hpp - everything: Task, Scheduler, system calls, selectors, AsyncSocket, the thread
// pool and name resolution.
#pragma once

#include "corio/async_socket.hpp"
#include "corio/event.hpp"
#include "corio/lock.hpp"
#include "corio/queue.hpp"
#include "corio/resolve.hpp"
#include "corio/run_in_thread.hpp"
#include "corio/scheduler.hpp"
#include "corio/selector.hpp"
#include "corio/semaphore.hpp"
#include "corio/syscalls.hpp"
#include "corio/system_call.hpp"
#include "corio/task.hpp"
#include "corio/task_exit.hpp"
#include "corio/task_group.hpp"
#include "corio/thread_pool.hpp"
#include "corio/timeout.hpp"
#include "corio/timeout_error.hpp"
#include "corio/virtual_clock.hpp"
#include "corio/when_all.hpp"
#include "corio/when_any.hpp"
