# How ddm's tests and examples launch MPI programs on this machine.
#
# ddm_mpi_command(<out-var> <ranks> <program> [args...]) sets <out-var> to the command line that
# runs <program> on <ranks> local processes: MPIEXEC_EXECUTABLE with its -np flag and, for Open MPI,
# --oversubscribe (more ranks than cores, as on a small CI machine) and --allow-run-as-root (CI
# containers run as root; Open MPI refuses root without it).
include_guard(GLOBAL)

if(MPIEXEC_EXECUTABLE AND NOT DEFINED DDM_MPIEXEC_IS_OPENMPI)
  execute_process(COMMAND "${MPIEXEC_EXECUTABLE}" --version OUTPUT_VARIABLE _ddm_mpiexec_version
    ERROR_QUIET RESULT_VARIABLE _ddm_mpiexec_rc)
  if(_ddm_mpiexec_rc EQUAL 0 AND _ddm_mpiexec_version MATCHES "Open MPI|OpenRTE")
    set(DDM_MPIEXEC_IS_OPENMPI TRUE CACHE INTERNAL "")
  else()
    set(DDM_MPIEXEC_IS_OPENMPI FALSE CACHE INTERNAL "")
  endif()
endif()

# ddm_mpi_launcher(<out-var>): the same up to the rank count, for scripts that add the count and
# the program themselves.
function(ddm_mpi_launcher out)
  set(flags ${MPIEXEC_PREFLAGS})
  if(DDM_MPIEXEC_IS_OPENMPI)
    list(APPEND flags --oversubscribe --allow-run-as-root)
  endif()
  set(${out} "${MPIEXEC_EXECUTABLE}" ${flags} ${MPIEXEC_NUMPROC_FLAG} PARENT_SCOPE)
endfunction()

function(ddm_mpi_command out ranks program)
  ddm_mpi_launcher(launcher)
  set(${out} ${launcher} ${ranks} "${program}" ${ARGN} PARENT_SCOPE)
endfunction()
