#pragma once
// Experts spread over MPI ranks: the expert-parallel pattern of mixture-of-experts serving, for a
// DDM whose experts do not all live in one process.
//
// Every rank samples its own shard of the batch (data parallel) with its own routed field, whose
// router runs where the rows are; the experts are a distributed_experts, which the routed field
// hands all (expert, rows) groups of a call at once (ddm::evaluate_groups). Per call:
//   1. the plan: each group's rows are split between the ranks that hold its expert (by the
//      placement's shares, for an expert with replicas), and every rank tells every other how
//      many rows of each expert it will send, with the call number, t and a fingerprint of its
//      placement and the width of its rows (one all-to-all of K + 4 integers per pair of ranks);
//   2. the rows and their global row indices (the sender's row offset + the index the routed
//      field gave: the conditioning of a conditioned expert) go to their owners (all-to-all-v);
//      only selected experts' rows travel;
//   3. each rank evaluates each expert it holds once, on all rows it received for it, ordered by
//      sending rank (so with shards in rank order and one owner per expert, an expert sees exactly
//      the sub-batch it would see in one process);
//   4. the ranks agree that every rank succeeded (one all-reduce after the plans, one after the
//      evaluation); if one did not (the ranks are at different calls or hold different placements,
//      an expert threw), every rank throws distributed_error with the first failing rank's message,
//      naming it and the call;
//   5. the velocities go back (all-to-all-v) and into each group's output.
// Every wait gives up after options.timeout_seconds and aborts the job (ddm/mpi/communicator.hpp):
// a rank that stopped calling never leaves the others hanging.
//
// Determinism: the routed field combines each row's experts in ascending order as in one process,
// so with one owner per expert the samples are those of the single-process run to the bit,
// provided the router and experts give each row what they give it in a whole-batch call (row-wise
// computations; an expert whose output for a row depends on which other rows share its batch, as
// a GEMM's blocking can, is deterministic but may differ in the last bits). Replicas split an
// expert's rows between ranks, so there every expert must be row-wise for bit-identity.
//
// Requires MPI (link ddm::mpi).

#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <limits>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "ddm/core/batch.hpp"
#include "ddm/core/conditioning.hpp"
#include "ddm/core/error.hpp"
#include "ddm/core/memory_space.hpp"
#include "ddm/mpi/communicator.hpp"
#include "ddm/mpi/placement.hpp"
#include "ddm/routing/ensemble.hpp"

namespace ddm::mpi {

struct distributed_options {
  /// How long a rank waits in one exchange before it aborts the job (the experts' evaluation on the
  /// other ranks happens inside this wait, so it must exceed the slowest expert call).
  double timeout_seconds = 600.0;
};

/// What the exchanges of a distributed_experts cost on this rank.
struct exchange_stats {
  std::size_t calls = 0;             ///< evaluate_groups calls
  std::size_t rows_sent = 0;         ///< rows this rank sent to owners (its own included)
  std::size_t rows_evaluated = 0;    ///< rows this rank's experts evaluated for any rank
  std::size_t rows_sent_away = 0;    ///< of rows_sent, those that went to another rank
  std::size_t bytes_sent = 0;        ///< to other ranks: rows, row indices, returned velocities, plan
  std::size_t bytes_received = 0;    ///< from other ranks, the same parts
  double exchange_seconds = 0;       ///< in the exchanges (waiting for slower ranks included)
  double compute_seconds = 0;        ///< in this rank's own experts
};

namespace detail {

/// The host side of every call, whatever memory the rows live in (host: below; device:
/// ddm/cuda/mpi/distributed_experts.hpp): the plan of who sends which rows where, its exchange and
/// checks, the agreement on each call's outcome, the waits with their deadline, the statistics.
class exchange_control {
 public:
  // One chunk of a group: `rows` rows of group `group`, from its row `first`, go to rank `dest`.
  struct chunk {
    int dest;
    std::size_t expert;
    std::size_t group;
    index_t first;
    index_t rows;
  };

