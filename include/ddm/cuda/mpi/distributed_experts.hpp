#pragma once
// Experts on MPI ranks, for device batches: distributed_experts<T, Local, ddm::cuda_space>, with
// the interface and the per-call steps of the host one (ddm/mpi/distributed_experts.hpp). The plan,
// its checks and the agreement on each call's outcome travel over MPI on the host, as there: they
// are K + 4 integers per peer, and the host needs the row counts anyway to size the buffers. The
// rows, their global row indices and the velocities travel device to device over NCCL (grouped
// ncclSend/ncclRecv, NCCL's all-to-all-v), on the context's stream: packing, exchange, the
// experts' work and unpacking are all enqueued there, without a host round trip per expert.
//
// The host waits for the stream three times per call (after the rows arrive, after the experts,
// after the velocities return), each with the deadline of distributed_options::timeout_seconds:
// an NCCL peer that never comes is seen there, the NCCL communicator is aborted and the job with it.
//
// Every rank must own its device before constructing (cudaSetDevice: one GPU per rank, e.g. the
// rank modulo the node's GPU count); NCCL does not accept two ranks on one GPU. Construction is
// collective: rank 0 makes NCCL's unique id and broadcasts it over MPI.
//
// Determinism: as on the host, with one owner per expert an expert sees the rows the
// single-process run gives it, in the same order, and the routed field's combine kernel sums each
// row's experts in ascending order; a device expert that is row-wise gives the same bits.
//
// Requires MPI, NCCL and the CUDA toolkit (link ddm::mpi_cuda); include from CUDA translation units.

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "ddm/core/batch.hpp"
#include "ddm/core/conditioning.hpp"
#include "ddm/core/error.hpp"
#include "ddm/core/memory_space.hpp"
#include "ddm/core/scratch.hpp"
#include "ddm/cuda/context.hpp"
#include "ddm/cuda/error.hpp"
#include "ddm/mpi/communicator.hpp"
#include "ddm/mpi/distributed_experts.hpp"
#include "ddm/mpi/placement.hpp"
#include "ddm/routing/ensemble.hpp"

namespace ddm::mpi {

namespace detail {

/// Throws distributed_error naming the NCCL call and NCCL's description of the result.
inline void check_nccl(ncclResult_t result, const char* what) {
  if (result == ncclSuccess) return;
  throw distributed_error(ddm::concat("ddm::mpi: ", what, " failed: ", ncclGetErrorString(result)));
}

template <class T>
[[nodiscard]] ncclDataType_t nccl_type() {
  if constexpr (std::is_same_v<T, double>) return ncclFloat64;
  else if constexpr (std::is_same_v<T, float>) return ncclFloat32;
  else {
    static_assert(std::is_same_v<T, std::int32_t>, "ddm::mpi: no NCCL datatype for this type");
    return ncclInt32;
  }
}

/// An NCCL communicator over the ranks of an MPI one, destroyed with its last owner.
class nccl_communicator {
 public:
  nccl_communicator(const communicator& comm, double timeout_seconds) {
    ncclUniqueId id{};
    if (comm.rank() == 0) check_nccl(ncclGetUniqueId(&id), "ncclGetUniqueId");
    MPI_Request request = MPI_REQUEST_NULL;
    check(MPI_Ibcast(&id, static_cast<int>(sizeof id), MPI_BYTE, 0, comm.get(), &request), "MPI_Ibcast (NCCL id)");
    wait_all(std::span<MPI_Request>(&request, 1), timeout_seconds, comm,
             [] { return std::string("ddm::mpi::distributed_experts (device): the broadcast of NCCL's id"); });
    ncclComm_t raw = nullptr;
    check_nccl(ncclCommInitRank(&raw, comm.size(), id, comm.rank()), "ncclCommInitRank");
    handle_ = std::shared_ptr<ncclComm>(raw, [](ncclComm_t c) { ncclCommDestroy(c); });
  }
  [[nodiscard]] ncclComm_t get() const noexcept { return handle_.get(); }

 private:
  std::shared_ptr<ncclComm> handle_;
};

/// index[i] += offset, the global row indices of the rows this rank sends.
__global__ inline void add_row_offset_kernel(std::int32_t* index, std::size_t n, std::int32_t offset) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x)
    index[i] += offset;
}

}  // namespace detail

template <class T, class Local>
class distributed_experts<T, Local, cuda_space> : public detail::exchange_control {
  static_assert(expert_set<Local, T, cuda_space>,
                "ddm::mpi::distributed_experts: Local is not a ddm::expert_set of device batches of T");

