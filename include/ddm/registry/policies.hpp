#pragma once
// Routing policies by name, for command lines, configuration files and benchmark tables.
//
//   auto policy = ddm::policy_by_name("top2_then_top1@0.3");   // top-2 while t > 0.3, top-1 after
//   auto field = ddm::make_routed_field<float>(experts, router, policy);
//
// A spec is a policy's own name (name_of(policy): top_2, full_ensemble, top_p(0.9),
// scheduled(t > 0.5: full_ensemble; t <= 0.5: top_2), ...) or the short form of a command line:
//
//   top1, top2, topk:K     ddm::top_k{K}
//   full, full:M           ddm::full_ensemble{M} (M: the smallest probability kept, default 0)
//   top_p:P                ddm::top_p{P}
//   threshold:P            ddm::threshold{P}
//   confidence:C           ddm::confidence_adaptive{C}
//   ratio:R                ddm::ratio_gated{R}
//   A_then_B@S             ddm::scheduled{S, A, B}: A while t > S, B for t <= S; A and B any of the
//                          above but a schedule; without @S the switch is policy_by_name's t_switch
//
// What policy_by_name returns is ddm::builtin_policy: one of those policies held by value in one
// trivially copyable type with a DDM_HOST_DEVICE apply_row. Why not any_routing_policy: type
// erasure (a virtual call behind a shared pointer) cannot cross into a kernel, so a CUDA routed
// field would decide in three launches and waits instead of its one fused kernel. Why not only a
// visitor with_policy(spec, f): f, and everything it instantiates (the routed field, the sampler,
// the observers, and on a GPU their kernels), would be compiled once per policy type, 6 + 36 of
// them counting the schedules. A builtin_policy is one type and still gives the concrete policy to
// whoever wants it (visit), and converts to any_routing_policy like every policy.
//
// Names print parameters to 6 significant digits (detail::short_number), so a policy read back
// from its name is the same policy when its parameters have at most 6 significant digits.

#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "ddm/core/batch.hpp"
#include "ddm/core/config.hpp"
#include "ddm/core/error.hpp"
#include "ddm/core/memory_space.hpp"
#include "ddm/core/name.hpp"
#include "ddm/routing/gated_policy.hpp"
#include "ddm/routing/policy.hpp"

namespace ddm {

/// One of ddm's built-in routing policies (top_k, full_ensemble, top_p, threshold,
/// confidence_adaptive, ratio_gated) or a ddm::scheduled pair of two of them, chosen at run time
/// (ddm::policy_by_name makes one). name(), select() and the per-row decision are those of the
/// policy it holds; trivially copyable, so a CUDA routed field runs it in its fused kernel.
class builtin_policy {
 public:
  enum class kind : std::uint8_t { top_k, full_ensemble, top_p, threshold, confidence_adaptive, ratio_gated };

  /// One built-in policy: its kind and its parameter (k for top_k, the probability otherwise).
  struct part {
    kind k = kind::top_k;
    int experts = 1;     ///< top_k's k
    double value = 0.0;  ///< full_ensemble's and threshold's min_probability, top_p's p, the gates' C or R
  };

  builtin_policy(const top_k& p) : early_{kind::top_k, p.k, 0.0}, late_(early_) {}  // NOLINT: implicit
  builtin_policy(const full_ensemble& p) : early_{kind::full_ensemble, 1, p.min_probability}, late_(early_) {}  // NOLINT
  builtin_policy(const top_p& p) : early_{kind::top_p, 1, p.p}, late_(early_) {}  // NOLINT
  builtin_policy(const threshold& p) : early_{kind::threshold, 1, p.min_probability}, late_(early_) {}  // NOLINT
  builtin_policy(const confidence_adaptive& p) : early_{kind::confidence_adaptive, 1, p.confidence}, late_(early_) {}  // NOLINT
  builtin_policy(const ratio_gated& p) : early_{kind::ratio_gated, 1, p.ratio}, late_(early_) {}  // NOLINT
  /// A schedule of two built-in policies (neither a schedule itself).
  template <class Early, class Late>
  builtin_policy(const scheduled<Early, Late>& s)  // NOLINT: implicit
      : early_(builtin_policy(s.early).single_()),
        late_(builtin_policy(s.late).single_()),
        t_switch_(s.t_switch),
        scheduled_(true) {}

  /// True when the policy is a schedule of two (early while t > t_switch(), late after).
  [[nodiscard]] bool is_scheduled() const noexcept { return scheduled_; }
  [[nodiscard]] double t_switch() const noexcept { return t_switch_; }
  [[nodiscard]] const part& early() const noexcept { return early_; }
  [[nodiscard]] const part& late() const noexcept { return late_; }

  /// Calls f with the ddm policy this one holds (top_k, ..., or ddm::scheduled<A, B>) and returns
  /// what f returns (the same type for every policy).
  template <class F>
  decltype(auto) visit(F&& f) const {
    if (!scheduled_) return visit_part(early_, f);
    return visit_part(early_, [&](const auto& a) -> decltype(auto) {
      return visit_part(late_, [&](const auto& b) -> decltype(auto) { return f(scheduled{t_switch_, a, b}); });
    });
  }