  exchange_control(communicator comm, placement where, std::size_t local_size, index_t row_offset,
                   distributed_options options)
      : comm_(std::move(comm)), placement_(std::move(where)), row_offset_(row_offset), options_(options) {
    constexpr const char* at = "ddm::mpi::distributed_experts";
    if (placement_.ranks() != comm_.size())
      throw argument_error(ddm::concat(at, ": the placement is for ", placement_.ranks(),
                                       " ranks but the communicator has ", comm_.size(), ", expected the same"));
    if (local_size != placement_.experts())
      throw argument_error(ddm::concat(at, ": the local expert set holds ", local_size, " experts, the placement ",
                                       placement_.experts(), ", expected the same K"));
    if (row_offset_ < 0) ddm::fail_argument(at, "row_offset", row_offset_, "a row index >= 0");
    if (!(options_.timeout_seconds > 0)) ddm::fail_argument(at, "options.timeout_seconds", options_.timeout_seconds, "> 0");
    fingerprint_ = static_cast<std::int64_t>(std::hash<std::string>{}(placement_.describe()) & 0x7fffffffffffffffULL);
  }

  [[nodiscard]] std::size_t size() const noexcept { return placement_.experts(); }
  [[nodiscard]] const ddm::mpi::placement& placement() const noexcept { return placement_; }
  [[nodiscard]] const communicator& comm() const noexcept { return comm_; }
  [[nodiscard]] index_t row_offset() const noexcept { return row_offset_; }
  /// Sets the first row of this rank's shard (for a new batch whose shards start elsewhere).
  void set_row_offset(index_t row_offset) {
    if (row_offset < 0)
      ddm::fail_argument("ddm::mpi::distributed_experts::set_row_offset", "row_offset", row_offset, "a row index >= 0");
    row_offset_ = row_offset;
  }
  /// The exchanges' cost since construction or reset_stats(), and that of the last call alone.
  [[nodiscard]] const exchange_stats& stats() const noexcept { return total_; }
  [[nodiscard]] const exchange_stats& last_stats() const noexcept { return last_; }
  void reset_stats() noexcept { total_ = {}; }

 protected:
  using clock = std::chrono::steady_clock;

  // Steps 1 and the first agreement of a call (see the header): splits every group between its
  // expert's owners, orders the chunks by (dest, expert, group), the order of the send buffer, and
  // exchanges and checks the plans. Returns the call's number.
  template <class T, class Space>
  std::size_t begin_(double t, std::span<const expert_group<T, Space>> groups) {
    constexpr const char* at = "ddm::mpi::distributed_experts::evaluate_groups";
    for (const auto& g : groups) {
      ddm::require_same_shape(at, "v", g.v, g.x);
      ddm::require_shape(at, "rows", g.rows, g.x.rows(), 1);
    }
    started_ = clock::now();
    const std::size_t call = total_.calls;
    last_ = {};
    last_.calls = 1;
    const std::size_t k_count = size();
    d_cols_ = -1;
    chunks_.clear();
    for (std::size_t g = 0; g < groups.size(); ++g) {
      const auto& grp = groups[g];
      if (grp.expert >= k_count)
        throw argument_error(ddm::concat(at, ": group ", g, " names expert ", grp.expert, ", expected an index in [0, ",
                                         k_count, ")"));
      if (d_cols_ < 0) d_cols_ = grp.x.cols();
      if (grp.x.cols() != d_cols_)
        throw shape_error(ddm::concat(at, ": group ", g, " has ", grp.x.cols(), " columns, group 0 ", d_cols_,
                                      ", expected one width per call"));
      const auto owners = placement_.owners(grp.expert);
      split_.resize(owners.size());
      placement_.split(grp.expert, static_cast<std::size_t>(grp.x.rows()), split_);
      index_t first = 0;
      for (std::size_t i = 0; i < owners.size(); ++i) {
        const auto n = static_cast<index_t>(split_[i]);
        if (n > 0) chunks_.push_back({owners[i], grp.expert, g, first, n});
        first += n;
      }
    }
    std::stable_sort(chunks_.begin(), chunks_.end(), [](const chunk& a, const chunk& b) {
      return a.dest != b.dest ? a.dest < b.dest : a.expert < b.expert;
    });
    const std::size_t p = ranks_();
    const std::size_t width = k_count + 4;
    plan_out_.assign(p * width, 0);
    for (const auto& c : chunks_) {
      plan_out_[static_cast<std::size_t>(c.dest) * width + 4 + c.expert] += c.rows;
      last_.rows_sent += static_cast<std::size_t>(c.rows);
    }
    exchange_plans_(call, t);
    // Plans that disagree (calls, placements, widths) would make the row exchange's sizes
    // disagree: every rank learns of it first.
    agree_(call, t, check_plans_(call, t));
    // Rows per peer, both ways, and where expert k's rows from rank r start in the receive buffer
    // (rank-major, expert-minor).
    counts_out_.assign(p, 0);
    counts_in_.assign(p, 0);
    start_.assign(p * k_count, 0);
    std::size_t row = 0;
    for (std::size_t r = 0; r < p; ++r)
      for (std::size_t k = 0; k < k_count; ++k) {
        counts_out_[r] += static_cast<std::size_t>(plan_out_[r * width + 4 + k]);
        counts_in_[r] += received_(r, k);
        start_[r * k_count + k] = row;
        row += received_(r, k);
      }
    rows_in_ = row;
    const auto me = static_cast<std::size_t>(comm_.rank());
    last_.rows_sent_away = last_.rows_sent - counts_out_[me];
    const std::size_t row_bytes = cols_() * value_bytes_ + sizeof(std::int32_t);
    add_traffic_(last_.rows_sent_away * row_bytes, (rows_in_ - counts_in_[me]) * row_bytes);
    return call;
  }

