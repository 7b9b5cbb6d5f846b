# ddm_unavailable_target(<target> FEATURE <text> NEEDS <dependency...> PACKAGES <debian package...>)
#
# An example whose dependencies are missing is not built, but its target still exists: building it
# by name (cmake --build ... --target ddm-paradox) fails with the sentence that the configure
# printed, naming what is missing and the Debian packages that bring it, instead of CMake's
# "unknown target". The target is not part of ALL, so a whole-tree build goes on without it.
include_guard(GLOBAL)

function(ddm_unavailable_target target)
  cmake_parse_arguments(ARG "" "FEATURE" "NEEDS;PACKAGES" ${ARGN})
  list(JOIN ARG_NEEDS " and " needs)
  list(JOIN ARG_PACKAGES " " packages)
  set(text "${target} (${ARG_FEATURE}) is off: it needs ${needs}; on Debian: apt-get install ${packages} (tools/setup.sh installs every package ddm uses), then configure again")
  message(WARNING "ddm: ${text}")
  add_custom_target(${target}
    COMMAND "${CMAKE_COMMAND}" -E echo "ddm: ${text}"
    COMMAND "${CMAKE_COMMAND}" -E false
    VERBATIM)
endfunction()
