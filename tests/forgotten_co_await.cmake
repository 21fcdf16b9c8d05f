# A forgotten co_await is a warning (issue 10): compiles tests/compile_fail/forgotten_co_await.cpp
# with -Werror, first as it is (every call awaited: must compile, so that this test cannot pass
# because the file is broken), then once per marked call n with that call's `co_await /*n*/ `
# removed (must fail, with a diagnostic that names nodiscard).
#   cmake -DCXX=<compiler> -DINCLUDE_DIR=<corio/include> -DSOURCE=<the .cpp> -DWORK_DIR=<dir>
#         -P forgotten_co_await.cmake
foreach(variable IN ITEMS CXX INCLUDE_DIR SOURCE WORK_DIR)
    if(NOT DEFINED ${variable})
        message(FATAL_ERROR "forgotten_co_await.cmake: -D${variable}=... is missing")
    endif()
endforeach()

set(flags -std=c++20 -fsyntax-only -Wall -Wextra -Wpedantic -Werror "-I${INCLUDE_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")
file(READ "${SOURCE}" text)

execute_process(COMMAND "${CXX}" ${flags} -DCORIO_CASE=0 "${SOURCE}"
                RESULT_VARIABLE result OUTPUT_VARIABLE output ERROR_VARIABLE output)
if(NOT result EQUAL 0)
    message(FATAL_ERROR "The file with every call awaited does not compile:\n${output}")
endif()

string(REGEX MATCHALL "/\\*[0-9]+\\*/" markers "${text}")
list(REMOVE_DUPLICATES markers)
list(LENGTH markers count)
if(count EQUAL 0)
    message(FATAL_ERROR "No marked call in ${SOURCE}")
endif()
set(not_warned "")
foreach(marker IN LISTS markers)
    string(REGEX REPLACE "[^0-9]" "" number "${marker}")
    string(REPLACE "co_await ${marker} " "" forgotten "${text}")
    set(file "${WORK_DIR}/forgotten_${number}.cpp")
    file(WRITE "${file}" "${forgotten}")
    execute_process(COMMAND "${CXX}" ${flags} -DCORIO_CASE=${number} "${file}"
                    RESULT_VARIABLE result OUTPUT_VARIABLE output ERROR_VARIABLE output)
    if(result EQUAL 0)
        list(APPEND not_warned "call ${number}: compiles without a warning")
    elseif(NOT output MATCHES "nodiscard")
        list(APPEND not_warned "call ${number}: fails, but not for nodiscard:\n${output}")
    endif()
endforeach()
if(not_warned)
    list(JOIN not_warned "\n" report)
    message(FATAL_ERROR "A forgotten co_await must be a warning:\n${report}")
endif()
message(STATUS "${count} forgotten co_awaits, each a nodiscard warning; the awaited file compiles")
