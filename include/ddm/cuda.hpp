#pragma once
// ddm with its CUDA specializations: everything in ddm/ddm.hpp, plus device memory, streams, the
// state algebra on device views (so every integrator and sample() run on them), host <-> device
// copies, Philox noise on the device, routing (softmax, policies, grouping, the routed field) on
// device views, the analytic DDM on the device, and the diagnostics' device backends (per-row
// operations, probes, expert disagreement through cuBLAS, angular deviation, alignment ranks). Include from CUDA translation units (.cu) and link
// ddm::cuda. See docs/cuda.md.

#include "ddm/ddm.hpp"

#include "ddm/cuda/blas.hpp"
#include "ddm/cuda/context.hpp"
#include "ddm/cuda/device.hpp"
#include "ddm/cuda/error.hpp"
#include "ddm/cuda/launch.hpp"
#include "ddm/cuda/memory_resource.hpp"
#include "ddm/cuda/pinned_buffer.hpp"
#include "ddm/cuda/transfer.hpp"

#include "ddm/cuda/core/algebra.hpp"
#include "ddm/cuda/core/rng.hpp"
#include "ddm/cuda/core/row_ops.hpp"
#include "ddm/cuda/diagnostics/instruments/alignment.hpp"
#include "ddm/cuda/diagnostics/instruments/angular_deviation.hpp"
#include "ddm/cuda/diagnostics/instruments/disagreement.hpp"
#include "ddm/cuda/diagnostics/instruments/expert_views.hpp"
#include "ddm/cuda/diagnostics/jacobian/probes.hpp"
#include "ddm/cuda/routing/grouping.hpp"
#include "ddm/cuda/routing/policy.hpp"
#include "ddm/cuda/routing/routed_field.hpp"
#include "ddm/cuda/routing/softmax.hpp"
#include "ddm/cuda/synthetic/analytic_ddm.hpp"
