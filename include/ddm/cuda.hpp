#pragma once
// ddm with its CUDA specializations: everything in ddm/ddm.hpp, plus device memory, streams, the
// state algebra on device views (so every integrator and sample() run on them), host <-> device
// copies and Philox noise on the device. Include from CUDA translation units (.cu) and link
// ddm::cuda. See docs/cuda.md.

#include "ddm/ddm.hpp"

#include "ddm/cuda/algebra.hpp"
#include "ddm/cuda/context.hpp"
#include "ddm/cuda/device.hpp"
#include "ddm/cuda/error.hpp"
#include "ddm/cuda/launch.hpp"
#include "ddm/cuda/memory_resource.hpp"
#include "ddm/cuda/rng.hpp"
#include "ddm/cuda/transfer.hpp"
