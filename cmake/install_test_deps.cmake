# Installs what corio's tests need beyond a compiler, CMake and Ninja: Catch2 (v2 or v3).
#
#     cmake -P cmake/install_test_deps.cmake
#
# It looks for Catch2 the way the build will (find_package in a throw-away configure, so
# CMAKE_PREFIX_PATH and a Catch2 v3 under /usr/local count), and only when there is none installs
# Debian's `catch2` package with apt-get: through sudo unless run as root, after `apt-get update`
# if the package lists are missing. Elsewhere it stops and says what to install.
# Pass -DCMAKE_PREFIX_PATH=<prefix> before -P to look in a prefix of your own too.
cmake_minimum_required(VERSION 3.20)

# Sets ${found_var} to the directory of Catch2's CMake package, or to "" when find_package fails.
function(corio_find_catch2 found_var)
    if(DEFINED ENV{TMPDIR} AND IS_DIRECTORY "$ENV{TMPDIR}")
        set(temp_root "$ENV{TMPDIR}")
    else()
        set(temp_root "/tmp")
    endif()
    string(RANDOM LENGTH 10 suffix)
    set(probe "${temp_root}/corio-catch2-probe-${suffix}")
    # find_package cannot run in script mode (a package's targets file calls add_library), hence a
    # project of no language: configuring it compiles nothing and needs no build tool.
    file(WRITE "${probe}/CMakeLists.txt" [=[
cmake_minimum_required(VERSION 3.20)
project(corio_catch2_probe NONE)
find_package(Catch2 QUIET)
if(Catch2_FOUND)
    file(WRITE "${CMAKE_BINARY_DIR}/catch2_dir.txt" "${Catch2_DIR}")
endif()
]=])
    set(probe_args)
    if(CMAKE_PREFIX_PATH)
        list(APPEND probe_args "-DCMAKE_PREFIX_PATH=${CMAKE_PREFIX_PATH}")
    endif()
    # Even a project of no language needs its generator's build tool to exist: prefer Ninja, which
    # the README's commands use, over make, which a fresh machine may lack.
    find_program(ninja_program ninja)
    if(ninja_program AND NOT DEFINED ENV{CMAKE_GENERATOR})
        list(APPEND probe_args -G Ninja)
    endif()
    execute_process(
        COMMAND "${CMAKE_COMMAND}" -S "${probe}" -B "${probe}/build" ${probe_args}
        RESULT_VARIABLE probe_result
        OUTPUT_VARIABLE probe_output
        ERROR_VARIABLE probe_output)
    set(catch2_dir "")
    if(EXISTS "${probe}/build/catch2_dir.txt")
        file(READ "${probe}/build/catch2_dir.txt" catch2_dir)
    elseif(NOT probe_result EQUAL 0)
        file(REMOVE_RECURSE "${probe}")
        message(FATAL_ERROR "corio: could not look for Catch2 (a CMake configure of an empty project "
                            "failed):\n${probe_output}")
    endif()
    file(REMOVE_RECURSE "${probe}")
    set(${found_var} "${catch2_dir}" PARENT_SCOPE)
endfunction()

corio_find_catch2(catch2_dir)
if(catch2_dir)
    message(STATUS "corio: Catch2 is installed (${catch2_dir}): nothing to install")
    return()
endif()

string(CONCAT manual_help "install Catch2 (v2 or v3) with your package manager (catch2 / Catch2), "
                          "or configure with -DCORIO_FETCH_CATCH2=ON to download it, or point "
                          "-DCMAKE_PREFIX_PATH at a prefix where it is installed")

find_program(CORIO_APT_GET apt-get)
if(NOT CORIO_APT_GET)
    message(FATAL_ERROR "corio: Catch2 is missing and this system has no apt-get: ${manual_help}.")
endif()

set(as_root)
execute_process(COMMAND id -u OUTPUT_VARIABLE user_id OUTPUT_STRIP_TRAILING_WHITESPACE)
if(NOT user_id STREQUAL "0")
    find_program(CORIO_SUDO sudo)
    if(NOT CORIO_SUDO)
        message(FATAL_ERROR "corio: Catch2 is missing; installing it needs root and there is no sudo: "
                            "run `apt-get install catch2` as root, or ${manual_help}.")
    endif()
    set(as_root "${CORIO_SUDO}")
endif()

# env(1) passes DEBIAN_FRONTEND through sudo, which resets the environment.
set(apt_get ${as_root} env DEBIAN_FRONTEND=noninteractive "${CORIO_APT_GET}")
string(JOIN " " shown_command ${as_root} apt-get install -y catch2)
message(STATUS "corio: Catch2 is missing; installing Debian's catch2: ${shown_command}")
execute_process(COMMAND ${apt_get} install -y catch2 RESULT_VARIABLE install_result)
if(NOT install_result EQUAL 0)
    # A fresh image often has no package lists yet: fetch them once and try again.
    message(STATUS "corio: apt-get install failed (${install_result}); running apt-get update and retrying")
    execute_process(COMMAND ${apt_get} update RESULT_VARIABLE update_result)
    execute_process(COMMAND ${apt_get} install -y catch2 RESULT_VARIABLE install_result)
    if(NOT install_result EQUAL 0)
        message(FATAL_ERROR "corio: `${shown_command}` failed (${install_result}): ${manual_help}.")
    endif()
endif()

corio_find_catch2(catch2_dir)
if(NOT catch2_dir)
    message(FATAL_ERROR "corio: the catch2 package is installed but CMake does not find Catch2: "
                        "${manual_help}.")
endif()
message(STATUS "corio: Catch2 installed (${catch2_dir})")
