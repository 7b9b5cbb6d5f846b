#pragma once
// The state algebra on CUDA device memory: algebra<cuda_space>, which the free functions of
// ddm/core/algebra.hpp (lincomb, copy, fill, row_dot, row_norm, max_scaled_rms, all_finite)
// forward to for device views. Integrators call only those free functions, so every integrator
// runs unchanged on device views.
//
// What runs where, and how results are ordered:
//   lincomb, fill      one streaming kernel each (lincomb fuses all its operands into one pass
//                      over memory, whatever their number): 16-byte accesses where the operands
//                      share their alignment, several in flight per thread, a grid of the blocks
//                      the device holds resident (launch.hpp). Each element is computed as on the
//                      host, sum_i c_i x_i left to right in T, except that the compiler may fuse
//                      a multiply and an add into one rounding (FMA): device and host agree to a
//                      few units in the last place of sum_i |c_i x_i|. The access pattern does
//                      not change any element's arithmetic.
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

#include <algorithm>
#include <array>
#include <atomic>
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
// coefficients, and the row layout of stream_layout (launch.hpp). A contiguous problem is passed
// as one row (rows = 1, strides unused).
template <class T, std::size_t N>
struct lincomb_args {
  T* out;
  index_t out_stride;
  const T* x[N];
  index_t x_stride[N];
  T c[N];
  index_t rows;
  index_t cols;
  index_t head;     // per row: values before the operands' first 16-byte boundary
  index_t vectors;  // per row: W-wide accesses after the head
};

// Independent accesses per thread and operand in one pass: enough bytes in flight to cover the
// memory latency (a few KiB per SM), few enough registers to keep full occupancy. 16-byte
// accesses: 4 per operand for one or two operands (128 bytes in flight per thread for two), 2
// for up to four, 1 beyond; single values: twice as many.
template <std::size_t N, int W>
inline constexpr int lincomb_unroll = (W > 1 ? 1 : 2) * (N <= 2 ? 4 : (N <= 4 ? 2 : 1));

// Element j of the output: c_0 x_0 + c_1 x_1 + ... left to right in T, as on the host.
template <class T, std::size_t N>
__device__ __forceinline__ T combine_values(const T (&c)[N], const T (&v)[N]) {
  T s = c[0] * v[0];
#pragma unroll
  for (std::size_t i = 1; i < N; ++i) s += c[i] * v[i];
  return s;
}

template <class T, std::size_t N, int W>
__global__ void __launch_bounds__(elementwise_block) lincomb_kernel(const lincomb_args<T, N> a) {
  constexpr int unroll = lincomb_unroll<N, W>;
  const index_t tid = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x;
  const index_t threads = static_cast<index_t>(gridDim.x) * blockDim.x;
  const index_t body_end = a.head + a.vectors * W;
  const index_t edge = a.head + (a.cols - body_end);  // values done one at a time (< 2 W per row)
  for (index_t r = blockIdx.y; r < a.rows; r += gridDim.y) {
    T* o = a.out + r * a.out_stride;
    const T* x[N];
#pragma unroll
    for (std::size_t i = 0; i < N; ++i) x[i] = a.x[i] + r * a.x_stride[i];
    // `out` may be one of the operands (in-place update): every value is read before it is
    // written, by the thread that writes it, and read only once (see load_stream).
    if (tid < edge) {
      const index_t j = tid < a.head ? tid : body_end + (tid - a.head);
      T v[N];
#pragma unroll
      for (std::size_t i = 0; i < N; ++i) v[i] = x[i][j];
      o[j] = combine_values(a.c, v);
    }
    // The 16-byte-aligned part of each row, where the vector accesses start.
    T* o_body = o + a.head;
    const T* x_body[N];
#pragma unroll
    for (std::size_t i = 0; i < N; ++i) x_body[i] = x[i] + a.head;
    for (index_t base = tid; base < a.vectors; base += threads * unroll) {
      pack<T, W> in[unroll][N];
#pragma unroll
      for (int u = 0; u < unroll; ++u) {
        const index_t k = base + u * threads;
        if (k < a.vectors) {
#pragma unroll
          for (std::size_t i = 0; i < N; ++i) in[u][i] = load_stream<T, W>(x_body[i], k);
        }
      }
#pragma unroll
      for (int u = 0; u < unroll; ++u) {
        const index_t k = base + u * threads;
        if (k < a.vectors) {
          pack<T, W> result;
#pragma unroll
          for (int e = 0; e < W; ++e) {
            T v[N];
#pragma unroll
            for (std::size_t i = 0; i < N; ++i) v[i] = in[u][i].v[e];
            result.v[e] = combine_values(a.c, v);
          }
          store_stream<T, W>(o_body, k, result);
        }
      }
    }
  }
}

template <class T, std::size_t N, int W>
void launch_lincomb(const cuda_context& ctx, const lincomb_args<T, N>& args) {
  static std::array<std::atomic<int>, 64> resident_cache{};
  const index_t resident = resident_blocks(lincomb_kernel<T, N, W>, elementwise_block, resident_cache);
  const index_t edge = args.cols - args.vectors * W;
  const dim3 grid = stream_grid(args.rows, std::max(args.vectors, edge), lincomb_unroll<N, W>, resident);
  lincomb_kernel<T, N, W><<<grid, elementwise_block, 0, ctx.stream()>>>(args);
  check_launch("ddm::lincomb (lincomb_kernel)");
}

