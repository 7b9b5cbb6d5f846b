# The learned Fashion-MNIST DDMs of examples/03_fashion as an INTERFACE target (headers in
# fashion/), shared by ddm-paradox (--system fashion-*) and the tests (tests/fashion).
#
#   ddm_fashion: ddm::json (config.json, safetensors) + ddm::eigen (the Frechet distance) + the
#   CBLAS the DiT example found (ddm_dit.cmake) + zlib (the gzipped IDX data). libpng is optional:
#   without it the sample grids are not written (DDM_FASHION_PNG=0).
# Not created (DDM_FASHION_AVAILABLE is OFF) when one of the required ones is missing; the status
# line names the Debian package that brings it.
include_guard(GLOBAL)
# Included from the top-level CMakeLists.txt after ddm_dit.cmake, whose BLAS it uses.

set(DDM_FASHION_AVAILABLE OFF)
if(NOT DDM_DIT_AVAILABLE)
  message(STATUS "ddm: the fashion DDMs need nlohmann_json (nlohmann-json3-dev) and a CBLAS (libopenblas-dev); "
                 "--system fashion-* and tests/fashion are off")
  return()
endif()
if(NOT TARGET ddm::eigen)
  message(STATUS "ddm: the fashion DDMs need Eigen3 (libeigen3-dev) for the Frechet distance; "
                 "--system fashion-* and tests/fashion are off")
  return()
endif()
find_package(ZLIB QUIET)
if(NOT ZLIB_FOUND)
  message(STATUS "ddm: the fashion DDMs need zlib (zlib1g-dev) to read the IDX data; "
                 "--system fashion-* and tests/fashion are off")
  return()
endif()
find_package(PNG QUIET)

add_library(ddm_fashion INTERFACE)
target_include_directories(ddm_fashion INTERFACE "${CMAKE_CURRENT_LIST_DIR}" "${DDM_CBLAS_INCLUDE_DIR}")
target_link_libraries(ddm_fashion INTERFACE ddm::json ddm::eigen ${BLAS_LIBRARIES} ZLIB::ZLIB)
# The DiT tier (fashion/dit_folder.hpp) runs examples/02_dit's DiT on the host.
target_link_libraries(ddm_fashion INTERFACE ddm_dit)
if(PNG_FOUND)
  target_link_libraries(ddm_fashion INTERFACE PNG::PNG)
  target_compile_definitions(ddm_fashion INTERFACE DDM_FASHION_PNG=1)
else()
  target_compile_definitions(ddm_fashion INTERFACE DDM_FASHION_PNG=0)
  message(STATUS "ddm: libpng not found (libpng-dev): the fashion systems write no PNG sample grids")
endif()
# Where the committed DDM folders and the Fashion-MNIST test set are found by default.
set(DDM_FASHION_MODELS "${PROJECT_SOURCE_DIR}/examples/03_fashion/models")
set(DDM_FASHION_DATA "/usr/share/datasets/fashion-mnist" CACHE PATH "folder of Fashion-MNIST's gzipped IDX files")
set(DDM_FASHION_AVAILABLE ON)
message(STATUS "ddm: fashion DDMs on (PNG: ${PNG_FOUND}; data: ${DDM_FASHION_DATA})")