 public:
  static constexpr bool collective = true;

  /// As the host one, with the context whose stream every step is enqueued on. Collective.
  distributed_experts(communicator comm, ddm::mpi::placement where, Local local, cuda_context ctx,
                      index_t row_offset = 0, distributed_options options = {})
      : exchange_control(std::move(comm), std::move(where), static_cast<std::size_t>(local.size()), row_offset,
                         options),
        local_(std::move(local)), ctx_(ctx), nccl_(comm_, options.timeout_seconds) {
    value_bytes_ = sizeof(T);
    (void)global_row_(0);  // the offset itself must fit the 32-bit indices
  }

  [[nodiscard]] Local& local() noexcept { return local_; }
  [[nodiscard]] const Local& local() const noexcept { return local_; }
  [[nodiscard]] const cuda_context& context() const noexcept { return ctx_; }

  /// Expert k on all of x (device views). Collective.
  void evaluate(std::size_t k, batch_view<const T, cuda_space> x, double t, batch_view<T, cuda_space> v) {
    const index_t n = x.rows();
    if (iota_host_.size() != static_cast<std::size_t>(n)) {
      iota_host_.resize(static_cast<std::size_t>(n));
      for (std::size_t i = 0; i < iota_host_.size(); ++i) iota_host_[i] = static_cast<std::int32_t>(i);
      iota_ = batch<std::int32_t, cuda_space>(ctx_, std::max<index_t>(n, 1), 1);
      DDM_CUDA_CHECK(cudaMemcpyAsync(iota_.data(), iota_host_.data(), iota_host_.size() * sizeof(std::int32_t),
                                     cudaMemcpyHostToDevice, ctx_.stream()));
    }
    evaluate(k, x, t, v, row_index_view<cuda_space>(iota_.data(), n, 1));
  }
  /// Expert k on x, whose row i is row rows(i, 0) of this rank's batch. Collective.
  void evaluate(std::size_t k, batch_view<const T, cuda_space> x, double t, batch_view<T, cuda_space> v,
                row_index_view<cuda_space> rows) {
    const expert_group<T, cuda_space> group{k, x, rows, v};
    evaluate_groups(t, std::span<const expert_group<T, cuda_space>>(&group, 1));
  }

  /// Every group of one call (see ddm/mpi/distributed_experts.hpp). Collective.
  void evaluate_groups(double t, std::span<const expert_group<T, cuda_space>> groups) {
    const std::size_t call = begin_(t, groups);
    const std::size_t d = cols_();
    x_out_ = x_out_scratch_.get(ctx_, std::max<index_t>(static_cast<index_t>(last_.rows_sent), 1), static_cast<index_t>(d));
    v_out_ = v_out_scratch_.get(ctx_, std::max<index_t>(static_cast<index_t>(last_.rows_sent), 1), static_cast<index_t>(d));
    index_out_ = index_out_scratch_.get(ctx_, std::max<index_t>(static_cast<index_t>(last_.rows_sent), 1), 1);
    x_in_ = x_in_scratch_.get(ctx_, std::max<index_t>(static_cast<index_t>(rows_in_), 1), static_cast<index_t>(d));
    v_in_ = v_in_scratch_.get(ctx_, std::max<index_t>(static_cast<index_t>(rows_in_), 1), static_cast<index_t>(d));
    index_in_ = index_in_scratch_.get(ctx_, std::max<index_t>(static_cast<index_t>(rows_in_), 1), 1);

    pack_(groups);
    exchange_(x_out_.data(), x_in_.data(), d, true);
    exchange_(index_out_.data(), index_in_.data(), 1, true);
    wait_stream_(call, t, "the exchange of rows to the experts' owners (NCCL)");
    const auto computing = clock::now();
    std::string failure = evaluate_received_(t);
    if (failure.empty()) failure = wait_stream_(call, t, "the experts' work on the device", true);
    end_evaluation_(call, t, failure, std::chrono::duration<double>(clock::now() - computing).count());
    exchange_(v_in_.data(), v_out_.data(), d, false);
    unpack_(groups);
    wait_stream_(call, t, "the return of the velocities (NCCL)");
    finish_();
  }

