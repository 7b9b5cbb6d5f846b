// The names that docs/dit.md's CUDA snippet assumes; compiled by nvcc with the DiT example's CUDA
// backend (ddm_dit_cuda), not run.
#pragma once
#include <memory>

#include <ddm/cuda.hpp>

inline const ddm::index_t n = 4;
