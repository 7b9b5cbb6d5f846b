# The reference DiT models of examples/02_dit as an INTERFACE target, shared by the example, its
# tests (tests/dit) and the benchmark (bench/). Included from each of those; defined once.
#
#   ddm_dit: ddm::json (safetensors) + a CBLAS (OpenBLAS preferred) + OpenMP when available.
# Not created (DDM_DIT_AVAILABLE is OFF) when nlohmann_json or a BLAS is missing.
include_guard(GLOBAL)

set(DDM_DIT_AVAILABLE OFF)
if(NOT TARGET ddm::json)
  message(STATUS "ddm: the DiT example needs nlohmann_json (ddm::json); skipped")
  set(DDM_DIT_NEEDS "nlohmann_json 3.9+")
  set(DDM_DIT_PACKAGES nlohmann-json3-dev)
  return()
endif()

# Debian's OpenBLAS first (its pthread build), any BLAS otherwise.
set(BLA_VENDOR OpenBLAS)
find_package(BLAS QUIET)
set(_ddm_dit_openblas ${BLAS_FOUND})
if(NOT BLAS_FOUND)
  unset(BLA_VENDOR)
  find_package(BLAS QUIET)
endif()
unset(BLA_VENDOR)
find_path(DDM_CBLAS_INCLUDE_DIR cblas.h PATH_SUFFIXES openblas openblas-pthread)
if(NOT BLAS_FOUND OR NOT DDM_CBLAS_INCLUDE_DIR)
  message(STATUS "ddm: the DiT example needs a CBLAS (libopenblas-dev); skipped")
  set(DDM_DIT_NEEDS "a CBLAS")
  set(DDM_DIT_PACKAGES libopenblas-dev)
  return()
endif()
find_package(OpenMP QUIET COMPONENTS CXX)

add_library(ddm_dit INTERFACE)
target_include_directories(ddm_dit INTERFACE "${CMAKE_CURRENT_LIST_DIR}" "${DDM_CBLAS_INCLUDE_DIR}")
target_link_libraries(ddm_dit INTERFACE ddm::json ${BLAS_LIBRARIES})
if(_ddm_dit_openblas)
  target_compile_definitions(ddm_dit INTERFACE DDM_DIT_OPENBLAS=1)
endif()
if(OpenMP_CXX_FOUND)
  target_link_libraries(ddm_dit INTERFACE OpenMP::OpenMP_CXX)
endif()
set(DDM_DIT_AVAILABLE ON)
set(DDM_DIT_FIXTURES "${PROJECT_SOURCE_DIR}/tests/dit/golden")
message(STATUS "ddm: DiT example on (BLAS: ${BLAS_LIBRARIES}; OpenMP: ${OpenMP_CXX_FOUND})")

#   ddm_dit_cuda: the models + ddm::json + ddm::cuda + cuBLASLt, for CUDA translation units that
#                 include dit/backend_cuda.cuh (the models on device memory); no BLAS (link
#                 ddm_dit as well for the host backend). Only with the CUDA layer.
set(DDM_DIT_CUDA_AVAILABLE OFF)
if(DDM_CUDA AND TARGET CUDA::cublasLt)
  add_library(ddm_dit_cuda INTERFACE)
  target_include_directories(ddm_dit_cuda INTERFACE "${CMAKE_CURRENT_LIST_DIR}")
  target_link_libraries(ddm_dit_cuda INTERFACE ddm::json ddm::cuda CUDA::cublasLt)
  # The host backend's threads in CUDA translation units that also use it (OpenMP::OpenMP_CXX
  # covers C++ only).
  if(OpenMP_CXX_FOUND)
    target_compile_options(ddm_dit_cuda INTERFACE $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-fopenmp>)
  endif()
  set(DDM_DIT_CUDA_AVAILABLE ON)
  message(STATUS "ddm: DiT CUDA backend on")
elseif(DDM_CUDA)
  message(STATUS "ddm: the DiT CUDA backend needs cuBLASLt (CUDA::cublasLt); skipped")
endif()