  /// Calls f with the ddm policy of one part.
  template <class F>
  static decltype(auto) visit_part(const part& p, F&& f) {
    switch (p.k) {
      case kind::full_ensemble: return f(full_ensemble{p.value});
      case kind::top_p: return f(top_p{p.value});
      case kind::threshold: return f(threshold{p.value});
      case kind::confidence_adaptive: return f(confidence_adaptive{p.value});
      case kind::ratio_gated: return f(ratio_gated{p.value});
      case kind::top_k: break;
    }
    return f(top_k{p.experts});
  }

  [[nodiscard]] std::string name() const {
    return visit([](const auto& p) { return name_of(p); });
  }

  /// The select() of the policy in force at t (its checks and its errors).
  template <class T, class Space>
  void select(const execution_context<Space>& ctx, batch_view<const std::type_identity_t<T>, Space> probs, double t,
              batch_view<T, Space> weights, batch_view<std::uint8_t, Space> selected) const {
    visit_part(in_force_(t), [&](const auto& p) { p.select(ctx, probs, t, weights, selected); });
  }

  /// The per-row decision of the policy in force at t (the built-in policies' own row functions).
  template <class T>
  DDM_HOST_DEVICE bool apply_row(const T* p, int num_experts, double t, T* w, std::uint8_t* selected) const noexcept {
    const part& q = in_force_(t);
    switch (q.k) {
      case kind::full_ensemble: return full_ensemble_row(p, num_experts, q.value, w, selected);
      case kind::top_p: return top_p_row(p, num_experts, q.value, w, selected);
      case kind::threshold: return threshold_row(p, num_experts, q.value, w, selected);
      case kind::confidence_adaptive: return confidence_adaptive_row(p, num_experts, q.value, w, selected);
      case kind::ratio_gated: return ratio_gated_row(p, num_experts, q.value, w, selected);
      case kind::top_k: break;
    }
    return top_k_row(p, num_experts, q.experts, w, selected);
  }

 private:
  DDM_HOST_DEVICE const part& in_force_(double t) const noexcept { return !scheduled_ || t > t_switch_ ? early_ : late_; }
  [[nodiscard]] const part& single_() const {
    if (scheduled_)
      throw_error<argument_error>("ddm::builtin_policy: a schedule of schedules (", name(),
                                  " inside another) is not a built-in policy; use ddm::scheduled in code");
    return early_;
  }

