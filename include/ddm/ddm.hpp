#pragma once
// ddm: sampling and diagnosing Decentralized Diffusion Models. The host umbrella header.

#include "ddm/core/algebra.hpp"
#include "ddm/core/batch.hpp"
#include "ddm/core/config.hpp"
#include "ddm/core/error.hpp"
#include "ddm/core/field.hpp"
#include "ddm/core/memory_space.hpp"
#include "ddm/core/rng.hpp"
#include "ddm/flow/parameterization.hpp"
#include "ddm/flow/schedule.hpp"
#include "ddm/integrators/adaptive.hpp"
#include "ddm/integrators/dpm_solver.hpp"
#include "ddm/integrators/euler.hpp"
#include "ddm/integrators/heun.hpp"
#include "ddm/integrators/integrator.hpp"
#include "ddm/integrators/sample.hpp"
