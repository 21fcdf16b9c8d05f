# Run with `cmake -P` by the packaging:find_package test:
#   1. configure corio (tests/examples off) in WORK_DIR/corio-build,
#   2. build it and `cmake --install` it into WORK_DIR/prefix,
#   3. check the installed files,
#   4. configure, build and run the consumer against that prefix with
#      find_package(corio <EXPECTED_VERSION> CONFIG REQUIRED).
# Any failing step stops the script with FATAL_ERROR (a failed test).
#
# Inputs (-D...): CORIO_SOURCE_DIR, CONSUMER_SOURCE_DIR, WORK_DIR, GENERATOR,
# and optionally GENERATOR_PLATFORM, GENERATOR_TOOLSET, MAKE_PROGRAM,
# CXX_COMPILER, BUILD_TYPE, EXPECTED_VERSION.
cmake_minimum_required(VERSION 3.20)

foreach(var IN ITEMS CORIO_SOURCE_DIR CONSUMER_SOURCE_DIR WORK_DIR GENERATOR)
    if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
        message(FATAL_ERROR "install_and_consume.cmake: -D${var}=... is required")
    endif()
endforeach()

set(corio_build "${WORK_DIR}/corio-build")
set(prefix "${WORK_DIR}/prefix")
set(consumer_build "${WORK_DIR}/consumer-build")

# Runs one step, echoing the command; stops everything if it fails.
function(step name)
    message(STATUS "==> ${name}")
    execute_process(COMMAND ${ARGN}
        RESULT_VARIABLE rv
        COMMAND_ECHO STDOUT)
    if(NOT rv EQUAL 0)
        message(FATAL_ERROR "packaging:find_package: step '${name}' failed (${rv})")
    endif()
endfunction()

set(common_args -G "${GENERATOR}")
if(GENERATOR_PLATFORM)
    list(APPEND common_args -A "${GENERATOR_PLATFORM}")
endif()
if(GENERATOR_TOOLSET)
    list(APPEND common_args -T "${GENERATOR_TOOLSET}")
endif()
if(MAKE_PROGRAM)
    list(APPEND common_args "-DCMAKE_MAKE_PROGRAM=${MAKE_PROGRAM}")
endif()
if(CXX_COMPILER)
    list(APPEND common_args "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}")
endif()
set(config_args)
if(BUILD_TYPE)
    list(APPEND common_args "-DCMAKE_BUILD_TYPE=${BUILD_TYPE}")
    set(config_args --config "${BUILD_TYPE}")
endif()

file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")

step("configure corio"
    "${CMAKE_COMMAND}" -S "${CORIO_SOURCE_DIR}" -B "${corio_build}" ${common_args}
        -DCORIO_BUILD_TESTS=OFF
        -DCORIO_BUILD_EXAMPLES=OFF
        -DCORIO_BUILD_BENCH=OFF
        -DCORIO_INSTALL=ON
        "-DCMAKE_INSTALL_PREFIX=${prefix}")
step("build corio" "${CMAKE_COMMAND}" --build "${corio_build}" ${config_args})
step("install corio" "${CMAKE_COMMAND}" --install "${corio_build}" --prefix "${prefix}" ${config_args})

# The installed tree must be self-contained.
foreach(file IN ITEMS
        include/corio/corio.hpp
        share/cmake/corio/corioConfig.cmake
        share/cmake/corio/corioConfigVersion.cmake
        share/cmake/corio/corioTargets.cmake)
    if(NOT EXISTS "${prefix}/${file}")
        message(FATAL_ERROR "packaging:find_package: '${file}' was not installed into ${prefix}")
    endif()
endforeach()
if(EXISTS "${prefix}/include/catch2" OR EXISTS "${prefix}/lib/cmake/Catch2")
    message(FATAL_ERROR "packaging:find_package: Catch2 was installed along with corio")
endif()

step("configure consumer"
    "${CMAKE_COMMAND}" -S "${CONSUMER_SOURCE_DIR}" -B "${consumer_build}" ${common_args}
        -DCORIO_CONSUME=package
        "-DCMAKE_PREFIX_PATH=${prefix}"
        "-DCORIO_EXPECT_PREFIX=${prefix}"
        "-DCORIO_REQUIRE_VERSION=${EXPECTED_VERSION}"
        -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF
        -DCMAKE_FIND_USE_SYSTEM_PACKAGE_REGISTRY=OFF)
step("build consumer" "${CMAKE_COMMAND}" --build "${consumer_build}" ${config_args})

file(GLOB_RECURSE consumer_exe LIST_DIRECTORIES false
    "${consumer_build}/consumer" "${consumer_build}/consumer.exe")
list(FILTER consumer_exe EXCLUDE REGEX "/CMakeFiles/")
list(LENGTH consumer_exe n)
if(NOT n EQUAL 1)
    message(FATAL_ERROR "packaging:find_package: expected one consumer executable in ${consumer_build}, found: ${consumer_exe}")
endif()
step("run consumer" "${consumer_exe}")

message(STATUS "packaging:find_package: OK (corio installed to ${prefix} and consumed via find_package)")
