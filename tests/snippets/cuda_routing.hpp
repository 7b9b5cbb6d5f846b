// The names that docs/cuda.md's routing snippet assumes: device experts, a device router and a
// device batch (those of the analytic DDM). Compiled by nvcc when CUDA is on, not run.
#pragma once
#include "cuda.hpp"

inline const ddm::synthetic::analytic_ddm host_model;
inline const ddm::cuda::device_analytic_ddm device_model(ctx, host_model);
inline const auto experts = device_model.experts();
inline const auto router = device_model.router(2.0);
inline ddm::batch<float, ddm::cuda_space> x(ctx, n, host_model.dim());
