#pragma once
// Per-row gated policies: top-1 where the router is sure, top-2 where it is not. They sit between
// top-1 and top-2 in cost (k(x) in {1, 2} expert evaluations per row, more only on an exact tie,
// ddm's tie rule in policy.hpp) and differ in what "sure" means:
//
//   confidence_adaptive{p}  top-1 when p_(1) >= p (of the row's mass), else top-2
//   ratio_gated{r}          top-2, but the second expert only when p_(2) / p_(1) >= r
//
// With two experts the two gates coincide (p_(2) / p_(1) = (1 - p_(1)) / p_(1)); with more, the
// confidence gate also opens when the mass is spread over many experts (p_(1) small) while the
// runner-up is far behind, and the ratio gate does not. Like top_k, each is a trivially copyable
// value with a DDM_HOST_DEVICE apply_row, so the CUDA routed field runs it in its fused kernel.

#include <cstdint>
#include <string>
#include <type_traits>

#include "ddm/core/batch.hpp"
#include "ddm/core/config.hpp"
#include "ddm/core/error.hpp"
#include "ddm/core/memory_space.hpp"
#include "ddm/routing/policy.hpp"

namespace ddm {

/// The two most probable experts of a row: first = argmax, second = the runner-up (-1 when K = 1);
/// among equal probabilities the lower index first (the tie rule then keeps the others).
struct top_two_experts {
  int first = -1;
  int second = -1;
};

template <class T>
DDM_HOST_DEVICE inline top_two_experts find_top_two(const T* p, int num_experts) noexcept {
  top_two_experts top;
  for (int k = 0; k < num_experts; ++k) {
    if (top.first < 0 || p[k] > p[top.first]) {
      top.second = top.first;
      top.first = k;
    } else if (top.second < 0 || p[k] > p[top.second]) {
      top.second = k;
    }
  }
  return top;
}

/// Selects the top expert, and the runner-up when `with_second`, then applies the tie rule and
/// renormalizes. The row must already be valid.
template <class T>
DDM_HOST_DEVICE inline bool top_one_or_two_row(const T* p, int num_experts, top_two_experts top, bool with_second,
                                               T* w, std::uint8_t* selected) noexcept {
  for (int e = 0; e < num_experts; ++e) selected[e] = 0;
  selected[top.first] = 1;
  if (with_second && top.second >= 0) selected[top.second] = 1;
  keep_boundary_ties(p, num_experts, selected);
  return renormalize_selected_row(p, num_experts, selected, w);
}

/// confidence_adaptive: top-1 when the largest probability is at least `confidence` times the
/// row's total, top-2 otherwise. Needs 0 <= confidence <= 1.
template <class T>
DDM_HOST_DEVICE inline bool confidence_adaptive_row(const T* p, int num_experts, double confidence, T* w,
                                                    std::uint8_t* selected) noexcept {
  if (num_experts < 1 || !valid_probability_row(p, num_experts)) return false;
  double total = 0.0;
  for (int e = 0; e < num_experts; ++e) total += static_cast<double>(p[e]);
  const top_two_experts top = find_top_two(p, num_experts);
  const bool sure = static_cast<double>(p[top.first]) >= confidence * total;
  return top_one_or_two_row(p, num_experts, top, !sure, w, selected);
}

/// ratio_gated: the top expert, and the runner-up only when p_(2) >= ratio * p_(1). Needs
/// 0 <= ratio <= 1.
template <class T>
DDM_HOST_DEVICE inline bool ratio_gated_row(const T* p, int num_experts, double ratio, T* w,
                                            std::uint8_t* selected) noexcept {
  if (num_experts < 1 || !valid_probability_row(p, num_experts)) return false;
  const top_two_experts top = find_top_two(p, num_experts);
  const bool close = top.second >= 0 && static_cast<double>(p[top.second]) >= ratio * static_cast<double>(p[top.first]);
  return top_one_or_two_row(p, num_experts, top, close, w, selected);
}

/// Top-1 where the router's largest probability reaches `confidence`, top-2 elsewhere: spends the
/// second expert only on the rows whose routing is uncertain. confidence = 0 is top-1, and
/// confidence = 1 is top-2 except where one expert holds all the mass.
struct confidence_adaptive : row_policy<confidence_adaptive> {
  double confidence = 0.7;

  constexpr explicit confidence_adaptive(double confidence_) : confidence(confidence_) {
    if (!(confidence_ >= 0.0 && confidence_ <= 1.0))
      ddm::fail_argument("ddm::confidence_adaptive", "confidence", confidence_,
                            "a probability in [0, 1] (top-1 where the largest router probability reaches it)");
  }

  [[nodiscard]] std::string name() const { return "confidence_adaptive(" + detail::short_number(confidence) + ")"; }

  template <class T>
  DDM_HOST_DEVICE bool apply_row(const T* p, int num_experts, double /*t*/, T* w, std::uint8_t* selected) const noexcept {
    return confidence_adaptive_row(p, num_experts, confidence, w, selected);
  }
};

/// Top-2 where the runner-up is close to the top expert (p_(2) / p_(1) >= ratio), top-1 where it
/// is not: a blend only between experts the router ranks alike. ratio = 0 is top-2; ratio = 1
/// keeps the second expert only on an exact tie (which the tie rule keeps anyway).
struct ratio_gated : row_policy<ratio_gated> {
  double ratio = 0.5;

  constexpr explicit ratio_gated(double ratio_) : ratio(ratio_) {
    if (!(ratio_ >= 0.0 && ratio_ <= 1.0))
      ddm::fail_argument("ddm::ratio_gated", "ratio", ratio_,
                            "a value in [0, 1] (the smallest p_(2) / p_(1) that adds the second expert)");
  }

  [[nodiscard]] std::string name() const { return "ratio_gated(" + detail::short_number(ratio) + ")"; }

  template <class T>
  DDM_HOST_DEVICE bool apply_row(const T* p, int num_experts, double /*t*/, T* w, std::uint8_t* selected) const noexcept {
    return ratio_gated_row(p, num_experts, ratio, w, selected);
  }
};

}  // namespace ddm
