#pragma once
// The state algebra on CUDA device memory: algebra<cuda_space>, which the free functions of
// ddm/core/algebra.hpp (lincomb, copy, fill, row_dot, row_norm, max_scaled_rms, all_finite)
// forward to for device views. Integrators call only those free functions, so every integrator
// runs unchanged on device views.
//
// What runs where, and how results are ordered:
//   lincomb, fill      one element-wise kernel each (lincomb fuses all its operands into one pass
//                      over memory, whatever their number). Each element is computed as on the
//                      host, sum_i c_i x_i left to right in T, except that the compiler may fuse
//                      a multiply and an add into one rounding (FMA): device and host agree to a
//                      few units in the last place of sum_i |c_i x_i|.
//   row_dot, row_norm  one block of reduce_block threads per row; each thread accumulates a
//                      fixed strided subset of the row in double, then CUB's block reduction adds
//                      the partial sums in a fixed tree. Deterministic: the same inputs give the
//                      same bits on every run and every GPU. The summation order differs from the
//                      host's sequential one, so device and host agree to the rounding of double
//                      sums (about cols * 1e-16 relative to sum_j |a_j b_j|) before the final
//                      conversion to the output type.
//   max_scaled_rms     per-row sums as in row_dot (double, fixed tree), then the maximum over rows
//                      with an atomic maximum on the bit patterns of the non-negative row values;
//                      a maximum does not depend on the order it is taken in, so the result is
//                      deterministic. NaN in any row gives NaN, as on the host. Returns to the
//                      host: waits for the stream.
//   all_finite         an element-wise kernel that raises a flag; waits for the stream.
//
// Requires the CUDA toolkit and CUB (link ddm::cuda); include from CUDA translation units.

#include <cuda_runtime_api.h>

#include <array>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <utility>

#include <cub/block/block_reduce.cuh>

#include "ddm/core/algebra.hpp"
#include "ddm/core/batch.hpp"
#include "ddm/core/config.hpp"
#include "ddm/core/memory_space.hpp"
#include "ddm/cuda/context.hpp"
#include "ddm/cuda/error.hpp"
#include "ddm/cuda/launch.hpp"
#include "ddm/cuda/memory_resource.hpp"

namespace ddm {

namespace cuda::detail {

// Kernel arguments are passed by value (in the constant bank): N pointers, strides and
// coefficients. A contiguous problem is passed as one row (rows = 1, strides unused).
template <class T, std::size_t N>
struct lincomb_args {
  T* out;
  index_t out_stride;
  const T* x[N];
  index_t x_stride[N];
  T c[N];
  index_t rows;
  index_t cols;
};

template <class T, std::size_t N>
__global__ void __launch_bounds__(elementwise_block) lincomb_kernel(const lincomb_args<T, N> a) {
  for (index_t r = blockIdx.y; r < a.rows; r += gridDim.y) {
    T* o = a.out + r * a.out_stride;
    for (index_t j = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; j < a.cols;
         j += static_cast<index_t>(gridDim.x) * blockDim.x) {
      // `out` may be one of the operands (in-place update): each element is read before it is
      // written, by the same thread.
      T s = a.c[0] * a.x[0][r * a.x_stride[0] + j];
#pragma unroll
      for (std::size_t i = 1; i < N; ++i) s += a.c[i] * a.x[i][r * a.x_stride[i] + j];
      o[j] = s;
    }
  }
}

template <class T>
__global__ void __launch_bounds__(elementwise_block)
    fill_kernel(T* x, index_t stride, index_t rows, index_t cols, const T value) {
  for (index_t r = blockIdx.y; r < rows; r += gridDim.y)
    for (index_t j = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; j < cols;
         j += static_cast<index_t>(gridDim.x) * blockDim.x)
      x[r * stride + j] = value;
}

// out[r] = sum_j a_rj b_rj (Sqrt: its square root), accumulated in double.
template <bool Sqrt, class T, class R>
__global__ void __launch_bounds__(reduce_block) row_dot_kernel(const T* a, index_t sa, const T* b, index_t sb,
                                                               index_t rows, index_t cols, R* out, index_t so) {
  using block_reduce = cub::BlockReduce<double, reduce_block>;
  __shared__ typename block_reduce::TempStorage scratch;
  for (index_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* pa = a + r * sa;
    const T* pb = b + r * sb;
    double s = 0;
    for (index_t j = threadIdx.x; j < cols; j += reduce_block) s += static_cast<double>(pa[j]) * static_cast<double>(pb[j]);
    const double total = block_reduce(scratch).Sum(s);
    if (threadIdx.x == 0) out[r * so] = static_cast<R>(Sqrt ? sqrt(total) : total);
    __syncthreads();  // the scratch is reused by the next row
  }
}

// The bits of a non-negative double order like the values; NaN is given the largest pattern so
// that it wins the maximum.
__device__ inline unsigned long long max_order_bits(double v) {
  return v != v ? ~0ULL : static_cast<unsigned long long>(__double_as_longlong(v > 0 ? v : 0.0));
}

template <class T>
__global__ void __launch_bounds__(reduce_block)
    max_scaled_rms_kernel(const T* e, index_t se, const T* x0, index_t s0, const T* x1, index_t s1, index_t rows,
                          index_t cols, double atol, double rtol, unsigned long long* worst) {
  using block_reduce = cub::BlockReduce<double, reduce_block>;
  __shared__ typename block_reduce::TempStorage scratch;
  for (index_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* pe = e + r * se;
    const T* pa = x0 + r * s0;
    const T* pb = x1 + r * s1;
    double s = 0;
    for (index_t j = threadIdx.x; j < cols; j += reduce_block) {
      const double a = fabs(static_cast<double>(pa[j]));
      const double b = fabs(static_cast<double>(pb[j]));
      // (a < b ? b : a) is std::max(a, b), NaN handling included, as on the host.
      const double q = static_cast<double>(pe[j]) / (atol + rtol * (a < b ? b : a));
      s += q * q;
    }
    const double total = block_reduce(scratch).Sum(s);
    if (threadIdx.x == 0) atomicMax(worst, max_order_bits(sqrt(total / static_cast<double>(cols))));
    __syncthreads();
  }
}

template <class T>
__global__ void __launch_bounds__(elementwise_block)
    all_finite_kernel(const T* x, index_t stride, index_t rows, index_t cols, int* found_non_finite) {
  bool bad = false;
  for (index_t r = blockIdx.y; r < rows; r += gridDim.y)
    for (index_t j = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; j < cols;
         j += static_cast<index_t>(gridDim.x) * blockDim.x)
      bad |= !isfinite(x[r * stride + j]);
  if (bad) atomicExch(found_non_finite, 1);
}

}  // namespace cuda::detail

/// The device algebra. Every operation is enqueued on the context's stream; those that return a
/// value to the host wait for it.
template <>
struct algebra<cuda_space> {
  template <class T, std::size_t N, std::size_t... I>
  static void lincomb(const cuda_context& ctx, batch_view<T, cuda_space> out, const std::array<T, N>& c,
                      const std::array<batch_view<const T, cuda_space>, N>& x, std::index_sequence<I...> /*seq*/) {
    const bool flat = out.is_contiguous() && (x[I].is_contiguous() && ...);
    const cuda::detail::lincomb_args<T, N> args{out.data(),
                                                out.stride(),
                                                {x[I].data()...},
                                                {x[I].stride()...},
                                                {c[I]...},
                                                flat ? 1 : out.rows(),
                                                flat ? out.size() : out.cols()};
    cuda::detail::lincomb_kernel<T, N>
        <<<cuda::detail::elementwise_grid(args.rows, args.cols), cuda::detail::elementwise_block, 0, ctx.stream()>>>(
            args);
    cuda::check_launch("ddm::lincomb (lincomb_kernel)");
  }

