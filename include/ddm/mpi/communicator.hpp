#pragma once
// The MPI runtime as ddm uses it: starting and stopping MPI, a communicator that owns its handle,
// the split of a batch into per-rank shards, and the waits of every exchange, which give up after
// a deadline instead of hanging.
//
// Faults. A collective exchange only completes when every rank takes part. When a rank throws
// before it reaches the exchange, or stops, the others would wait for ever; every wait here polls
// with a deadline instead (distributed_options::timeout_seconds), and a rank whose deadline passes
// prints which rank it is, which call it was in and what it waited for, then calls MPI_Abort,
// which ends every rank of the job (mpirun's exit status is then non-zero). A rank that dies is
// seen by mpirun, which ends the others. Errors that every rank learns of in the same exchange
// (an expert that throws on the rank that holds it) are raised on every rank as
// ddm::mpi::distributed_error instead, naming the rank and the call (distributed_experts.hpp).
//
// Requires MPI (link ddm::mpi).

#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "ddm/core/batch.hpp"
#include "ddm/core/config.hpp"
#include "ddm/core/error.hpp"

namespace ddm::mpi {

/// An MPI call failed, a rank failed in a collective call (the message names the rank and the
/// call), or the ranks disagree about the call they are in.
class distributed_error : public ddm::detail::error_impl<std::runtime_error> {
  using error_impl::error_impl;
};

/// Throws distributed_error naming the MPI function and MPI's own description of `code`.
inline void check(int code, const char* what) {
  if (code == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING] = {};
  int length = 0;
  MPI_Error_string(code, text, &length);
  throw distributed_error(ddm::concat("ddm::mpi: ", what, " failed: ", std::string(text, static_cast<std::size_t>(length))));
}

/// Starts MPI (MPI_Init_thread, funneled: only the thread that started MPI calls it) and ends it
/// (MPI_Finalize) when destroyed. Does neither when MPI was already started by someone else.
class environment {
 public:
  environment(int& argc, char**& argv) {
    int started = 0;
    MPI_Initialized(&started);
    if (started != 0) return;
    int provided = 0;
    check(MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
    owner_ = true;
  }
  environment(const environment&) = delete;
  environment& operator=(const environment&) = delete;
  ~environment() {
    int finished = 0;
    MPI_Finalized(&finished);
    if (owner_ && finished == 0) MPI_Finalize();
  }

 private:
  bool owner_ = false;
};

/// A communicator that owns its handle: a duplicate of the one it is made from, so that ddm's
/// messages never meet the user's; freed when the last copy goes.
class communicator {
 public:
  /// A duplicate of MPI_COMM_WORLD.
  [[nodiscard]] static communicator world() { return communicator(MPI_COMM_WORLD); }

  /// A duplicate of `comm` (collective over comm).
  explicit communicator(MPI_Comm comm) {
    MPI_Comm dup = MPI_COMM_NULL;
    check(MPI_Comm_dup(comm, &dup), "MPI_Comm_dup");
    // Errors come back as codes (turned into distributed_error), not as MPI's default abort.
    MPI_Comm_set_errhandler(dup, MPI_ERRORS_RETURN);
    handle_ = std::shared_ptr<MPI_Comm>(new MPI_Comm(dup), [](MPI_Comm* c) {
      int finished = 0;
      MPI_Finalized(&finished);
      if (finished == 0) MPI_Comm_free(c);
      delete c;
    });
    check(MPI_Comm_rank(dup, &rank_), "MPI_Comm_rank");
    check(MPI_Comm_size(dup, &size_), "MPI_Comm_size");
  }

  [[nodiscard]] int rank() const noexcept { return rank_; }
  [[nodiscard]] int size() const noexcept { return size_; }
  [[nodiscard]] MPI_Comm get() const noexcept { return *handle_; }

