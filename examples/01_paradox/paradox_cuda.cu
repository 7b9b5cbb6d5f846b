// The device path of ddm-paradox: measure_policy<T, ddm::cuda_space> with the device analytic
// DDM's experts and router, for every integrator and value type the command line offers. A
// translation unit of its own, so that nvcc compiles only what runs on the device and the host
// compiler the rest of the program.

#include <ddm/cuda.hpp>

#include <cuda_runtime_api.h>

#include <cstdint>
#include <limits>
#include <string>

#include "device.hpp"
#include "measure.hpp"

namespace paradox::cuda {

// The routed field then decides in its fused kernel: one wait per call (ddm/cuda/routing/routed_field.hpp).
static_assert(ddm::device_row_policy<ddm::builtin_policy, float> && ddm::device_row_policy<ddm::builtin_policy, double>);

namespace {

/// The analytic DDM's experts and router on the device (their parameters copied there once).
struct device_source {
  const ddm::cuda::device_analytic_ddm* dev;

  [[nodiscard]] ddm::cuda_context context() const noexcept { return dev->context(); }
  template <class T>
  [[nodiscard]] auto routed_field(double tau, const ddm::builtin_policy& policy) const {
    return ddm::cuda::make_analytic_routed_field<T>(*dev, tau, policy);
  }
};

}  // namespace

bool start(std::string* why, std::string* name) {
  if (!ddm::cuda::device_available(why)) return false;
  int dev = 0;
  DDM_CUDA_CHECK(cudaGetDevice(&dev));
  cudaDeviceProp prop{};
  DDM_CUDA_CHECK(cudaGetDeviceProperties(&prop, dev));
  *name = prop.name;
  // The study allocates short-lived buffers between the routed field's waits (the observers'
  // and the diagnostics' workspaces, two batches per Delta_refine and amplification). With the
  // pool's default release threshold (0) every synchronization hands freed memory back to the
  // driver and the next allocation maps it again; the program owns its process, so it keeps the
  // memory in the pool instead.
  cudaMemPool_t pool = nullptr;
  DDM_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, dev));
  std::uint64_t keep = std::numeric_limits<std::uint64_t>::max();
  DDM_CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep));
  return true;
}

measurement measure_policy(const config& cfg, const ds::analytic_ddm& model, const std::string& key, double tau,
                           const progress& prog) {
  const ddm::cuda::stream stream;  // declared first: every buffer below is freed on it
  const ddm::cuda::device_analytic_ddm dev(stream.context(), model);
  const device_source source{&dev};
  const system_geometry geo{model.dim(), model.centroids(), data_rms(model)};
  return ddm::with_integrator(
      cfg.integrator,
      [&](const auto& integ) {
        if (cfg.prec == precision::float32)
          return paradox::measure_policy<float, ddm::cuda_space>(cfg, geo, source, key, tau, integ, prog);
        return paradox::measure_policy<double, ddm::cuda_space>(cfg, geo, source, key, tau, integ, prog);
      },
      study_integrators{});
}

}  // namespace paradox::cuda
