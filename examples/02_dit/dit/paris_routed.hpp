#pragma once
// A loaded Paris-layout checkpoint as one ddm velocity field: the experts as fields (velocity
// output, sigma * 1000 timesteps, text states per sample), the DiT router as a ddm router, and a
// routing policy, combined by ddm::routed_field. Optionally with classifier-free guidance inside
// each expert, as Paris applies it: v_k = v_k(uncond) + s (v_k(cond) - v_k(uncond)).

#include <memory>
#include <utility>
#include <vector>

#include <ddm/flow/guidance.hpp>
#include <ddm/routing/ensemble.hpp>
#include <ddm/routing/routed_field.hpp>

#include "dit/fields.hpp"
#include "dit/paris_loader.hpp"

namespace dit {

/// experts + router + policy over the rows of `text` (one row of text states per sample, or one
/// row for all). Everything runs on `ctx` (for ddm::cuda_space: the device routed field of
/// ddm/cuda/routing/routed_field.hpp, with the experts and the router enqueued on ctx's stream).
template <class Policy, class Space = ddm::host_space>
[[nodiscard]] auto make_paris_field(const paris_checkpoint<Space>& ckpt, std::shared_ptr<const batch<float, Space>> text,
                                    Policy policy, double time_scale = 1000.0,
                                    const ddm::execution_context<Space>& ctx = {}) {
  std::vector<paris_expert_field<Space>> experts;
  experts.reserve(ckpt.experts.size());
  for (const auto& e : ckpt.experts) experts.emplace_back(e, text, time_scale, ctx);
  return ddm::make_routed_field<float, Space>(ddm::expert_vector<paris_expert_field<Space>>(std::move(experts)),
                                              dit_router<Space>(ckpt.router, time_scale, "dit_router", ctx),
                                              std::move(policy), ctx);
}

/// The same with classifier-free guidance of scale `scale` inside every expert; `uncond` holds
/// the states of the empty prompt (one row, or one per sample).
template <class Policy, class Space = ddm::host_space>
[[nodiscard]] auto make_paris_guided_field(const paris_checkpoint<Space>& ckpt,
                                           std::shared_ptr<const batch<float, Space>> text,
                                           std::shared_ptr<const batch<float, Space>> uncond, double scale,
                                           Policy policy, double time_scale = 1000.0,
                                           const ddm::execution_context<Space>& ctx = {}) {
  using guided = ddm::guided_field<paris_expert_field<Space>, paris_expert_field<Space>, Space>;
  std::vector<guided> experts;
  experts.reserve(ckpt.experts.size());
  for (const auto& e : ckpt.experts)
    experts.emplace_back(paris_expert_field<Space>(e, uncond, time_scale, ctx),
                         paris_expert_field<Space>(e, text, time_scale, ctx), scale, ctx);
  return ddm::make_routed_field<float, Space>(ddm::expert_vector<guided>(std::move(experts)),
                                              dit_router<Space>(ckpt.router, time_scale, "dit_router", ctx),
                                              std::move(policy), ctx);
}

}  // namespace dit