 private:
  std::shared_ptr<MPI_Comm> handle_;
  int rank_ = 0;
  int size_ = 1;
};

/// The MPI datatype of T (float, double, std::int32_t, std::int64_t, std::uint64_t, std::size_t,
/// unsigned char).
template <class T>
[[nodiscard]] MPI_Datatype datatype() {
  if constexpr (std::is_same_v<T, double>) return MPI_DOUBLE;
  else if constexpr (std::is_same_v<T, float>) return MPI_FLOAT;
  else if constexpr (std::is_same_v<T, std::int32_t>) return MPI_INT32_T;
  else if constexpr (std::is_same_v<T, std::int64_t>) return MPI_INT64_T;
  else if constexpr (std::is_same_v<T, std::uint64_t>) return MPI_UINT64_T;
  else if constexpr (std::is_same_v<T, std::size_t> && sizeof(std::size_t) == sizeof(std::uint64_t)) return MPI_UINT64_T;
  else {
    static_assert(std::is_same_v<T, unsigned char>, "ddm::mpi::datatype: no MPI datatype for this type");
    return MPI_UNSIGNED_CHAR;
  }
}

/// A count as MPI takes it (int), or a distributed_error naming what was too large.
[[nodiscard]] inline int mpi_count(std::size_t n, const char* what) {
  if (n > static_cast<std::size_t>(std::numeric_limits<int>::max()))
    throw distributed_error(ddm::concat("ddm::mpi: ", what, " = ", n, " values, more than one MPI message holds (",
                                        std::numeric_limits<int>::max(), "); use fewer rows per call"));
  return static_cast<int>(n);
}

/// Waits for `requests`, polling, until `timeout_seconds` have passed; then prints who waited for
/// what (`what` is called only then) and aborts the job: a rank that stopped taking part in an
/// exchange must not leave the others waiting for ever. For the first 10 ms it yields the core
/// between polls (an exchange between busy ranks ends within microseconds of the last one
/// arriving), then sleeps between polls (at most 200 us), so that oversubscribed ranks leave the
/// cores to those that compute.
template <class Describe>
void wait_all(std::span<MPI_Request> requests, double timeout_seconds, const communicator& comm, Describe&& what) {
  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  auto pause = std::chrono::microseconds(1);
  for (;;) {
    int done = 0;
    check(MPI_Testall(static_cast<int>(requests.size()), requests.data(), &done, MPI_STATUSES_IGNORE), "MPI_Testall");
    if (done != 0) return;
    const double waited = std::chrono::duration<double>(clock::now() - start).count();
    if (waited > timeout_seconds) {
      const std::string message =
          ddm::concat("ddm::mpi: rank ", comm.rank(), " of ", comm.size(), " waited ", waited, " s (the timeout) in ",
                      what(), "; another rank failed before it or stopped taking part; aborting every rank");
      std::fprintf(stderr, "%s\n", message.c_str());
      std::fflush(stderr);
      MPI_Abort(comm.get(), 70);
    }
    if (waited < 0.01) {
      std::this_thread::yield();
    } else {
      std::this_thread::sleep_for(pause);
      pause = std::min(pause * 2, std::chrono::microseconds(200));
    }
  }
}

/// A rank's rows of a batch split over ranks: rows [first, first + rows).
struct shard {
  index_t first = 0;
  index_t rows = 0;
};

/// Rank `rank`'s shard of `total_rows` rows split over `ranks`: contiguous, in rank order, sizes
/// differing by at most one (the first total % ranks ranks have one more). Every rank needs a row,
/// because every rank must take part in every call of the sampler.
[[nodiscard]] inline shard shard_of(index_t total_rows, int ranks, int rank) {
  constexpr const char* where = "ddm::mpi::shard_of";
  if (ranks < 1) ddm::fail_argument(where, "ranks", ranks, "at least 1");
  if (rank < 0 || rank >= ranks) ddm::fail_argument(where, "rank", rank, "a rank in [0, ranks)");
  if (total_rows < ranks)
    throw argument_error(ddm::concat(where, ": argument 'total_rows' = ", total_rows, ", expected at least one row per rank (",
                                     ranks, " ranks): a rank without rows cannot take part in the sampler's calls"));
  const index_t base = total_rows / ranks;
  const index_t extra = total_rows % ranks;
  return {rank * base + std::min<index_t>(rank, extra), base + (rank < extra ? 1 : 0)};
}

/// This rank's shard of `total_rows` rows.
[[nodiscard]] inline shard shard_of(index_t total_rows, const communicator& comm) {
  return shard_of(total_rows, comm.size(), comm.rank());
}

/// Every rank gets the whole batch: `global` (total, D) is the ranks' `local` shards (shard_of's
/// split of total) in rank order. Collective; aborts the job after `timeout_seconds` without
/// every rank (see wait_all).
template <class T>
void allgather_rows(const communicator& comm, batch_view<const T> local, batch_view<T> global,
                    double timeout_seconds = 600.0) {
  constexpr const char* where = "ddm::mpi::allgather_rows";
  const shard mine = shard_of(global.rows(), comm);
  ddm::require_shape(where, "local", local, mine.rows, global.cols());
  const auto d = static_cast<std::size_t>(global.cols());
  std::vector<int> counts(static_cast<std::size_t>(comm.size())), displs(counts.size());
  for (int r = 0; r < comm.size(); ++r) {
    const shard s = shard_of(global.rows(), comm.size(), r);
    counts[static_cast<std::size_t>(r)] = mpi_count(static_cast<std::size_t>(s.rows) * d, where);
    displs[static_cast<std::size_t>(r)] = mpi_count(static_cast<std::size_t>(s.first) * d, where);
  }
  // Contiguous copies in and out: views may have a stride.
  std::vector<T> send(static_cast<std::size_t>(local.rows()) * d);
  for (index_t r = 0; r < local.rows(); ++r) std::copy_n(local.row(r), d, send.data() + static_cast<std::size_t>(r) * d);
  std::vector<T> all(static_cast<std::size_t>(global.rows()) * d);
  MPI_Request request = MPI_REQUEST_NULL;
  check(MPI_Iallgatherv(send.data(), mpi_count(send.size(), where), datatype<T>(), all.data(), counts.data(),
                        displs.data(), datatype<T>(), comm.get(), &request),
        "MPI_Iallgatherv");
  wait_all(std::span<MPI_Request>(&request, 1), timeout_seconds, comm, [] { return std::string("ddm::mpi::allgather_rows"); });
  for (index_t r = 0; r < global.rows(); ++r) std::copy_n(all.data() + static_cast<std::size_t>(r) * d, d, global.row(r));
}

/// values[i] = the sum over ranks of every rank's values[i], on every rank (counts of the
/// ranks' shards: rows per expert, rows routed). Collective; aborts after `timeout_seconds`
/// without every rank (see wait_all).
template <class T>
void sum_over_ranks(const communicator& comm, std::span<T> values, double timeout_seconds = 600.0) {
  std::vector<T> mine(values.begin(), values.end());
  MPI_Request request = MPI_REQUEST_NULL;
  check(MPI_Iallreduce(mine.data(), values.data(), mpi_count(values.size(), "ddm::mpi::sum_over_ranks"), datatype<T>(),
                       MPI_SUM, comm.get(), &request),
        "MPI_Iallreduce (sum)");
  wait_all(std::span<MPI_Request>(&request, 1), timeout_seconds, comm, [] { return std::string("ddm::mpi::sum_over_ranks"); });
}

}  // namespace ddm::mpi