  part early_;
  part late_;
  double t_switch_ = 0.0;
  bool scheduled_ = false;
};

static_assert(std::is_trivially_copyable_v<builtin_policy>);

/// The short forms policy_by_name reads, for usage texts (K, M, P, C, R, S stand for numbers; A and
/// B for any other form).
[[nodiscard]] inline std::vector<std::string> policy_spec_forms() {
  return {"top1", "top2", "topk:K", "full", "full:M", "top_p:P", "threshold:P", "confidence:C", "ratio:R", "A_then_B@S"};
}

namespace detail {

[[noreturn]] inline void bad_policy_spec(std::string_view spec, std::string_view why) {
  std::string forms;
  for (const auto& f : policy_spec_forms()) forms += (forms.empty() ? "" : ", ") + f;
  throw_error<argument_error>("ddm::policy_by_name: argument 'spec' = '", spec, "', ", why, "; expected one of ", forms,
                              " (A, B any form but a schedule), or a policy's own name (name_of(policy))");
}

// The number of `text` when it is all of it.
inline bool parse_policy_number(std::string_view text, double& out) {
  if (text.empty() || text.front() == ' ') return false;
  const std::string s(text);
  char* end = nullptr;
  out = std::strtod(s.c_str(), &end);
  return end == s.c_str() + s.size() && out - out == 0.0;
}

inline bool starts_with(std::string_view s, std::string_view prefix) { return s.substr(0, prefix.size()) == prefix; }

// The parameter of "prefix<number>suffix", or false when `s` does not have that shape.
inline bool policy_parameter(std::string_view spec, std::string_view s, std::string_view prefix, std::string_view suffix,
                             double& value) {
  if (!starts_with(s, prefix) || s.size() < prefix.size() + suffix.size() || s.substr(s.size() - suffix.size()) != suffix)
    return false;
  const auto text = s.substr(prefix.size(), s.size() - prefix.size() - suffix.size());
  if (!parse_policy_number(text, value))
    bad_policy_spec(spec, concat("'", text, "' after '", prefix, "' is not a number"));
  return true;
}

// One policy that is not a schedule.
inline builtin_policy single_policy_by_name(std::string_view spec, std::string_view s) {
  double v = 0.0;
  if (s == "full" || s == "full_ensemble") return full_ensemble{};
  if (policy_parameter(spec, s, "full:", "", v) || policy_parameter(spec, s, "full_ensemble(p >= ", ")", v))
    return full_ensemble{v};
  if (policy_parameter(spec, s, "top_p:", "", v) || policy_parameter(spec, s, "top_p(", ")", v)) return top_p{v};
  if (policy_parameter(spec, s, "threshold:", "", v) || policy_parameter(spec, s, "threshold(", ")", v))
    return threshold{v};
  if (policy_parameter(spec, s, "confidence:", "", v) || policy_parameter(spec, s, "confidence_adaptive(", ")", v))
    return confidence_adaptive{v};
  if (policy_parameter(spec, s, "ratio:", "", v) || policy_parameter(spec, s, "ratio_gated(", ")", v))
    return ratio_gated{v};
  // top1, top2, topk:K, and top_k's own name top_K.
  for (std::string_view prefix : {"topk:", "top_", "top"}) {
    if (!starts_with(s, prefix)) continue;
    const auto digits = s.substr(prefix.size());
    if (digits.empty() || digits.find_first_not_of("0123456789") != std::string_view::npos) continue;
    if (digits.size() > 9) bad_policy_spec(spec, concat("k = ", digits, " is out of range"));
    return top_k{std::atoi(std::string(digits).c_str())};
  }
  bad_policy_spec(spec, concat("'", s, "' is not a policy"));
}

}  // namespace detail

/// The policy a spec names (see the top of this header for the forms); `t_switch` is the switch
/// time of a schedule A_then_B written without @S. A spec that names no policy throws
/// ddm::argument_error listing the forms; a parameter out of range throws the policy's own error,
/// prefixed with the spec.
[[nodiscard]] inline builtin_policy policy_by_name(std::string_view spec, double t_switch = 0.5) {
  try {
    // The policy's own name of a schedule: scheduled(t > S: A; t <= S: B).
    if (detail::starts_with(spec, "scheduled(t > ") && spec.back() == ')') {
      const auto inner = spec.substr(14, spec.size() - 15);
      const auto colon = inner.find(": ");
      const auto split = inner.find("; t <= ");
      if (colon == std::string_view::npos || split == std::string_view::npos || split < colon)
        detail::bad_policy_spec(spec, "a schedule's name reads scheduled(t > S: A; t <= S: B)");
      double s = 0.0, s_late = 0.0;
      const auto late_rest = inner.substr(split + 7);
      const auto late_colon = late_rest.find(": ");
      if (!detail::parse_policy_number(inner.substr(0, colon), s) || late_colon == std::string_view::npos ||
          !detail::parse_policy_number(late_rest.substr(0, late_colon), s_late) || s != s_late)
        detail::bad_policy_spec(spec, "a schedule's name reads scheduled(t > S: A; t <= S: B), one S twice");
      const auto early_spec = inner.substr(colon + 2, split - colon - 2);
      const auto late_spec = late_rest.substr(late_colon + 2);
      if (detail::starts_with(early_spec, "scheduled(") || detail::starts_with(late_spec, "scheduled("))
        detail::bad_policy_spec(spec, "a schedule of schedules is not a built-in policy (use ddm::scheduled in code)");
      const auto a = detail::single_policy_by_name(spec, early_spec);
      const auto b = detail::single_policy_by_name(spec, late_spec);
      return builtin_policy::visit_part(a.early(), [&](const auto& pa) {
        return builtin_policy::visit_part(b.early(), [&](const auto& pb) { return builtin_policy(scheduled{s, pa, pb}); });
      });
    }
    // A_then_B@S or A_then_B.
    if (const auto then = spec.find("_then_"); then != std::string_view::npos) {
      auto rest = spec.substr(then + 6);
      double s = t_switch;
      if (const auto at = rest.rfind('@'); at != std::string_view::npos) {
        if (!detail::parse_policy_number(rest.substr(at + 1), s))
          detail::bad_policy_spec(spec, concat("'", rest.substr(at + 1), "' after '@' is not a switch time"));
        rest = rest.substr(0, at);
      }
      if (rest.find("_then_") != std::string_view::npos)
        detail::bad_policy_spec(spec, "a schedule of schedules is not a built-in policy (use ddm::scheduled in code)");
      const auto a = detail::single_policy_by_name(spec, spec.substr(0, then));
      const auto b = detail::single_policy_by_name(spec, rest);
      return builtin_policy::visit_part(a.early(), [&](const auto& pa) {
        return builtin_policy::visit_part(b.early(), [&](const auto& pb) { return builtin_policy(scheduled{s, pa, pb}); });
      });
    }
    if (spec.find('@') != std::string_view::npos)
      detail::bad_policy_spec(spec, "only a schedule A_then_B takes a switch time @S");
    return detail::single_policy_by_name(spec, spec);
  } catch (const argument_error& e) {
    // The policies' own range errors (k < 1, p outside (0, 1], ...) gain the spec they came from.
    if (detail::starts_with(e.what(), "ddm::policy_by_name")) throw;
    throw_error<argument_error>("ddm::policy_by_name: argument 'spec' = '", spec, "': ", e.what());
  }
}

}  // namespace ddm