 private:
  // Rows of each chunk into the send buffer (rank-major, as the plan), and their global indices.
  void pack_(std::span<const expert_group<T, cuda_space>> groups) {
    const std::size_t d = cols_();
    std::size_t at_row = 0;
    for (const auto& c : chunks_) {
      const auto& grp = groups[c.group];
      DDM_CUDA_CHECK(cudaMemcpy2DAsync(x_out_.row(static_cast<index_t>(at_row)), d * sizeof(T), grp.x.row(c.first),
                                       static_cast<std::size_t>(grp.x.stride()) * sizeof(T), d * sizeof(T),
                                       static_cast<std::size_t>(c.rows), cudaMemcpyDeviceToDevice, ctx_.stream()));
      DDM_CUDA_CHECK(cudaMemcpy2DAsync(index_out_.row(static_cast<index_t>(at_row)), sizeof(std::int32_t),
                                       grp.rows.row(c.first), static_cast<std::size_t>(grp.rows.stride()) * sizeof(std::int32_t),
                                       sizeof(std::int32_t), static_cast<std::size_t>(c.rows), cudaMemcpyDeviceToDevice,
                                       ctx_.stream()));
      at_row += static_cast<std::size_t>(c.rows);
    }
    if (at_row > 0 && row_offset_ != 0) {
      const auto blocks = static_cast<unsigned>(std::min<std::size_t>((at_row + 255) / 256, 4096));
      detail::add_row_offset_kernel<<<blocks, 256, 0, ctx_.stream()>>>(index_out_.data(), at_row,
                                                                      static_cast<std::int32_t>(row_offset_));
      cuda::check_launch("ddm::mpi::distributed_experts (add_row_offset_kernel)");
    }
  }

  // One all-to-all-v over NCCL: per peer, `per_row` values of each row counted by the plan;
  // `forward` sends counts_out_ and receives counts_in_, the return the other way round.
  template <class U>
  void exchange_(const U* send, U* recv, std::size_t per_row, bool forward) {
    const auto& out = forward ? counts_out_ : counts_in_;
    const auto& in = forward ? counts_in_ : counts_out_;
    detail::check_nccl(ncclGroupStart(), "ncclGroupStart");
    std::size_t sent = 0;
    std::size_t received = 0;
    for (std::size_t r = 0; r < ranks_(); ++r) {
      if (out[r] != 0)
        detail::check_nccl(ncclSend(send + sent * per_row, out[r] * per_row, detail::nccl_type<U>(), static_cast<int>(r),
                                    nccl_.get(), ctx_.stream()),
                           "ncclSend");
      if (in[r] != 0)
        detail::check_nccl(ncclRecv(recv + received * per_row, in[r] * per_row, detail::nccl_type<U>(),
                                    static_cast<int>(r), nccl_.get(), ctx_.stream()),
                           "ncclRecv");
      sent += out[r];
      received += in[r];
    }
    detail::check_nccl(ncclGroupEnd(), "ncclGroupEnd");
  }

  // Each held expert once on every row received for it, ordered by sending rank.
  std::string evaluate_received_(double t) {
    const std::size_t p = ranks_();
    const std::size_t k_count = size();
    const std::size_t d = cols_();
    for (std::size_t k = 0; k < k_count; ++k) {
      const std::size_t n = received_(k);
      if (n == 0) continue;
      const auto rows = static_cast<index_t>(n);
      const auto x_eval = x_eval_scratch_.get(ctx_, rows, static_cast<index_t>(d));
      const auto v_eval = v_eval_scratch_.get(ctx_, rows, static_cast<index_t>(d));
      const auto index_eval = index_eval_scratch_.get(ctx_, rows, 1);
      segments_(k, p, k_count, [&](std::size_t s, std::size_t at, std::size_t m) {
        DDM_CUDA_CHECK(cudaMemcpyAsync(x_eval.row(static_cast<index_t>(at)), x_in_.row(static_cast<index_t>(s)),
                                       m * d * sizeof(T), cudaMemcpyDeviceToDevice, ctx_.stream()));
        DDM_CUDA_CHECK(cudaMemcpyAsync(index_eval.row(static_cast<index_t>(at)), index_in_.row(static_cast<index_t>(s)),
                                       m * sizeof(std::int32_t), cudaMemcpyDeviceToDevice, ctx_.stream()));
      });
      try {
        local_.evaluate(k, x_eval.as_const(), t, v_eval, index_eval.as_const());
      } catch (const std::exception& e) {
        return ddm::concat("rank ", comm_.rank(), ": expert ", k, " threw on ", n, " rows: ", e.what());
      } catch (...) {
        return ddm::concat("rank ", comm_.rank(), ": expert ", k, " threw a non-standard exception on ", n, " rows");
      }
      segments_(k, p, k_count, [&](std::size_t s, std::size_t at, std::size_t m) {
        DDM_CUDA_CHECK(cudaMemcpyAsync(v_in_.row(static_cast<index_t>(s)), v_eval.row(static_cast<index_t>(at)),
                                       m * d * sizeof(T), cudaMemcpyDeviceToDevice, ctx_.stream()));
      });
      last_.rows_evaluated += n;
    }
    return {};
  }

