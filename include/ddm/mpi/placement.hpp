#pragma once
// Which ranks hold which experts. Expert k has one or more owner ranks; when it has several
// (replicas, for an expert many rows select), every sender splits its rows of k between them by
// the owners' shares. A rank may hold several experts, or none.
//
//   placement::round_robin(K, P)          expert k on rank k % P (the naive placement)
//   placement::balanced(load, P, slots)   from measured per-expert load: replicas of hot experts in
//                                         the spare slots, then largest-first onto the least-loaded
//                                         rank (see balanced())
//   placement::parse(spec, K, P)          "round-robin", or explicit owners: "0|1|2,3|0" gives
//                                         expert 0 to rank 0, expert 2 to ranks 2 and 3 (equal
//                                         shares), ...; "2:0.75,3:0.25" sets shares
//
// No MPI here: a placement is plain data, made and checked the same on every rank.

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <numeric>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ddm/core/error.hpp"

namespace ddm::mpi {

class placement {
 public:
  /// owners[k]: the ranks holding expert k; shares[k]: the part of k's rows each gets (positive,
  /// normalized here). Checked: every expert has an owner, ranks in [0, ranks), none twice.
  placement(int ranks, std::vector<std::vector<int>> owners, std::vector<std::vector<double>> shares)
      : ranks_(ranks), owners_(std::move(owners)), shares_(std::move(shares)) {
    constexpr const char* where = "ddm::mpi::placement";
    if (ranks_ < 1) ddm::fail_argument(where, "ranks", ranks_, "at least 1");
    if (owners_.empty()) throw argument_error(ddm::concat(where, ": argument 'owners' is empty, expected an entry per expert"));
    if (shares_.size() != owners_.size())
      throw argument_error(ddm::concat(where, ": argument 'shares' has ", shares_.size(), " entries, 'owners' ",
                                       owners_.size(), ", expected one per expert in both"));
    for (std::size_t k = 0; k < owners_.size(); ++k) {
      auto& o = owners_[k];
      auto& s = shares_[k];
      if (o.empty()) throw argument_error(ddm::concat(where, ": expert ", k, " has no owner rank, expected at least one"));
      if (s.size() != o.size())
        throw argument_error(ddm::concat(where, ": expert ", k, " has ", o.size(), " owners and ", s.size(),
                                         " shares, expected one share per owner"));
      double total = 0;
      for (std::size_t i = 0; i < o.size(); ++i) {
        if (o[i] < 0 || o[i] >= ranks_)
          throw argument_error(ddm::concat(where, ": expert ", k, " has owner rank ", o[i], ", expected a rank in [0, ",
                                           ranks_, ")"));
        if (std::count(o.begin(), o.end(), o[i]) > 1)
          throw argument_error(ddm::concat(where, ": expert ", k, " names rank ", o[i], " twice, expected distinct owners"));
        if (!(s[i] > 0) || !std::isfinite(s[i]))
          throw argument_error(ddm::concat(where, ": expert ", k, " gives rank ", o[i], " the share ", s[i],
                                           ", expected a finite share > 0"));
        total += s[i];
      }
      for (double& v : s) v /= total;
    }
  }

  /// Owners with equal shares.
  placement(int ranks, std::vector<std::vector<int>> owners) : placement(ranks, owners, equal_shares_(owners)) {}

  /// Expert k on rank k % ranks.
  [[nodiscard]] static placement round_robin(std::size_t experts, int ranks) {
    if (experts == 0) ddm::fail_argument("ddm::mpi::placement::round_robin", "experts", experts, "at least 1");
    if (ranks < 1) ddm::fail_argument("ddm::mpi::placement::round_robin", "ranks", ranks, "at least 1");
    std::vector<std::vector<int>> owners(experts);
    for (std::size_t k = 0; k < experts; ++k) owners[k] = {static_cast<int>(k % static_cast<std::size_t>(ranks))};
    return placement(ranks, std::move(owners));
  }