template <class T, int W>
__global__ void __launch_bounds__(elementwise_block)
    fill_kernel(T* x, index_t stride, index_t rows, index_t cols, index_t head, index_t vectors, const T value) {
  constexpr int unroll = W > 1 ? 4 : 8;
  const index_t tid = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x;
  const index_t threads = static_cast<index_t>(gridDim.x) * blockDim.x;
  const index_t body_end = head + vectors * W;
  const index_t edge = head + (cols - body_end);
  pack<T, W> fill_value;
#pragma unroll
  for (int e = 0; e < W; ++e) fill_value.v[e] = value;
  for (index_t r = blockIdx.y; r < rows; r += gridDim.y) {
    T* o = x + r * stride;
    if (tid < edge) o[tid < head ? tid : body_end + (tid - head)] = value;
    T* o_body = o + head;
    for (index_t base = tid; base < vectors; base += threads * unroll) {
#pragma unroll
      for (int u = 0; u < unroll; ++u) {
        const index_t k = base + u * threads;
        if (k < vectors) store_stream<T, W>(o_body, k, fill_value);
      }
    }
  }
}

template <class T, int W>
void launch_fill(const cuda_context& ctx, batch_view<T, cuda_space> x, index_t rows, index_t cols,
                 const stream_layout& layout, T value) {
  static std::array<std::atomic<int>, 64> resident_cache{};
  const index_t resident = resident_blocks(fill_kernel<T, W>, elementwise_block, resident_cache);
  const index_t edge = cols - layout.vectors * W;
  const dim3 grid = stream_grid(rows, std::max(layout.vectors, edge), W > 1 ? 4 : 8, resident);
  fill_kernel<T, W><<<grid, elementwise_block, 0, ctx.stream()>>>(x.data(), x.stride(), rows, cols, layout.head,
                                                                   layout.vectors, value);
  check_launch("ddm::fill (fill_kernel)");
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
    const index_t rows = flat ? 1 : out.rows();
    const index_t cols = flat ? out.size() : out.cols();
    const std::array<const void*, N + 1> pointers{out.data(), x[I].data()...};
    const std::array<index_t, N + 1> strides{out.stride(), x[I].stride()...};
    const cuda::detail::stream_layout layout = cuda::detail::make_stream_layout<T>(pointers, strides, rows, cols);
    const cuda::detail::lincomb_args<T, N> args{
        out.data(), out.stride(), {x[I].data()...}, {x[I].stride()...}, {c[I]...}, rows, cols, layout.head,
        layout.vectors};
    if (layout.width > 1) {
      cuda::detail::launch_lincomb<T, N, cuda::detail::vector_width<T>>(ctx, args);
    } else {
      cuda::detail::launch_lincomb<T, N, 1>(ctx, args);
    }
  }

  template <class T>
  static void fill(const cuda_context& ctx, batch_view<T, cuda_space> x, T value) {
    const bool flat = x.is_contiguous();
    const index_t rows = flat ? 1 : x.rows();
    const index_t cols = flat ? x.size() : x.cols();
    const cuda::detail::stream_layout layout = cuda::detail::make_stream_layout<T>(
        std::array<const void*, 1>{x.data()}, std::array<index_t, 1>{x.stride()}, rows, cols);
    if (layout.width > 1) {
      cuda::detail::launch_fill<T, cuda::detail::vector_width<T>>(ctx, x, rows, cols, layout, value);
    } else {
      cuda::detail::launch_fill<T, 1>(ctx, x, rows, cols, layout, value);
    }
  }

  template <class T, class R>
  static void row_dot(const cuda_context& ctx, batch_view<const T, cuda_space> a, batch_view<const T, cuda_space> b,
                      batch_view<R, cuda_space> out) {
    cuda::detail::row_dot_kernel<false, T, R>
        <<<cuda::reduce_grid(a.rows()), cuda::reduce_block, 0, ctx.stream()>>>(
            a.data(), a.stride(), b.data(), b.stride(), a.rows(), a.cols(), out.data(), out.stride());
    cuda::check_launch("ddm::row_dot (row_dot_kernel)");
  }

  template <class T, class R>
  static void row_norm(const cuda_context& ctx, batch_view<const T, cuda_space> a, batch_view<R, cuda_space> out) {
    cuda::detail::row_dot_kernel<true, T, R>
        <<<cuda::reduce_grid(a.rows()), cuda::reduce_block, 0, ctx.stream()>>>(
            a.data(), a.stride(), a.data(), a.stride(), a.rows(), a.cols(), out.data(), out.stride());
    cuda::check_launch("ddm::row_norm (row_dot_kernel)");
  }

  template <class T>
  static double max_scaled_rms(const cuda_context& ctx, batch_view<const T, cuda_space> err,
                               batch_view<const T, cuda_space> x0, batch_view<const T, cuda_space> x1, double atol,
                               double rtol) {
    const cuda::detail::device_scalar<unsigned long long> worst(ctx);
    cuda::detail::max_scaled_rms_kernel<T>
        <<<cuda::reduce_grid(err.rows()), cuda::reduce_block, 0, ctx.stream()>>>(
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
    cuda::detail::all_finite_kernel<T><<<cuda::elementwise_grid(rows, cols), cuda::elementwise_block,
                                         0, ctx.stream()>>>(x.data(), x.stride(), rows, cols, found.get());
    cuda::check_launch("ddm::all_finite (all_finite_kernel)");
    return found.read() == 0;
  }
};

}  // namespace ddm
