#pragma once
// ddm-dit on the learned Fashion-MNIST DiT DDM (examples/03_fashion/models/fashion-dit): a folder
// whose config.json has format "ddm-fashion-dit/1", with original-DiT experts in pixel space
// (28 x 28, one channel, unconditional) and a DiT router, loaded by the fashion sub-library
// (fashion/dit_folder.hpp). Sampled on the host from Gaussian noise with --policy, --solver and
// --steps; --png writes the samples as an image grid, so that the DiT is seen generating real
// images. Built when the fashion sub-library is (ddm_fashion: zlib, Eigen, a BLAS; PNG: libpng).

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include <ddm/ddm.hpp>
#include <ddm/registry/integrators.hpp>
#include <ddm/registry/policies.hpp>

#include "driver.hpp"
#include "fashion/dit_folder.hpp"
#if DDM_FASHION_PNG
#include "fashion/png.hpp"
#endif

namespace ddm_dit {

inline int run_fashion_dit(const options& o) {
  const auto folder = fashion::load_dit_folder(o.checkpoint);
  const ddm::host_context ctx{};
  auto field = ddm::make_routed_field<float, ddm::host_space>(
      fashion::make_dit_experts(folder), fashion::dit_learned_router(folder, 1.0), ddm::policy_by_name(o.policy), ctx);
  const ddm::index_t b = o.batch;
  std::printf("fashion-dit DDM %s: %td DiT experts in pixel space (hidden %td, depth %td, %td heads, patch %td), "
              "a DiT router, policy %s, %td samples, %ld %s steps, CPU\n",
              o.checkpoint.c_str(), folder->num_experts, folder->expert_cfg.hidden_size, folder->expert_cfg.depth,
              folder->expert_cfg.num_heads, folder->expert_cfg.patch_size, field.policy().name().c_str(), b, o.steps,
              o.solver.c_str());
  ddm::batch<float> x(b, fashion::image_values);
  ddm::fill_normal(ctx, x.view(), o.seed);
  const auto schedule = ddm::schedules::uniform(o.steps);
  const auto start = std::chrono::steady_clock::now();
  const auto result = ddm::with_integrator(
      o.solver, [&](const auto& integ) { return ddm::sample(ctx, ddm::sample_options{}, field, x.view(), schedule, integ); },
      solvers{});
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("%zu steps, %zu routed-field calls in %.2f s; expert evaluations per routed row: %.2f of %td\n",
              result.steps, result.field_evaluations, seconds,
              field.relative_cost() * static_cast<double>(folder->num_experts), folder->num_experts);
  const auto rows = field.expert_rows();
  for (std::size_t k = 0; k < rows.size(); ++k)
    std::printf("  expert %zu: %6zu rows (%5.1f%% of routed rows)\n", k, rows[k],
                100.0 * static_cast<double>(rows[k]) / static_cast<double>(field.rows_routed()));
  if (!o.png.empty()) {
#if DDM_FASHION_PNG
    std::vector<float> images(static_cast<std::size_t>(b * fashion::image_values));
    fashion::to_pixels(x.cview(), ddm::batch_view<float>(images.data(), b, fashion::image_values));
    fashion::write_png_grid(o.png, ddm::batch_view<const float>(images.data(), b, fashion::image_values), 8);
    std::printf("%td samples written as a PNG grid to %s\n", b, o.png.c_str());
#else
    throw ddm::io_error("--png: this build has no libpng (Debian package libpng-dev); no grid written");
#endif
  }
  return finish(o, ctx, x.cview());
}

}  // namespace ddm_dit