  /// A placement for measured per-expert load (load[k]: rows expert k evaluated in a profiling
  /// run, e.g. the routed field's expert_rows()) on `ranks` ranks that hold at most `slots`
  /// experts each (memory), slots >= ceil(K / ranks). The spare slots (ranks * slots - K) go, one at
  /// a time, to the expert with the largest load per replica; then the replicas, each carrying its
  /// expert's load divided by its replica count, are placed largest first onto the rank with the
  /// least load so far that has a free slot and does not hold that expert yet (the LPT rule; ties
  /// to the lower rank). Deterministic, so every rank computes the same placement.
  [[nodiscard]] static placement balanced(std::span<const double> load, int ranks, std::size_t slots) {
    constexpr const char* where = "ddm::mpi::placement::balanced";
    const std::size_t k_count = load.size();
    if (k_count == 0) throw argument_error(ddm::concat(where, ": argument 'load' is empty, expected one value per expert"));
    if (ranks < 1) ddm::fail_argument(where, "ranks", ranks, "at least 1");
    const auto p = static_cast<std::size_t>(ranks);
    if (slots * p < k_count)
      throw argument_error(ddm::concat(where, ": argument 'slots' = ", slots, ", expected at least ceil(K / ranks) = ",
                                       (k_count + p - 1) / p, " so that ", ranks, " ranks can hold ", k_count, " experts"));
    for (std::size_t k = 0; k < k_count; ++k)
      if (!(load[k] >= 0) || !std::isfinite(load[k]))
        throw argument_error(ddm::concat(where, ": argument 'load' has ", load[k], " for expert ", k,
                                         ", expected finite values >= 0"));
    // Replica counts: at most one replica per rank, spare slots to the largest load per replica.
    std::vector<std::size_t> replicas(k_count, 1);
    for (std::size_t spare = std::min(slots * p, k_count * p) - k_count; spare > 0; --spare) {
      std::size_t best = k_count;
      for (std::size_t k = 0; k < k_count; ++k)
        if (replicas[k] < p && (best == k_count || load[k] / static_cast<double>(replicas[k]) >
                                                       load[best] / static_cast<double>(replicas[best])))
          best = k;
      if (best == k_count || load[best] == 0) break;
      ++replicas[best];
    }
    // The replicas, largest load first (ties: lower expert), onto the least-loaded eligible rank.
    std::vector<std::size_t> order(k_count);
    std::iota(order.begin(), order.end(), std::size_t{0});
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
      return load[a] / static_cast<double>(replicas[a]) > load[b] / static_cast<double>(replicas[b]);
    });
    std::vector<double> rank_load(p, 0.0);
    std::vector<std::size_t> used(p, 0);
    std::vector<std::vector<int>> owners(k_count);
    for (std::size_t k : order) {
      const double piece = load[k] / static_cast<double>(replicas[k]);
      for (std::size_t i = 0; i < replicas[k]; ++i) {
        std::size_t best = p;
        for (std::size_t r = 0; r < p; ++r) {
          if (used[r] >= slots || std::find(owners[k].begin(), owners[k].end(), static_cast<int>(r)) != owners[k].end())
            continue;
          if (best == p || rank_load[r] < rank_load[best]) best = r;
        }
        if (best == p) break;  // no eligible rank left: fewer replicas (cannot happen with the counts above)
        owners[k].push_back(static_cast<int>(best));
        rank_load[best] += piece;
        ++used[best];
      }
      std::sort(owners[k].begin(), owners[k].end());
    }
    return placement(ranks, std::move(owners));
  }

  /// "round-robin", or explicit owners per expert separated by '|': ranks separated by ',', each
  /// optionally with ":share" ("0|1|2:0.75,3:0.25|0").
  [[nodiscard]] static placement parse(std::string_view spec, std::size_t experts, int ranks) {
    constexpr const char* where = "ddm::mpi::placement::parse";
    if (spec == "round-robin") return round_robin(experts, ranks);
    std::vector<std::vector<int>> owners;
    std::vector<std::vector<double>> shares;
    auto fail = [&](std::string_view part, const char* why) {
      throw argument_error(ddm::concat(where, ": placement '", spec, "': '", part, "' ", why,
                                       "; expected 'round-robin' or owners per expert like '0|1|2,3|0:0.5,1:0.5'"));
    };
    std::size_t pos = 0;
    while (pos <= spec.size()) {
      const std::size_t bar = std::min(spec.find('|', pos), spec.size());
      const std::string_view expert = spec.substr(pos, bar - pos);
      if (expert.empty()) fail(expert, "is an empty owner list");
      auto& o = owners.emplace_back();
      auto& s = shares.emplace_back();
      std::size_t at = 0;
      while (at <= expert.size()) {
        const std::size_t comma = std::min(expert.find(',', at), expert.size());
        const std::string_view item = expert.substr(at, comma - at);
        const std::size_t colon = item.find(':');
        const std::string_view rank_text = item.substr(0, colon);
        int rank = -1;
        const auto [end, ec] = std::from_chars(rank_text.data(), rank_text.data() + rank_text.size(), rank);
        if (ec != std::errc{} || end != rank_text.data() + rank_text.size()) fail(item, "is not a rank number");
        double share = 1.0;
        if (colon != std::string_view::npos) {
          const std::string text(item.substr(colon + 1));
          std::size_t used = 0;
          try {
            share = std::stod(text, &used);
          } catch (const std::exception&) {
            used = 0;
          }
          if (used == 0 || used != text.size()) fail(item, "has a share that is not a number");
        }
        o.push_back(rank);
        s.push_back(share);
        at = comma + 1;
      }
      pos = bar + 1;
    }
    if (owners.size() != experts)
      throw argument_error(ddm::concat(where, ": placement '", spec, "' names owners for ", owners.size(),
                                       " experts, expected ", experts, " (one '|'-separated entry per expert)"));
    return placement(ranks, std::move(owners), std::move(shares));
  }

  [[nodiscard]] std::size_t experts() const noexcept { return owners_.size(); }
  [[nodiscard]] int ranks() const noexcept { return ranks_; }
  [[nodiscard]] std::span<const int> owners(std::size_t k) const { return owners_.at(k); }
  [[nodiscard]] std::span<const double> shares(std::size_t k) const { return shares_.at(k); }
  [[nodiscard]] bool holds(int rank, std::size_t k) const {
    const auto& o = owners_.at(k);
    return std::find(o.begin(), o.end(), rank) != o.end();
  }
  /// The experts rank holds, ascending.
  [[nodiscard]] std::vector<std::size_t> experts_of(int rank) const {
    std::vector<std::size_t> out;
    for (std::size_t k = 0; k < owners_.size(); ++k)
      if (holds(rank, k)) out.push_back(k);
    return out;
  }
  /// The load each rank gets under this placement when expert k carries load[k].
  [[nodiscard]] std::vector<double> rank_load(std::span<const double> load) const {
    if (load.size() != experts())
      throw argument_error(ddm::concat("ddm::mpi::placement::rank_load: argument 'load' has ", load.size(),
                                       " values, expected one per expert (", experts(), ")"));
    std::vector<double> out(static_cast<std::size_t>(ranks_), 0.0);
    for (std::size_t k = 0; k < owners_.size(); ++k)
      for (std::size_t i = 0; i < owners_[k].size(); ++i)
        out[static_cast<std::size_t>(owners_[k][i])] += load[k] * shares_[k][i];
    return out;
  }
  /// The spec parse() reads back: "0|1|2:0.5,3:0.5|0".
  [[nodiscard]] std::string describe() const {
    std::string out;
    for (std::size_t k = 0; k < owners_.size(); ++k) {
      if (k != 0) out += '|';
      const bool equal = std::all_of(shares_[k].begin(), shares_[k].end(),
                                     [&](double s) { return s == shares_[k].front(); });
      for (std::size_t i = 0; i < owners_[k].size(); ++i) {
        if (i != 0) out += ',';
        out += std::to_string(owners_[k][i]);
        if (!equal) out += ddm::concat(':', shares_[k][i]);
      }
    }
    return out;
  }

  /// The rows of expert k's n rows (from one sender) that go to each owner, in owner order:
  /// contiguous chunks, chunk i ending at round(n * (share_0 + ... + share_i)), the last at n.
  void split(std::size_t k, std::size_t n, std::span<std::size_t> counts) const {
    const auto& s = shares_.at(k);
    double cumulative = 0;
    std::size_t done = 0;
    for (std::size_t i = 0; i < s.size(); ++i) {
      cumulative += s[i];
      const std::size_t end =
          i + 1 == s.size() ? n : std::min(n, static_cast<std::size_t>(std::llround(cumulative * static_cast<double>(n))));
      counts[i] = end > done ? end - done : 0;
      done = std::max(done, end);
    }
  }

 private:
  static std::vector<std::vector<double>> equal_shares_(const std::vector<std::vector<int>>& owners) {
    std::vector<std::vector<double>> s(owners.size());
    for (std::size_t k = 0; k < owners.size(); ++k) s[k].assign(owners[k].size(), 1.0);
    return s;
  }

  int ranks_;
  std::vector<std::vector<int>> owners_;
  std::vector<std::vector<double>> shares_;
};

}  // namespace ddm::mpi