  // The global row index of row r of a group whose local indices are `local`: checked to fit.
  [[nodiscard]] std::int32_t global_row_(std::int64_t local) const {
    const std::int64_t global = row_offset_ + local;
    if (global > std::numeric_limits<std::int32_t>::max())
      throw argument_error(ddm::concat("ddm::mpi::distributed_experts: global row index ", global, " (row offset ",
                                       row_offset_, ") does not fit the 32-bit row indices of ddm::row_index_view"));
    return static_cast<std::int32_t>(global);
  }

  // Rows of expert k received from rank r.
  [[nodiscard]] std::size_t received_(std::size_t r, std::size_t k) const {
    return static_cast<std::size_t>(plan_in_[r * (size() + 4) + 4 + k]);
  }
  // Rows of expert k received from all ranks.
  [[nodiscard]] std::size_t received_(std::size_t k) const {
    std::size_t n = 0;
    for (std::size_t r = 0; r < ranks_(); ++r) n += received_(r, k);
    return n;
  }

  // Steps 4 and 5's bookkeeping: the agreement on the evaluation, the traffic of the return, the times.
  void end_evaluation_(std::size_t call, double t, const std::string& failure, double compute_seconds) {
    last_.compute_seconds = compute_seconds;
    agree_(call, t, failure);
    const auto me = static_cast<std::size_t>(comm_.rank());
    add_traffic_((rows_in_ - counts_in_[me]) * cols_() * value_bytes_, last_.rows_sent_away * cols_() * value_bytes_);
  }
  void finish_() noexcept {
    last_.exchange_seconds = std::chrono::duration<double>(clock::now() - started_).count() - last_.compute_seconds;
    total_.calls += 1;
    total_.rows_sent += last_.rows_sent;
    total_.rows_evaluated += last_.rows_evaluated;
    total_.rows_sent_away += last_.rows_sent_away;
    total_.bytes_sent += last_.bytes_sent;
    total_.bytes_received += last_.bytes_received;
    total_.exchange_seconds += last_.exchange_seconds;
    total_.compute_seconds += last_.compute_seconds;
  }

  void wait_(std::span<MPI_Request> requests, std::size_t call, double t, const char* phase) const {
    wait_all(requests, options_.timeout_seconds, comm_, [&] { return where_(call, t, phase); });
  }
  [[nodiscard]] std::string where_(std::size_t call, double t, const char* phase) const {
    return ddm::concat("ddm::mpi::distributed_experts call ", call, " (t = ", t, "), ", phase);
  }

  // MPI counts and displacements (in values) of per-peer row counts times per_row.
  static void set_counts_(const std::vector<std::size_t>& rows, std::size_t per_row, std::vector<int>& counts,
                          std::vector<int>& displs, const char* what) {
    counts.resize(rows.size());
    displs.resize(rows.size());
    std::size_t offset = 0;
    for (std::size_t r = 0; r < rows.size(); ++r) {
      counts[r] = mpi_count(rows[r] * per_row, what);
      displs[r] = mpi_count(offset, what);
      offset += rows[r] * per_row;
    }
  }

  [[nodiscard]] std::size_t ranks_() const noexcept { return static_cast<std::size_t>(comm_.size()); }
  [[nodiscard]] std::size_t cols_() const noexcept { return d_cols_ < 0 ? 0 : static_cast<std::size_t>(d_cols_); }

  communicator comm_;
  ddm::mpi::placement placement_;
  index_t row_offset_;
  distributed_options options_;
  std::size_t value_bytes_ = 0;  // sizeof(T), set by the space's class
  exchange_stats total_;
  exchange_stats last_;
  index_t d_cols_ = -1;  // the call's width; -1 while no rank has rows
  std::vector<chunk> chunks_;
  std::vector<std::size_t> counts_out_, counts_in_, start_;
  std::size_t rows_in_ = 0;

