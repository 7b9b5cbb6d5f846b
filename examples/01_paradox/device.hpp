#pragma once
// The study on a CUDA device: declarations of paradox_cuda.cu, which a build with ddm's CUDA layer
// compiles into ddm-paradox (DDM_PARADOX_CUDA=1). main.cpp stays a host translation unit.

#include <string>

#include "measure.hpp"

namespace paradox::cuda {

/// Prepares the current CUDA device for the study and gives its name; false, with the runtime's
/// reason in *why, when no device is usable.
bool start(std::string* why, std::string* name);

/// measure_policy on the device: the routed field of the device analytic DDM (its experts and
/// router run on the GPU), the sampler, the observers, Delta_refine and the perturbation
/// amplification on device memory, with the integrator and value type of `cfg`. The samples come
/// back to the host once, at the end of the plain run.
measurement measure_policy(const config& cfg, const ds::analytic_ddm& model, const std::string& key, double tau,
                           const progress& prog);

}  // namespace paradox::cuda
