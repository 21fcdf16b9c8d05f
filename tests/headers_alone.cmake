# Every header compiles on its own: includes nothing it relies on by luck of include order (a user
# may include any header first). Compiles `#include <corio/HEADER>` for each header under
# INCLUDE_DIR with -fsyntax-only -Werror, once as is and once with CORIO_FORCE_POLL (the poll
# selector's own include path). The TLS headers (corio/tls.hpp, corio/tls/) need OpenSSL: they are
# compiled only with -DWITH_OPENSSL=ON (and OPENSSL_INCLUDE_DIR when it is not a system path).
#   cmake -DCXX=<compiler> -DINCLUDE_DIR=<corio/include> -DWORK_DIR=<dir> [-DWITH_OPENSSL=ON]
#         [-DOPENSSL_INCLUDE_DIR=<dir>] -P headers_alone.cmake
foreach(variable IN ITEMS CXX INCLUDE_DIR WORK_DIR)
    if(NOT DEFINED ${variable})
        message(FATAL_ERROR "headers_alone.cmake: -D${variable}=... is missing")
    endif()
endforeach()

file(MAKE_DIRECTORY "${WORK_DIR}")
file(GLOB_RECURSE headers RELATIVE "${INCLUDE_DIR}" "${INCLUDE_DIR}/corio/*.hpp")
list(SORT headers)
if(NOT WITH_OPENSSL)
    list(FILTER headers EXCLUDE REGEX "^corio/tls(\\.hpp|/)")
endif()
set(extra_includes "")
if(WITH_OPENSSL AND OPENSSL_INCLUDE_DIR)
    set(extra_includes "-I${OPENSSL_INCLUDE_DIR}")
endif()
set(failures "")
foreach(header IN LISTS headers)
    string(MAKE_C_IDENTIFIER "${header}" name)
    set(source "${WORK_DIR}/${name}.cpp")
    file(WRITE "${source}" "#include <${header}>\n")
    foreach(defines IN ITEMS "-DCORIO_HEADERS_ALONE" "-DCORIO_FORCE_POLL")
        execute_process(COMMAND "${CXX}" -std=c++20 -fsyntax-only -Wall -Wextra -Wpedantic -Werror
                                "-I${INCLUDE_DIR}" ${extra_includes} ${defines} "${source}"
                        RESULT_VARIABLE result OUTPUT_VARIABLE output ERROR_VARIABLE output)
        if(NOT result EQUAL 0)
            string(APPEND failures "${header} (${defines}):\n${output}\n")
        endif()
    endforeach()
endforeach()

list(LENGTH headers count)
if(failures)
    message(FATAL_ERROR "Headers that do not compile on their own:\n${failures}")
endif()
message(STATUS "headers_alone: ${count} headers compile on their own")