 private:
  void exchange_plans_(std::size_t call, double t) {
    const std::size_t p = ranks_();
    const std::size_t width = size() + 4;
    std::int64_t t_bits = 0;
    std::memcpy(&t_bits, &t, sizeof t_bits);
    for (std::size_t r = 0; r < p; ++r) {
      plan_out_[r * width + 0] = static_cast<std::int64_t>(call);
      plan_out_[r * width + 1] = t_bits;
      plan_out_[r * width + 2] = fingerprint_;
      plan_out_[r * width + 3] = d_cols_;
    }
    plan_in_.assign(p * width, 0);
    MPI_Request request = MPI_REQUEST_NULL;
    const int w = static_cast<int>(width);
    check(MPI_Ialltoall(plan_out_.data(), w, MPI_INT64_T, plan_in_.data(), w, MPI_INT64_T, comm_.get(), &request),
          "MPI_Ialltoall (the plan)");
    wait_(std::span<MPI_Request>(&request, 1), call, t, "the exchange of plans (rows per expert)");
    add_traffic_((p - 1) * width * sizeof(std::int64_t), (p - 1) * width * sizeof(std::int64_t));
  }

  // What this rank finds wrong with the plans it received ("" when nothing): ranks at different
  // calls, times or placements, widths that differ, rows for an expert this rank does not hold.
  // A rank without rows learns the call's width here.
  std::string check_plans_(std::size_t call, double t) {
    const std::size_t p = ranks_();
    const std::size_t k_count = size();
    const std::size_t width = k_count + 4;
    const int me = comm_.rank();
    std::int64_t d_in = d_cols_;
    for (std::size_t r = 0; r < p; ++r) {
      const std::int64_t* in = plan_in_.data() + r * width;
      double t_other = 0;
      std::memcpy(&t_other, &in[1], sizeof t_other);
      if (in[0] != static_cast<std::int64_t>(call) || in[1] != plan_out_[1])
        return ddm::concat("rank ", me, " is at call ", call, " (t = ", t, ") but rank ", r, " at call ", in[0],
                           " (t = ", t_other, "): the ranks do not make the same calls");
      if (in[2] != fingerprint_)
        return ddm::concat("rank ", me, " and rank ", r, " were given different placements (this rank's: '",
                           placement_.describe(), "')");
      if (in[3] >= 0) {
        if (d_in >= 0 && in[3] != d_in)
          return ddm::concat("rank ", r, " sends rows of ", in[3], " columns, rank ", me, " has ", d_in,
                             ": the ranks' batches must have one width");
        d_in = in[3];
      }
      for (std::size_t k = 0; k < k_count; ++k)
        if (in[4 + k] != 0 && !placement_.holds(me, k))
          return ddm::concat("rank ", r, " sent ", in[4 + k], " rows of expert ", k, " to rank ", me,
                             ", which does not hold it");
    }
    d_cols_ = d_in;
    return {};
  }

  // Every rank learns whether any failed; if one did, every rank throws its message.
  void agree_(std::size_t call, double t, const std::string& failure) {
    const int me = comm_.rank();
    int first_failed = failure.empty() ? comm_.size() : me;
    int lowest = comm_.size();
    MPI_Request request = MPI_REQUEST_NULL;
    check(MPI_Iallreduce(&first_failed, &lowest, 1, MPI_INT, MPI_MIN, comm_.get(), &request), "MPI_Iallreduce (status)");
    wait_(std::span<MPI_Request>(&request, 1), call, t, "the agreement on the call's status");
    if (lowest == comm_.size()) return;
    std::string text = lowest == me ? failure : std::string();
    int length = static_cast<int>(text.size());
    check(MPI_Ibcast(&length, 1, MPI_INT, lowest, comm_.get(), &request), "MPI_Ibcast (error length)");
    wait_(std::span<MPI_Request>(&request, 1), call, t, "the broadcast of a rank's error");
    text.resize(static_cast<std::size_t>(length));
    check(MPI_Ibcast(text.data(), length, MPI_CHAR, lowest, comm_.get(), &request), "MPI_Ibcast (error text)");
    wait_(std::span<MPI_Request>(&request, 1), call, t, "the broadcast of a rank's error");
    throw distributed_error(
        ddm::concat("ddm::mpi::distributed_experts: call ", call, " (t = ", t, ") failed on rank ", lowest, ": ", text));
  }

