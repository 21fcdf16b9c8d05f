# Finds Catch2 for corio's tests: v2 (Debian's `catch2` package) or v3, installed, or fetched when
# CORIO_FETCH_CATCH2 is ON. Included from the top-level CMakeLists.txt, before examples/ and tests/
# are added, so that a missing Catch2 can leave the tests out without stopping the configure.
#
# Sets:
#   CORIO_CATCH2_FOUND   ON when Catch2::Catch2 exists, else OFF (nothing else is set then)
#   CORIO_CATCH2_MAJOR   2 or 3
#   CORIO_CATCH2_HELP    how to get Catch2, several lines (for error messages)
# and puts Catch.cmake (catch_discover_tests) on CMAKE_MODULE_PATH.
#
# Fetching is opt-in: configuring must not reach for the network unless asked to. Once asked, a
# fetch that cannot work is an error, not a silent skip.

option(CORIO_FETCH_CATCH2 "Download Catch2 v3 with FetchContent when no installed Catch2 is found" OFF)
set(CORIO_CATCH2_GIT_REPOSITORY "https://github.com/catchorg/Catch2.git"
    CACHE STRING "Where CORIO_FETCH_CATCH2 gets Catch2 from")
mark_as_advanced(CORIO_CATCH2_GIT_REPOSITORY)

set(CORIO_CATCH2_HELP [=[
corio's tests need Catch2 (v2 or v3) and none was found.
Do one of:
  * install it:          cmake -P cmake/install_test_deps.cmake  (apt-get install catch2 if missing)
                         or your package manager's catch2 / Catch2 package;
                         if it is in a non-standard prefix, pass
                         -DCMAKE_PREFIX_PATH=<prefix> (or -DCatch2_DIR=<dir>)
  * let CMake fetch it:  -DCORIO_FETCH_CATCH2=ON (needs network access to
                         CORIO_CATCH2_GIT_REPOSITORY, or set
                         -DFETCHCONTENT_SOURCE_DIR_CATCH2=<a Catch2 checkout>)
  * skip the tests:      -DCORIO_BUILD_TESTS=OFF (or AUTO: tests only when Catch2 is found)]=])

set(CORIO_CATCH2_FOUND OFF)
find_package(Catch2 QUIET)

if(Catch2_FOUND)
    if(Catch2_VERSION VERSION_GREATER_EQUAL 3)
        set(CORIO_CATCH2_MAJOR 3)
    else()
        set(CORIO_CATCH2_MAJOR 2)
    endif()
    # Both v2 and v3 install Catch.cmake next to Catch2Config.cmake.
    list(APPEND CMAKE_MODULE_PATH "${Catch2_DIR}")
    set(CORIO_CATCH2_FOUND ON)
    message(STATUS "corio: using installed Catch2 ${Catch2_VERSION} (${Catch2_DIR})")
elseif(CORIO_FETCH_CATCH2)
    include(FetchContent)
    FetchContent_Declare(Catch2
        GIT_REPOSITORY "${CORIO_CATCH2_GIT_REPOSITORY}"
        GIT_TAG v3.5.2
        GIT_SHALLOW TRUE)

    # FetchContent stops with an unhelpful error when the download fails, so
    # check first that the repository can be reached (unless a local source
    # dir was given or the user asked for a disconnected build).
    if(NOT FETCHCONTENT_SOURCE_DIR_CATCH2 AND NOT FETCHCONTENT_FULLY_DISCONNECTED)
        find_package(Git QUIET)
        if(NOT Git_FOUND)
            message(FATAL_ERROR "CORIO_FETCH_CATCH2 is ON but git was not found.\n${CORIO_CATCH2_HELP}")
        endif()
        message(STATUS "corio: Catch2 not installed; checking ${CORIO_CATCH2_GIT_REPOSITORY}")
        execute_process(
            COMMAND "${CMAKE_COMMAND}" -E env GIT_TERMINAL_PROMPT=0
                    "${GIT_EXECUTABLE}" ls-remote --tags "${CORIO_CATCH2_GIT_REPOSITORY}" v3.5.2
            RESULT_VARIABLE _corio_git_rv
            OUTPUT_VARIABLE _corio_git_out
            ERROR_QUIET
            TIMEOUT 60)
        if(NOT _corio_git_rv EQUAL 0 OR NOT _corio_git_out MATCHES "v3\\.5\\.2")
            message(FATAL_ERROR
                "Could not reach ${CORIO_CATCH2_GIT_REPOSITORY} to fetch Catch2 v3.5.2 "
                "(git ls-remote: ${_corio_git_rv}).\n${CORIO_CATCH2_HELP}")
        endif()
    endif()

    # Populate by hand rather than FetchContent_MakeAvailable so that the
    # sub-build is EXCLUDE_FROM_ALL (no Catch2 install rules in corio's
    # install) and its headers are SYSTEM (no warnings from them with -Werror).
    FetchContent_GetProperties(Catch2)
    if(NOT catch2_POPULATED)
        FetchContent_Populate(Catch2)
        set(CATCH_INSTALL_DOCS OFF CACHE BOOL "" FORCE)
        set(CATCH_INSTALL_EXTRAS OFF CACHE BOOL "" FORCE)
        set(CATCH_BUILD_TESTING OFF CACHE BOOL "" FORCE)
        if(CMAKE_VERSION VERSION_GREATER_EQUAL 3.25)
            add_subdirectory("${catch2_SOURCE_DIR}" "${catch2_BINARY_DIR}" EXCLUDE_FROM_ALL SYSTEM)
        else()
            add_subdirectory("${catch2_SOURCE_DIR}" "${catch2_BINARY_DIR}" EXCLUDE_FROM_ALL)
        endif()
    endif()

    if(EXISTS "${catch2_SOURCE_DIR}/extras/Catch.cmake")          # v3
        set(CORIO_CATCH2_MAJOR 3)
        list(APPEND CMAKE_MODULE_PATH "${catch2_SOURCE_DIR}/extras")
    elseif(EXISTS "${catch2_SOURCE_DIR}/contrib/Catch.cmake")     # v2 (e.g. via FETCHCONTENT_SOURCE_DIR_CATCH2)
        set(CORIO_CATCH2_MAJOR 2)
        list(APPEND CMAKE_MODULE_PATH "${catch2_SOURCE_DIR}/contrib")
    else()
        message(FATAL_ERROR "Fetched Catch2 in ${catch2_SOURCE_DIR} has neither extras/Catch.cmake nor contrib/Catch.cmake.\n${CORIO_CATCH2_HELP}")
    endif()
    set(CORIO_CATCH2_FOUND ON)
    message(STATUS "corio: using fetched Catch2 v${CORIO_CATCH2_MAJOR} (${catch2_SOURCE_DIR})")
endif()

if(CORIO_CATCH2_FOUND AND NOT TARGET Catch2::Catch2)
    message(FATAL_ERROR "Catch2 was found but provides no Catch2::Catch2 target.\n${CORIO_CATCH2_HELP}")
endif()