  template <class T>
  static void fill(const cuda_context& ctx, batch_view<T, cuda_space> x, T value) {
    const bool flat = x.is_contiguous();
    const index_t rows = flat ? 1 : x.rows();
    const index_t cols = flat ? x.size() : x.cols();
    cuda::detail::fill_kernel<T><<<cuda::detail::elementwise_grid(rows, cols), cuda::detail::elementwise_block, 0,
                                   ctx.stream()>>>(x.data(), x.stride(), rows, cols, value);
    cuda::check_launch("ddm::fill (fill_kernel)");
  }

  template <class T, class R>
  static void row_dot(const cuda_context& ctx, batch_view<const T, cuda_space> a, batch_view<const T, cuda_space> b,
                      batch_view<R, cuda_space> out) {
    cuda::detail::row_dot_kernel<false, T, R>
        <<<cuda::detail::reduce_grid(a.rows()), cuda::detail::reduce_block, 0, ctx.stream()>>>(
            a.data(), a.stride(), b.data(), b.stride(), a.rows(), a.cols(), out.data(), out.stride());
    cuda::check_launch("ddm::row_dot (row_dot_kernel)");
  }

  template <class T, class R>
  static void row_norm(const cuda_context& ctx, batch_view<const T, cuda_space> a, batch_view<R, cuda_space> out) {
    cuda::detail::row_dot_kernel<true, T, R>
        <<<cuda::detail::reduce_grid(a.rows()), cuda::detail::reduce_block, 0, ctx.stream()>>>(
            a.data(), a.stride(), a.data(), a.stride(), a.rows(), a.cols(), out.data(), out.stride());
    cuda::check_launch("ddm::row_norm (row_dot_kernel)");
  }

  template <class T>
  static double max_scaled_rms(const cuda_context& ctx, batch_view<const T, cuda_space> err,
                               batch_view<const T, cuda_space> x0, batch_view<const T, cuda_space> x1, double atol,
                               double rtol) {
    const cuda::detail::device_scalar<unsigned long long> worst(ctx);
    cuda::detail::max_scaled_rms_kernel<T>
        <<<cuda::detail::reduce_grid(err.rows()), cuda::detail::reduce_block, 0, ctx.stream()>>>(
            err.data(), err.stride(), x0.data(), x0.stride(), x1.data(), x1.stride(), err.rows(), err.cols(), atol,
            rtol, worst.get());
    cuda::check_launch("ddm::max_scaled_rms (max_scaled_rms_kernel)");
    const unsigned long long bits = worst.read();
    if (bits == ~0ULL) return std::numeric_limits<double>::quiet_NaN();
    return std::bit_cast<double>(bits);
  }

  template <class T>
  static bool all_finite(const cuda_context& ctx, batch_view<const T, cuda_space> x) {
    const cuda::detail::device_scalar<int> found(ctx);
    const bool flat = x.is_contiguous();
    const index_t rows = flat ? 1 : x.rows();
    const index_t cols = flat ? x.size() : x.cols();
    cuda::detail::all_finite_kernel<T><<<cuda::detail::elementwise_grid(rows, cols), cuda::detail::elementwise_block,
                                         0, ctx.stream()>>>(x.data(), x.stride(), rows, cols, found.get());
    cuda::check_launch("ddm::all_finite (all_finite_kernel)");
    return found.read() == 0;
  }
};

}  // namespace ddm