  void add_traffic_(std::size_t sent, std::size_t received) noexcept {
    last_.bytes_sent += sent;
    last_.bytes_received += received;
  }

  std::int64_t fingerprint_ = 0;
  clock::time_point started_;
  std::vector<std::size_t> split_;
  std::vector<std::int64_t> plan_out_, plan_in_;
};

}  // namespace detail

/// Experts on MPI ranks, for host batches of T (see the header). Space = ddm::cuda_space is the
/// device one (ddm/cuda/mpi/distributed_experts.hpp: NCCL).
template <class T, class Local, class Space = host_space>
class distributed_experts;

template <class T, class Local>
class distributed_experts<T, Local, host_space> : public detail::exchange_control {
  static_assert(expert_set<Local, T, host_space>,
                "ddm::mpi::distributed_experts: Local is not a ddm::expert_set of host batches of T");

 public:
  /// Every rank must take part in every call (ddm::collective_expert_set).
  static constexpr bool collective = true;

  /// `local`: an expert set of size K on this rank, of which only the experts `where` gives this
  /// rank are evaluated (the others may be placeholders that are never called). `row_offset`: the
  /// first row of this rank's shard in the whole batch; row indices sent to other ranks are
  /// row_offset + the local index. Every rank must construct one.
  distributed_experts(communicator comm, ddm::mpi::placement where, Local local, index_t row_offset = 0,
                      distributed_options options = {})
      : exchange_control(std::move(comm), std::move(where), static_cast<std::size_t>(local.size()), row_offset,
                         options),
        local_(std::move(local)) {
    value_bytes_ = sizeof(T);
  }

  [[nodiscard]] Local& local() noexcept { return local_; }
  [[nodiscard]] const Local& local() const noexcept { return local_; }

  /// Expert k on all of x. Collective, like evaluate_groups: every rank must make the same calls.
  void evaluate(std::size_t k, batch_view<const T> x, double t, batch_view<T> v) {
    iota_.resize(static_cast<std::size_t>(x.rows()));
    for (std::size_t i = 0; i < iota_.size(); ++i) iota_[i] = static_cast<std::int32_t>(i);
    evaluate(k, x, t, v, row_index_view<>(iota_.data(), x.rows(), 1));
  }
  /// Expert k on x, whose row i is row rows(i, 0) of this rank's batch. Collective.
  void evaluate(std::size_t k, batch_view<const T> x, double t, batch_view<T> v, row_index_view<> rows) {
    const expert_group<T> group{k, x, rows, v};
    evaluate_groups(t, std::span<const expert_group<T>>(&group, 1));
  }

  /// Every group of one call, wherever its expert lives (see the header). Collective.
  void evaluate_groups(double t, std::span<const expert_group<T>> groups) {
    const std::size_t call = begin_(t, groups);
    pack_(groups);
    exchange_rows_(call, t);
    const auto computing = clock::now();
    const std::string failure = evaluate_received_(t);
    end_evaluation_(call, t, failure, std::chrono::duration<double>(clock::now() - computing).count());
    return_rows_(call, t);
    unpack_(groups);
    finish_();
  }

 private:
  void pack_(std::span<const expert_group<T>> groups) {
    const std::size_t d = cols_();
    x_out_.resize(last_.rows_sent * d);
    index_out_.resize(last_.rows_sent);
    std::size_t at_row = 0;
    for (const auto& c : chunks_) {
      const auto& grp = groups[c.group];
      for (index_t r = 0; r < c.rows; ++r, ++at_row) {
        std::copy_n(grp.x.row(c.first + r), d, x_out_.data() + at_row * d);
        index_out_[at_row] = global_row_(grp.rows(c.first + r, 0));
      }
    }
  }

