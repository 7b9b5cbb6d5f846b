# A target the user asks for by name never silently disappears: with Eigen hidden from the
# configure, the configure names what ddm-paradox misses and the Debian package that brings it,
# and building ddm-paradox fails with the same sentence instead of "unknown target".
#   cmake -DDDM_SOURCE=<src> -DWORK=<dir> -DGENERATOR=<gen> -P unavailable_target.cmake
file(REMOVE_RECURSE "${WORK}")
execute_process(
  COMMAND "${CMAKE_COMMAND}" -S "${DDM_SOURCE}" -B "${WORK}" -G "${GENERATOR}"
          -DCMAKE_DISABLE_FIND_PACKAGE_Eigen3=ON -DDDM_BUILD_TESTS=OFF -DDDM_BUILD_BENCHMARKS=OFF
          -DDDM_ENABLE_CUDA=OFF -DDDM_INSTALL=OFF
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "the configure without Eigen failed (it should succeed without the example):\n${out}\n${err}")
endif()
# CMake wraps warnings at 80 columns.
string(REGEX REPLACE "[ \t\r\n]+" " " said "${out}${err}")
string(FIND "${said}" "ddm-paradox (the main example, examples/01_paradox) is off: it needs Eigen 3.3+" at)
string(FIND "${said}" "apt-get install libeigen3-dev" pkg)
if(at EQUAL -1 OR pkg EQUAL -1)
  message(FATAL_ERROR "the configure without Eigen does not say that ddm-paradox is off and which package brings it:\n${out}\n${err}")
endif()
execute_process(
  COMMAND "${CMAKE_COMMAND}" --build "${WORK}" --target ddm-paradox
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(rc EQUAL 0)
  message(FATAL_ERROR "building ddm-paradox without Eigen succeeded; it should fail with the reason")
endif()
string(FIND "${out}${err}" "apt-get install libeigen3-dev" pkg)
if(pkg EQUAL -1)
  message(FATAL_ERROR "building ddm-paradox without Eigen fails without naming the package:\n${out}\n${err}")
endif()
message(STATUS "ddm-paradox without Eigen: the configure and the build name libeigen3-dev")
