#pragma once
// What the study prints and writes: the verdicts (computed from the numbers, never set by hand),
// the table, the JSON document (schema in docs/paradox.md), CSV files and SVG plots.

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "study.hpp"
#include "svg.hpp"

namespace paradox {

/// One verdict: holds, does not hold, or cannot be evaluated (a policy it needs was not run).
struct verdict {
  std::string key;
  std::string claim;
  std::optional<bool> holds;
  std::string evidence;
};

struct verdicts {
  verdict paradox;               ///< full: lowest Delta_refine and L_eff, worst FD, among all policies run
  verdict lowest_delta_refine;   ///< the three parts of the paradox
  verdict lowest_l_eff;
  verdict worst_quality;
  verdict paradox_vs_top2;       ///< the same, against top-2 only (the study's headline pair)
  verdict lowest_cumulative_iqr; ///< the other stability measures, reported beside the paradox
  verdict lowest_amplification;
  verdict sparse_better_aligned;     ///< top-1 and top-2: mean rank below the full ensemble's
  verdict selected_experts_closer;   ///< top-2: angular gap > 0
  verdict quality_falls_with_disagreement;  ///< every policy: per-sample NLL rises from Q1 to Q4
  std::vector<std::pair<std::string, bool>> monotonic_by_policy;

  [[nodiscard]] std::vector<const verdict*> all() const {
    // The study's headline first (full ensemble against top-2), then the same claim against every
    // policy run and its parts, then the rest.
    return {&paradox_vs_top2,       &paradox,              &lowest_delta_refine,   &lowest_l_eff,
            &worst_quality,         &lowest_cumulative_iqr, &lowest_amplification, &sparse_better_aligned,
            &selected_experts_closer, &quality_falls_with_disagreement};
  }
};


inline std::string fmt(double v, int precision = 3) {
  char buf[64];
  if (!std::isfinite(v)) return "n/a";
  const double a = std::abs(v);
  if (a != 0 && (a >= 1e5 || a < 1e-3)) {
    std::snprintf(buf, sizeof buf, "%.*e", std::max(precision - 1, 1), v);
  } else {
    std::snprintf(buf, sizeof buf, "%.*g", precision, v);
  }
  return buf;
}
inline std::string fmt(const std::optional<double>& v, int precision = 3) { return v ? fmt(*v, precision) : "undef"; }

inline const policy_result* find_policy(const tau_result& r, const std::string& key) {
  for (const auto& p : r.policies)
    if (p.key == key) return &p;
  return nullptr;
}

// Full compared with `others` on one number: full must be below every other (lowest) or above.
template <class Get>
verdict compare_policies(std::string key, std::string claim, const policy_result& full, const std::vector<const policy_result*>& others,
                Get get, bool lowest, const char* what) {
  verdict v{std::move(key), std::move(claim), std::nullopt, ""};
  if (others.empty()) {
    v.evidence = "no other policy was run";
    return v;
  }
  bool ok = true;
  std::string ev = std::string("full ") + what + " " + fmt(get(full)) + " vs";
  for (const auto* p : others) {
    const bool better = lowest ? get(full) < get(*p) : get(full) > get(*p);
    ok = ok && better;
    ev += " " + p->key + " " + fmt(get(*p)) + (better ? "" : " (!)");
  }
  v.holds = ok;
  v.evidence = ev;
  return v;
}


/// The verdicts for one temperature's results. K is the number of experts.
inline verdicts compute_verdicts(const tau_result& r, std::size_t k, const std::string& quality_name = "NLL") {
  verdicts out;
  const auto* full = find_policy(r, "full");
  const auto* top2 = find_policy(r, "top2");
  std::vector<const policy_result*> others;
  for (const auto& p : r.policies)
    if (p.key != "full") others.push_back(&p);

  auto delta = [](const policy_result& p) { return p.stability.delta_refine; };
  auto leff = [](const policy_result& p) { return p.stability.l_eff_median; };
  auto fd = [](const policy_result& p) { return p.quality.frechet; };
  auto ciqr = [](const policy_result& p) { return p.stability.l_eff_cumulative_iqr; };
  auto amp = [](const policy_result& p) { return p.stability.amplification_median; };
  const std::string c_ciqr = "the full ensemble has the lowest cumulative IQR of L_eff of the policies run (not part of "
                             "the paradox verdict)";
  const std::string c_amp = "the full ensemble has the lowest median perturbation amplification of the policies run (not "
                            "part of the paradox verdict)";
  const std::string c_delta = "the full ensemble has the lowest Delta_refine of the policies run";
  const std::string c_leff = "the full ensemble has the lowest L_eff median of the policies run";
  const std::string c_fd = "the full ensemble has the worst quality (highest Frechet distance) of the policies run";
  const std::string c_paradox = "paradox: the full ensemble is the most stable (lowest Delta_refine and L_eff) and has the "
                                "worst quality (highest FD) of the policies run";
  const std::string c_pair = "paradox against top-2 (the study's pair): full has lower Delta_refine and L_eff and a higher FD";
  if (full == nullptr) {
    for (auto* v : {&out.lowest_delta_refine, &out.lowest_l_eff, &out.worst_quality, &out.paradox, &out.paradox_vs_top2,
                    &out.lowest_cumulative_iqr, &out.lowest_amplification})
      v->evidence = "the full ensemble was not run";
    out.lowest_cumulative_iqr.key = "lowest_cumulative_iqr";
    out.lowest_cumulative_iqr.claim = c_ciqr;
    out.lowest_amplification.key = "lowest_amplification";
    out.lowest_amplification.claim = c_amp;
    out.lowest_delta_refine.key = "lowest_delta_refine";
    out.lowest_delta_refine.claim = c_delta;
    out.lowest_l_eff.key = "lowest_l_eff";
    out.lowest_l_eff.claim = c_leff;
    out.worst_quality.key = "worst_quality";
    out.worst_quality.claim = c_fd;
    out.paradox.key = "paradox";
    out.paradox.claim = c_paradox;
    out.paradox_vs_top2.key = "paradox_vs_top2";
    out.paradox_vs_top2.claim = c_pair;
  } else {
    out.lowest_delta_refine = compare_policies("lowest_delta_refine", c_delta, *full, others, delta, true, "Delta_refine");
    out.lowest_l_eff = compare_policies("lowest_l_eff", c_leff, *full, others, leff, true, "L_eff");
    out.worst_quality = compare_policies("worst_quality", c_fd, *full, others, fd, false, "FD");
    out.lowest_cumulative_iqr = compare_policies("lowest_cumulative_iqr", c_ciqr, *full, others, ciqr, true, "cum. IQR");
    out.lowest_amplification = compare_policies("lowest_amplification", c_amp, *full, others, amp, true, "amplification");
    out.paradox = {"paradox", c_paradox, std::nullopt, ""};
    if (out.lowest_delta_refine.holds && out.lowest_l_eff.holds && out.worst_quality.holds) {
      out.paradox.holds = *out.lowest_delta_refine.holds && *out.lowest_l_eff.holds && *out.worst_quality.holds;
      out.paradox.evidence = std::string("lowest Delta_refine: ") + (*out.lowest_delta_refine.holds ? "yes" : "no") +
                             "; lowest L_eff: " + (*out.lowest_l_eff.holds ? "yes" : "no") +
                             "; worst FD: " + (*out.worst_quality.holds ? "yes" : "no");
    } else {
      out.paradox.evidence = "no other policy was run";
    }
    out.paradox_vs_top2 = {"paradox_vs_top2", c_pair, std::nullopt, "top-2 was not run"};
    if (top2 != nullptr) {
      const bool a = full->stability.delta_refine < top2->stability.delta_refine;
      const bool b = full->stability.l_eff_median < top2->stability.l_eff_median;
      const bool c = full->quality.frechet > top2->quality.frechet;
      out.paradox_vs_top2.holds = a && b && c;
      out.paradox_vs_top2.evidence = "Delta_refine " + fmt(full->stability.delta_refine) + " vs " +
                                     fmt(top2->stability.delta_refine) + (a ? "" : " (!)") + "; L_eff " +
                                     fmt(full->stability.l_eff_median) + " vs " +
                                     fmt(top2->stability.l_eff_median) + (b ? "" : " (!)") + "; FD " +
                                     fmt(full->quality.frechet) + " vs " + fmt(top2->quality.frechet) +
                                     (c ? "" : " (!)");
    }
  }

  // Alignment: the full ensemble selects every expert, so its mean rank is (K + 1) / 2 by
  // construction; sparse policies align when they rank below it.
  const double full_rank = full != nullptr && full->alignment.mean_rank ? *full->alignment.mean_rank
                                                                        : (static_cast<double>(k) + 1.0) / 2.0;
  out.sparse_better_aligned = {"sparse_better_aligned",
                               "sparse policies (top-1, top-2) select better-aligned experts: mean rank at t = 0.3, 0.5, "
                               "0.7 below the full ensemble's " + fmt(full_rank),
                               std::nullopt, "neither top-1 nor top-2 was run"};
  {
    bool any = false, ok = true;
    std::string ev;
    for (const char* key : {"top1", "top2"})
      if (const auto* p = find_policy(r, key)) {
        any = true;
        const bool good = p->alignment.mean_rank && *p->alignment.mean_rank < full_rank;
        ok = ok && good;
        ev += std::string(ev.empty() ? "" : "; ") + key + " " + fmt(p->alignment.mean_rank) + (good ? "" : " (!)");
      }
    if (any) {
      out.sparse_better_aligned.holds = ok;
      out.sparse_better_aligned.evidence = ev + " vs full " + fmt(full_rank);
    }
  }
  out.selected_experts_closer = {"selected_experts_closer",
                                 "under top-2 the selected experts point closer to the blended velocity than the others "
                                 "(angular gap > 0)",
                                 std::nullopt, "top-2 was not run"};
  if (top2 != nullptr) {
    if (top2->alignment.angular_gap) {
      out.selected_experts_closer.holds = *top2->alignment.angular_gap > 0;
      out.selected_experts_closer.evidence = "top2 gap " + fmt(*top2->alignment.angular_gap);
    } else {
      out.selected_experts_closer.evidence = "top-2's angular gap is undefined";
    }
  }

  out.quality_falls_with_disagreement = {"quality_falls_with_disagreement",
                                         "in every policy, mean per-sample " + quality_name +
                                             " rises strictly from the lowest to the highest quartile of "
                                             "trajectory-integrated disagreement",
                                         std::nullopt, ""};
  {
    bool ok = !r.policies.empty();
    std::string ev;
    for (const auto& p : r.policies) {
      out.monotonic_by_policy.emplace_back(p.key, p.disagreement.monotonic);
      ok = ok && p.disagreement.monotonic;
      ev += std::string(ev.empty() ? "" : "; ") + p.key + (p.disagreement.monotonic ? " yes" : " no") + " (rho " +
            fmt(p.disagreement.spearman.rho, 2) + ")";
    }
    out.quality_falls_with_disagreement.holds = ok;
    out.quality_falls_with_disagreement.evidence = ev;
  }
  return out;
}

inline const char* verdict_word(const std::optional<bool>& h) {
  return !h ? "not evaluated" : (*h ? "holds" : "does not hold");
}

/// The table, one row per policy, and the quartile lines.
inline void print_table(std::FILE* f, const tau_result& r, const quality_numbers& reference) {
  std::fprintf(f, "%-15s %7s %7s %6s %6s | %8s %8s %9s %8s | %5s %7s | %7s %6s %8s | %7s %8s\n", "policy", "FD", "NLL",
               "cover", "prec", "L_eff", "cum.IQR", "D_refine", "amplif", "rank", "ang.gap", "I_dis", "rho", "p", "evals",
               "time(s)");
  for (const auto& p : r.policies) {
    const auto& s = p.stability;
    std::fprintf(f, "%-15s %7s %7s %6s %6s | %8s %8s %9s %8s | %5s %7s | %7s %6s %8s | %7s %8s\n", p.key.c_str(),
                 fmt(p.quality.frechet).c_str(), fmt(p.quality.nll).c_str(),
                 fmt(p.quality.coverage, 2).c_str(), fmt(p.quality.precision, 2).c_str(),
                 fmt(s.l_eff_median).c_str(), fmt(s.l_eff_cumulative_iqr).c_str(),
                 fmt(s.delta_refine).c_str(), fmt(s.amplification_median).c_str(),
                 fmt(p.alignment.mean_rank).c_str(), fmt(p.alignment.angular_gap, 2).c_str(),
                 fmt(p.disagreement.integrated_mean).c_str(), fmt(p.disagreement.spearman.rho, 2).c_str(),
                 p.disagreement.spearman.p_value ? fmt(*p.disagreement.spearman.p_value, 2).c_str() : "n/a",
                 fmt(p.cost.expert_evaluations_per_sample).c_str(), fmt(p.cost.sampling_seconds, 2).c_str());
  }
  std::fprintf(f, "%-15s %7s %7s %6s %6s |   (as many true samples: the floor of each quality measure at this n)\n",
               "true data", fmt(reference.frechet).c_str(), fmt(reference.nll).c_str(),
               fmt(reference.coverage, 2).c_str(), fmt(reference.precision, 2).c_str());
}

inline void print_quartiles(std::FILE* f, const tau_result& r, const std::string& quality_name = "NLL") {
  std::fprintf(f, "%-15s mean per-sample %s by quartile of integrated disagreement (Q1 lowest .. Q4)\n", "policy",
               quality_name.c_str());
  for (const auto& p : r.policies) {
    if (p.disagreement.quartiles.empty()) continue;  // one network: nothing disagrees
    std::fprintf(f, "%-15s", p.key.c_str());
    for (const auto& q : p.disagreement.quartiles) std::fprintf(f, " %9s", fmt(q.quality_mean).c_str());
    std::fprintf(f, "   %s\n", p.disagreement.monotonic ? "monotonic" : "not monotonic");
  }
}

/// The quality measures a learned system adds (k-NN precision and recall, class coverage).
inline void print_recall(std::FILE* f, const tau_result& r, const quality_numbers& reference) {
  std::fprintf(f, "\n%-15s %9s %9s %9s %9s\n", "policy", "precision", "recall", "classes", "class TV");
  auto row = [&](const std::string& key, const quality_numbers& q) {
    std::fprintf(f, "%-15s %9s %9s %9s %9s\n", key.c_str(), fmt(q.precision).c_str(), fmt(q.recall).c_str(),
                 fmt(q.coverage * 10, 2).c_str(), fmt(q.cluster_tv).c_str());
  };
  for (const auto& p : r.policies) row(p.key, p.quality);
  row("true data", reference);
}

inline void print_verdict(std::FILE* f, const verdict& x) {
  std::fprintf(f, "  %-14s %s\n  %14s   (%s)\n", (std::string("[") + verdict_word(x.holds) + "]").c_str(),
               x.claim.c_str(), "", x.evidence.c_str());
}

/// The study's headline verdict (full ensemble against top-2) under its own heading, then the others.
inline void print_verdicts(std::FILE* f, const verdicts& v) {
  const auto all = v.all();
  std::fprintf(f, "the study's headline:\n");
  print_verdict(f, *all.front());
  std::fprintf(f, "the others (the same claim against every policy run, its parts, and the other measures):\n");
  for (std::size_t i = 1; i < all.size(); ++i) print_verdict(f, *all[i]);
}

// ---------------------------------------------------------------------------------------------
// JSON

inline nlohmann::json opt(const std::optional<double>& v) { return v ? nlohmann::json(*v) : nlohmann::json(nullptr); }
inline nlohmann::json opt(const std::optional<bool>& v) { return v ? nlohmann::json(*v) : nlohmann::json(nullptr); }

inline nlohmann::json to_json(const quality_numbers& q) {
  nlohmann::json j = {{"frechet", q.frechet},
                      {"nll", q.nll},
                      {"coverage", q.coverage},
                      {"precision", q.precision},
                      {"cluster_coverage", q.cluster_coverage},
                      {"cluster_tv_distance", q.cluster_tv},
                      {"cluster_share", q.cluster_share}};
  if (q.recall) j["recall"] = *q.recall;
  return j;
}

inline nlohmann::json to_json(const policy_result& p) {
  using nlohmann::json;
  json j;
  j["policy"] = p.name;
  j["quality"] = to_json(p.quality);
  json steps = json::array();
  for (const auto& s : p.stability.l_eff_steps)
    steps.push_back({{"step", s.step}, {"t", s.t}, {"median", s.median}, {"q1", s.q1}, {"q3", s.q3}, {"iqr", s.iqr},
                     {"cumulative_iqr", s.cumulative_iqr}});
  j["stability"] = {{"l_eff_median", p.stability.l_eff_median},
                    {"l_eff_cumulative_iqr", p.stability.l_eff_cumulative_iqr},
                    {"l_eff_steps", steps},
                    {"delta_refine", p.stability.delta_refine},
                    {"delta_refine_normalizer", p.stability.delta_refine_normalizer},
                    {"amplification_median", p.stability.amplification_median},
                    {"amplification_mean", p.stability.amplification_mean},
                    {"amplification_q3", p.stability.amplification_q3}};
  json at = json::array(), profile = json::array();
  for (const auto& [t, r] : p.alignment.rank_at) at.push_back({{"t", t}, {"mean_rank", opt(r)}});
  for (const auto& [t, r] : p.alignment.rank_profile) profile.push_back({{"t", t}, {"mean_rank", opt(r)}});
  j["alignment"] = {{"mean_rank", opt(p.alignment.mean_rank)},
                    {"rank_at", at},
                    {"rank_profile", profile},
                    {"angular_gap", opt(p.alignment.angular_gap)},
                    {"selected_angle", opt(p.alignment.selected_angle)},
                    {"unselected_angle", opt(p.alignment.unselected_angle)}};
  json quartiles = json::array();
  for (const auto& q : p.disagreement.quartiles)
    quartiles.push_back({{"count", q.count},
                         {"score_min", q.score_min},
                         {"score_max", q.score_max},
                         {"score_mean", q.score_mean},
                         {"nll_mean", q.quality_mean}});
  const auto& sp = p.disagreement.spearman;
  j["disagreement"] = {{"integrated_mean", p.disagreement.integrated_mean},
                       {"integrated_sd", p.disagreement.integrated_sd},
                       {"quartiles", quartiles},
                       {"monotonic", p.disagreement.monotonic},
                       {"spearman",
                        {{"rho", sp.rho},
                         {"p_value", opt(sp.p_value)},
                         {"permutations", sp.permutations},
                         {"ci_low", opt(sp.ci_low)},
                         {"ci_high", opt(sp.ci_high)},
                         {"level", sp.level}}}};
  j["cost"] = {{"expert_evaluations_per_sample", p.cost.expert_evaluations_per_sample},
               {"relative_cost", p.cost.relative_cost},
               {"field_evaluations", p.cost.field_evaluations},
               {"diagnostic_expert_evaluations_per_sample", p.cost.diagnostic_expert_evaluations_per_sample}};
  j["observed_run_bit_identical"] = p.observed_run_bit_identical;
  return j;
}

inline nlohmann::json to_json(const verdicts& v) {
  nlohmann::json j;
  nlohmann::json detail;
  for (const auto* x : v.all()) {
    j[x->key] = opt(x->holds);
    detail[x->key] = {{"claim", x->claim}, {"holds", opt(x->holds)}, {"evidence", x->evidence}};
  }
  nlohmann::json mono;
  for (const auto& [k, b] : v.monotonic_by_policy) mono[k] = b;
  j["monotonic_by_policy"] = mono;
  j["details"] = detail;
  return j;
}

/// The wall times of a study at one temperature, kept out of to_json so that everything else in
/// the JSON is a function of the configuration alone (the same bits on every run of the same
/// build and thread count).
inline nlohmann::json timing_json(const tau_result& r) {
  nlohmann::json pol = nlohmann::json::object();
  for (const auto& p : r.policies)
    pol[p.key] = {{"sampling_seconds", p.cost.sampling_seconds}, {"study_seconds", p.cost.study_seconds}};
  return {{"tau", r.tau}, {"policies", pol}};
}

inline nlohmann::json to_json(const tau_result& r, std::size_t k, const std::string& quality_name = "NLL") {
  nlohmann::json j;
  j["tau"] = r.tau;
  nlohmann::json pol = nlohmann::json::object();
  for (const auto& p : r.policies) pol[p.key] = to_json(p);
  j["policies"] = pol;
  j["verdicts"] = to_json(compute_verdicts(r, k, quality_name));
  return j;
}

// ---------------------------------------------------------------------------------------------
// CSV and SVG

inline void write_outputs(const std::string& dir, const tau_result& r, const std::vector<tau_result>& sweep,
                          const std::string& quality_name = "NLL") {
  namespace fs = std::filesystem;
  fs::create_directories(dir);
  const fs::path d(dir);
  auto open = [&](const char* name) {
    std::ofstream f(d / name);
    if (!f) throw std::runtime_error("cannot write " + (d / name).string());
    f.precision(10);
    return f;
  };
  {
    auto f = open("policies.csv");
    f << "policy,frechet,nll,coverage,precision,l_eff_median,l_eff_cumulative_iqr,delta_refine,amplification_median,"
         "mean_rank,angular_gap,integrated_disagreement_mean,spearman_rho,spearman_p,expert_evaluations_per_sample,"
         "sampling_seconds\n";
    for (const auto& p : r.policies) {
      auto o = [](const std::optional<double>& v) { return v ? std::to_string(*v) : std::string(); };
      f << p.key << ',' << p.quality.frechet << ',' << p.quality.nll << ',' << p.quality.coverage << ','
        << p.quality.precision << ',' << p.stability.l_eff_median << ',' << p.stability.l_eff_cumulative_iqr << ','
        << p.stability.delta_refine << ',' << p.stability.amplification_median << ',' << o(p.alignment.mean_rank) << ','
        << o(p.alignment.angular_gap) << ',' << p.disagreement.integrated_mean << ',' << p.disagreement.spearman.rho
        << ',' << o(p.disagreement.spearman.p_value) << ',' << p.cost.expert_evaluations_per_sample << ','
        << p.cost.sampling_seconds << '\n';
    }
  }
  {
    auto f = open("sensitivity.csv");
    f << "policy,step,t,median,q1,q3,iqr,cumulative_iqr\n";
    for (const auto& p : r.policies)
      for (const auto& s : p.stability.l_eff_steps)
        f << p.key << ',' << s.step << ',' << s.t << ',' << s.median << ',' << s.q1 << ',' << s.q3 << ',' << s.iqr << ','
          << s.cumulative_iqr << '\n';
  }
  {
    auto f = open("quality_by_disagreement.csv");
    f << "policy,quartile,count,score_min,score_max,score_mean,nll_mean\n";
    for (const auto& p : r.policies)
      for (std::size_t i = 0; i < p.disagreement.quartiles.size(); ++i) {
        const auto& q = p.disagreement.quartiles[i];
        f << p.key << ",Q" << i + 1 << ',' << q.count << ',' << q.score_min << ',' << q.score_max << ',' << q.score_mean
          << ',' << q.quality_mean << '\n';
      }
  }
  {
    auto f = open("alignment.csv");
    f << "policy,t,mean_rank\n";
    for (const auto& p : r.policies)
      for (const auto& [t, m] : p.alignment.rank_profile) f << p.key << ',' << t << ',' << (m ? std::to_string(*m) : "") << '\n';
  }
  {
    auto f = open("samples.csv");
    f << "policy,sample,integrated_disagreement,nll\n";
    for (const auto& p : r.policies)
      for (std::size_t i = 0; i < p.disagreement.per_sample.size(); ++i)
        f << p.key << ',' << i << ',' << p.disagreement.per_sample[i] << ',' << p.disagreement.per_sample_nll[i] << '\n';
  }
  if (!sweep.empty()) {
    auto f = open("sweep.csv");
    f << "tau,policy,frechet,nll,l_eff_median,delta_refine,mean_rank,angular_gap\n";
    for (const auto& t : sweep)
      for (const auto& p : t.policies)
        f << t.tau << ',' << p.key << ',' << p.quality.frechet << ',' << p.quality.nll << ',' << p.stability.l_eff_median
          << ',' << p.stability.delta_refine << ',' << (p.alignment.mean_rank ? std::to_string(*p.alignment.mean_rank) : "")
          << ',' << (p.alignment.angular_gap ? std::to_string(*p.alignment.angular_gap) : "") << '\n';
  }

  const std::string tau = fmt(r.tau);
  {
    svg::plot p{"Trajectory sensitivity L_eff (median, IQR band), tau = " + tau, "t (sampling runs from 1 to 0)",
                "L_eff (RMS singular value of J)", {}, true, false, {}};
    double lo = 1e300, hi = 0;
    for (const auto& pol : r.policies) {
      svg::series s{pol.key, {}, {}, {}, {}, false};
      for (const auto& st : pol.stability.l_eff_steps) {
        s.x.push_back(st.t);
        s.y.push_back(st.median);
        s.lo.push_back(st.q1);
        s.hi.push_back(st.q3);
        if (st.q1 > 0) lo = std::min(lo, st.q1);
        hi = std::max(hi, st.q3);
      }
      p.lines.push_back(std::move(s));
    }
    p.log_y = hi > 30 * lo;  // sparse routing's jumps reach far above the smooth fields' values
    if (!svg::write(p, (d / "sensitivity.svg").string())) throw std::runtime_error("cannot write sensitivity.svg");
  }
  {
    svg::plot p{"Quality per disagreement quartile, tau = " + tau, "quartile of trajectory-integrated disagreement",
                quality_name == "NLL" ? "mean per-sample NLL (nats; lower is better)"
                                      : "mean per-sample " + quality_name + " (lower is better)",
                {}, false, false, {"Q1 (low)", "Q2", "Q3", "Q4 (high)"}};
    for (const auto& pol : r.policies) {
      svg::series s{pol.key, {}, {}, {}, {}, true};
      for (std::size_t i = 0; i < pol.disagreement.quartiles.size(); ++i) {
        s.x.push_back(static_cast<double>(i + 1));
        s.y.push_back(pol.disagreement.quartiles[i].quality_mean);
      }
      p.lines.push_back(std::move(s));
    }
    if (!svg::write(p, (d / "quality_by_disagreement.svg").string()))
      throw std::runtime_error("cannot write quality_by_disagreement.svg");
  }
  {
    svg::plot p{"Alignment: mean rank of the selected experts' clusters, tau = " + tau, "t (sampling runs from 1 to 0)",
                "mean rank (1 = nearest centroid)", {}, true, false, {}};
    for (const auto& pol : r.policies) {
      svg::series s{pol.key, {}, {}, {}, {}, false};
      for (const auto& [t, m] : pol.alignment.rank_profile) {
        s.x.push_back(t);
        s.y.push_back(m ? *m : std::nan(""));
      }
      p.lines.push_back(std::move(s));
    }
    if (!svg::write(p, (d / "alignment.svg").string())) throw std::runtime_error("cannot write alignment.svg");
  }
  if (sweep.size() > 1) {
    svg::plot p{"Frechet distance against router temperature", "router temperature tau (1 = exact posterior)",
                "Frechet distance to the true data", {}, false, false, {}};
    for (const auto& pol : sweep.front().policies) {
      const std::string& key = pol.key;
      svg::series s{key, {}, {}, {}, {}, true};
      for (const auto& t : sweep)
        if (const auto* pr = find_policy(t, key)) {
          s.x.push_back(t.tau);
          s.y.push_back(pr->quality.frechet);
        }
      if (!s.x.empty()) p.lines.push_back(std::move(s));
    }
    if (!svg::write(p, (d / "sweep_frechet.svg").string())) throw std::runtime_error("cannot write sweep_frechet.svg");
  }
}

}  // namespace paradox
