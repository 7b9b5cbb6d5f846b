# Helpers for ddm's test tree.

include(GoogleTest)

# ddm_add_test_suite(<name> SOURCES <files...> [LIBRARIES <targets...>])
# One GoogleTest executable; each TEST() becomes its own CTest test (discovered before running).
function(ddm_add_test_suite name)
  cmake_parse_arguments(ARG "" "" "SOURCES;LIBRARIES" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ddm::ddm ddm_support GTest::gtest GTest::gtest_main ${ARG_LIBRARIES})
  target_compile_options(${name} PRIVATE
    $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wno-sign-conversion>
    $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wall,-Wextra,-Wshadow,-Wconversion,-Wno-sign-conversion>)
  gtest_discover_tests(${name} DISCOVERY_MODE PRE_TEST DISCOVERY_TIMEOUT 60
    PROPERTIES LABELS "${name}")
endfunction()

# ddm_add_header_check(<target> <language> <extension> <headers...> [LIBRARIES <targets...>])
# One translation unit per header that includes it twice (self-contained and guarded), linked
# with ddm::ddm and LIBRARIES (e.g. ddm::eigen for headers that need Eigen).
function(ddm_add_header_check target language extension)
  cmake_parse_arguments(ARG "" "" "LIBRARIES" ${ARGN})
  set(sources)
  foreach(header IN LISTS ARG_UNPARSED_ARGUMENTS)
    string(MAKE_C_IDENTIFIER "${header}" id)
    set(src "${CMAKE_CURRENT_BINARY_DIR}/header_check/${id}.${extension}")
    file(CONFIGURE OUTPUT "${src}" CONTENT "#include <${header}>\n#include <${header}>\n")
    list(APPEND sources "${src}")
  endforeach()
  add_library(${target} OBJECT ${sources})
  target_link_libraries(${target} PRIVATE ddm::ddm ${ARG_LIBRARIES})
  target_compile_options(${target} PRIVATE
    $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wpedantic -Werror>
    $<$<COMPILE_LANGUAGE:CUDA>:-Werror=all-warnings -Xcompiler=-Wall,-Wextra,-Wshadow,-Wconversion,-Wno-sign-conversion>)
endfunction()