  void exchange_rows_(std::size_t call, double t) {
    const std::size_t d = cols_();
    x_in_.resize(rows_in_ * d);
    index_in_.resize(rows_in_);
    set_counts_(counts_out_, d, send_counts_, send_displs_, "rows sent");
    set_counts_(counts_in_, d, recv_counts_, recv_displs_, "rows received");
    set_counts_(counts_out_, 1, send_index_counts_, send_index_displs_, "row indices sent");
    set_counts_(counts_in_, 1, recv_index_counts_, recv_index_displs_, "row indices received");
    MPI_Request requests[2] = {MPI_REQUEST_NULL, MPI_REQUEST_NULL};
    check(MPI_Ialltoallv(x_out_.data(), send_counts_.data(), send_displs_.data(), datatype<T>(), x_in_.data(),
                         recv_counts_.data(), recv_displs_.data(), datatype<T>(), comm_.get(), &requests[0]),
          "MPI_Ialltoallv (rows)");
    check(MPI_Ialltoallv(index_out_.data(), send_index_counts_.data(), send_index_displs_.data(), MPI_INT32_T,
                         index_in_.data(), recv_index_counts_.data(), recv_index_displs_.data(), MPI_INT32_T,
                         comm_.get(), &requests[1]),
          "MPI_Ialltoallv (row indices)");
    wait_(std::span<MPI_Request>(requests, 2), call, t, "the exchange of rows to the experts' owners");
  }

  // Evaluates each held expert once on every row received for it, the rows ordered by sending
  // rank; returns the error, if any.
  std::string evaluate_received_(double t) {
    const std::size_t p = ranks_();
    const std::size_t k_count = size();
    const std::size_t d = cols_();
    v_in_.resize(x_in_.size());
    for (std::size_t k = 0; k < k_count; ++k) {
      const std::size_t n = received_(k);
      if (n == 0) continue;
      x_eval_.resize(n * d);
      v_eval_.resize(n * d);
      index_eval_.resize(n);
      std::size_t at = 0;
      for (std::size_t r = 0; r < p; ++r) {
        const std::size_t m = received_(r, k);
        const std::size_t s = start_[r * k_count + k];
        std::copy_n(x_in_.data() + s * d, m * d, x_eval_.data() + at * d);
        std::copy_n(index_in_.data() + s, m, index_eval_.data() + at);
        at += m;
      }
      const auto rows = static_cast<index_t>(n);
      try {
        local_.evaluate(k, batch_view<const T>(x_eval_.data(), rows, d_cols_), t,
                        batch_view<T>(v_eval_.data(), rows, d_cols_), row_index_view<>(index_eval_.data(), rows, 1));
      } catch (const std::exception& e) {
        return ddm::concat("rank ", comm_.rank(), ": expert ", k, " threw on ", n, " rows: ", e.what());
      } catch (...) {
        return ddm::concat("rank ", comm_.rank(), ": expert ", k, " threw a non-standard exception on ", n, " rows");
      }
      at = 0;
      for (std::size_t r = 0; r < p; ++r) {
        const std::size_t m = received_(r, k);
        std::copy_n(v_eval_.data() + at * d, m * d, v_in_.data() + start_[r * k_count + k] * d);
        at += m;
      }
      last_.rows_evaluated += n;
    }
    return {};
  }

  void return_rows_(std::size_t call, double t) {
    v_out_.resize(x_out_.size());
    MPI_Request request = MPI_REQUEST_NULL;
    check(MPI_Ialltoallv(v_in_.data(), recv_counts_.data(), recv_displs_.data(), datatype<T>(), v_out_.data(),
                         send_counts_.data(), send_displs_.data(), datatype<T>(), comm_.get(), &request),
          "MPI_Ialltoallv (velocities)");
    wait_(std::span<MPI_Request>(&request, 1), call, t, "the return of the velocities");
  }

  void unpack_(std::span<const expert_group<T>> groups) {
    const std::size_t d = cols_();
    std::size_t at_row = 0;
    for (const auto& c : chunks_) {
      const auto& grp = groups[c.group];
      for (index_t r = 0; r < c.rows; ++r, ++at_row) std::copy_n(v_out_.data() + at_row * d, d, grp.v.row(c.first + r));
    }
  }

  Local local_;
  std::vector<int> send_counts_, send_displs_, recv_counts_, recv_displs_;
  std::vector<int> send_index_counts_, send_index_displs_, recv_index_counts_, recv_index_displs_;
  std::vector<T> x_out_, x_in_, v_in_, v_out_, x_eval_, v_eval_;
  std::vector<std::int32_t> index_out_, index_in_, index_eval_, iota_;
};

/// distributed_experts<T, Local, Space> over `local` (copied or moved in).
template <class T, class Space = host_space, class Local>
[[nodiscard]] distributed_experts<T, std::decay_t<Local>, Space> make_distributed_experts(
    communicator comm, placement where, Local&& local, index_t row_offset = 0, distributed_options options = {}) {
  return distributed_experts<T, std::decay_t<Local>, Space>(std::move(comm), std::move(where),
                                                            std::forward<Local>(local), row_offset, options);
}

}  // namespace ddm::mpi