  // f(receive-buffer row, evaluation row, rows) for expert k's segment from each rank, in rank order.
  template <class F>
  void segments_(std::size_t k, std::size_t p, std::size_t k_count, F&& f) const {
    std::size_t at = 0;
    for (std::size_t r = 0; r < p; ++r) {
      const std::size_t m = received_(r, k);
      if (m != 0) f(start_[r * k_count + k], at, m);
      at += m;
    }
  }

  void unpack_(std::span<const expert_group<T, cuda_space>> groups) {
    const std::size_t d = cols_();
    std::size_t at_row = 0;
    for (const auto& c : chunks_) {
      const auto& grp = groups[c.group];
      DDM_CUDA_CHECK(cudaMemcpy2DAsync(grp.v.row(c.first), static_cast<std::size_t>(grp.v.stride()) * sizeof(T),
                                       v_out_.row(static_cast<index_t>(at_row)), d * sizeof(T), d * sizeof(T),
                                       static_cast<std::size_t>(c.rows), cudaMemcpyDeviceToDevice, ctx_.stream()));
      at_row += static_cast<std::size_t>(c.rows);
    }
  }

  // Waits for the stream until the deadline. A device error is returned when `report` (so that
  // every rank learns of it in the agreement) and thrown otherwise; past the deadline the NCCL
  // communicator and the job are aborted.
  std::string wait_stream_(std::size_t call, double t, const char* phase, bool report = false) {
    const auto start = clock::now();
    auto pause = std::chrono::microseconds(1);
    for (int polls = 0;; ++polls) {
      const cudaError_t state = cudaStreamQuery(ctx_.stream());
      if (state == cudaSuccess) return {};
      if (state != cudaErrorNotReady) {
        (void)cudaGetLastError();
        std::string message = ddm::concat("rank ", comm_.rank(), ": ", where_(call, t, phase), ": ", cudaGetErrorString(state));
        if (report) return message;
        throw device_error(message);
      }
      ncclResult_t async = ncclSuccess;
      ncclCommGetAsyncError(nccl_.get(), &async);
      if (async != ncclSuccess && async != ncclInProgress)
        throw distributed_error(ddm::concat("ddm::mpi: rank ", comm_.rank(), ": ", where_(call, t, phase),
                                            ": NCCL failed: ", ncclGetErrorString(async)));
      const double waited = std::chrono::duration<double>(clock::now() - start).count();
      if (waited > options_.timeout_seconds) {
        std::fprintf(stderr, "ddm::mpi: rank %d of %d waited %.1f s (the timeout) in %s; aborting every rank\n",
                     comm_.rank(), comm_.size(), waited, where_(call, t, phase).c_str());
        std::fflush(stderr);
        ncclCommAbort(nccl_.get());
        MPI_Abort(comm_.get(), 70);
      }
      if (polls > 1000) {
        std::this_thread::sleep_for(pause);
        pause = std::min(pause * 2, std::chrono::microseconds(1000));
      }
    }
  }

  Local local_;
  cuda_context ctx_;
  detail::nccl_communicator nccl_;
  ddm::detail::scratch_buffer<T, cuda_space> x_out_scratch_, v_out_scratch_, x_in_scratch_, v_in_scratch_,
      x_eval_scratch_, v_eval_scratch_;
  ddm::detail::scratch_buffer<std::int32_t, cuda_space> index_out_scratch_, index_in_scratch_, index_eval_scratch_;
  batch_view<T, cuda_space> x_out_, v_out_, x_in_, v_in_;
  batch_view<std::int32_t, cuda_space> index_out_, index_in_;
  std::vector<std::int32_t> iota_host_;
  batch<std::int32_t, cuda_space> iota_;
};

/// The device distributed_experts over `local`, on ctx's stream.
template <class T, class Local>
[[nodiscard]] distributed_experts<T, std::decay_t<Local>, cuda_space> make_distributed_experts(
    communicator comm, placement where, Local&& local, cuda_context ctx, index_t row_offset = 0,
    distributed_options options = {}) {
  return distributed_experts<T, std::decay_t<Local>, cuda_space>(std::move(comm), std::move(where),
                                                                 std::forward<Local>(local), ctx, row_offset, options);
}

}  // namespace ddm::mpi
