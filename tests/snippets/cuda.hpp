// The names that the CUDA snippets of docs/cuda.md assume (tests/snippets/extract.py); compiled by
// nvcc when CUDA is on. The snippets are compiled, not run.
#pragma once
#include <algorithm>
#include <cstdint>

#include <ddm/cuda.hpp>
#include <ddm/synthetic/quality.hpp>

// A device velocity field of the user's (docs/cuda.md, "Your own device field"): v = x.
struct my_device_field {
  ddm::cuda_context ctx;
  void operator()(ddm::batch_view<const float, ddm::cuda_space> x, double,
                  ddm::batch_view<float, ddm::cuda_space> v) const {
    ddm::copy(ctx, v, x);
  }
};
inline const ddm::cuda::stream prelude_stream;
inline const ddm::cuda_context ctx = prelude_stream.context();
inline const ddm::synthetic::analytic_ddm_options options{};
inline const ddm::index_t n = 256;
inline const std::uint64_t seed = 1;
inline const ddm::time_schedule schedule = ddm::schedules::uniform(16);
