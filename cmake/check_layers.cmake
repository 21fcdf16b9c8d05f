# check_layers.cmake - includes go one way: a header includes only corio headers of its own layer
# or of the layers below it (docs/architecture.md draws the picture).
#
#   cmake -DINCLUDE_DIR=<repo>/include -P cmake/check_layers.cmake
#
# Layers, lowest first. The root folder holds two layers: the vocabulary every layer speaks (tasks,
# ids, errors, clocks, the thread pool) and the API built on the kernel; the files of each are listed.
#   0 detail/      leaves: include nothing of corio
#   1 backend/     the operating system's readiness APIs
#   2 vocabulary   task.hpp task_id.hpp task_exit.hpp syscall_concept.hpp timeout_error.hpp
#                  virtual_clock.hpp thread_pool.hpp
#   3 kernel/      the loop and its parts
#   4 core         scheduler.hpp syscalls.hpp timeout.hpp run_in_thread.hpp
#   5 sync/ group/ net/   each may include its own folder and the layers below, not each other
#   6 tls/         TLS over net/ (OpenSSL: optional, so corio.hpp never includes it)
#   7 top          corio.hpp run_on_threads.hpp signal_wait.hpp tls.hpp, and diag/ (introspection)
# Exits with an error naming every include that goes the wrong way.
cmake_minimum_required(VERSION 3.20)

if(NOT INCLUDE_DIR)
    message(FATAL_ERROR "check_layers.cmake: pass -DINCLUDE_DIR=<repo>/include")
endif()

set(vocabulary task.hpp task_id.hpp task_exit.hpp syscall_concept.hpp timeout_error.hpp
    virtual_clock.hpp thread_pool.hpp)
set(core scheduler.hpp syscalls.hpp timeout.hpp run_in_thread.hpp)
set(top corio.hpp run_on_threads.hpp signal_wait.hpp tls.hpp)

# Sets <out_rank> and <out_group> for a path relative to include/corio/ (group: the folder of
# layer 5, whose siblings may not include each other; empty elsewhere).
function(layer_of path out_rank out_group)
    set(group "")
    if(path MATCHES "^detail/")
        set(rank 0)
    elseif(path MATCHES "^backend/")
        set(rank 1)
    elseif(path MATCHES "^kernel/")
        set(rank 3)
    elseif(path MATCHES "^(sync|group|net)/")
        set(rank 5)
        string(REGEX REPLACE "/.*" "" group "${path}")
    elseif(path MATCHES "^tls/")
        set(rank 6)
    elseif(path MATCHES "^diag/")
        set(rank 7) # beside the top: the monitor serves over net/, the dump waits for signals
    elseif(path MATCHES "/")
        set(rank -1) # a folder nobody placed: reported
    elseif(path IN_LIST vocabulary)
        set(rank 2)
    elseif(path IN_LIST core)
        set(rank 4)
    elseif(path IN_LIST top)
        set(rank 7)
    else()
        set(rank -1)
    endif()
    set(${out_rank} ${rank} PARENT_SCOPE)
    set(${out_group} "${group}" PARENT_SCOPE)
endfunction()

file(GLOB_RECURSE headers RELATIVE "${INCLUDE_DIR}/corio" "${INCLUDE_DIR}/corio/*.hpp")
set(problems "")
foreach(header IN LISTS headers)
    layer_of("${header}" rank group)
    if(rank EQUAL -1)
        string(APPEND problems "  ${header}: in no layer (place it in check_layers.cmake and docs/architecture.md)\n")
        continue()
    endif()
    file(STRINGS "${INCLUDE_DIR}/corio/${header}" includes REGEX "^#include [\"<]corio/")
    foreach(line IN LISTS includes)
        string(REGEX REPLACE "^#include [\"<]corio/([^\">]+)[\">].*" "\\1" included "${line}")
        layer_of("${included}" included_rank included_group)
        if(included_rank EQUAL -1 OR included_rank GREATER rank)
            string(APPEND problems "  ${header} (layer ${rank}) includes ${included} (layer ${included_rank})\n")
        elseif(rank EQUAL 5 AND included_rank EQUAL 5 AND NOT group STREQUAL included_group)
            string(APPEND problems "  ${header} includes ${included}: sync/, group/ and net/ stand side by side\n")
        elseif(header STREQUAL "corio.hpp" AND (included MATCHES "^tls" OR included STREQUAL "tls.hpp"))
            string(APPEND problems "  corio.hpp includes ${included}: TLS is optional (OpenSSL), corio.hpp must build without it\n")
        endif()
    endforeach()
endforeach()

list(LENGTH headers count)
if(problems)
    message(FATAL_ERROR "Includes that go the wrong way (see docs/architecture.md):\n${problems}")
endif()
message(STATUS "check_layers: ${count} headers, every include goes down or sideways within its layer")
