#pragma once
// The one matrix product every network of the fashion DDMs is made of, y = x W^T (+ beta y), as
// PyTorch's Linear stores W: (out, in) row-major. Through the CBLAS the build found (OpenBLAS on
// Debian), which runs its own threads; the sizes are checked here so that a caller's mistake is an
// error naming the operands, not a read past a buffer.

#include <cblas.h>

#include <cstddef>
#include <limits>

#include <ddm/core/batch.hpp>
#include <ddm/core/error.hpp>

namespace fashion {

using ddm::index_t;

inline int blas_int(const char* where, const char* what, index_t v) {
  if (v < 0 || v > std::numeric_limits<int>::max())
    ddm::fail_argument(where, what, v, "a size that fits the BLAS's int");
  return static_cast<int>(v);
}

/// y (B, out) = x (B, in) W^T + beta y, with W (out, in) row-major and contiguous.
inline void linear_no_bias(ddm::batch_view<const float> x, const float* w, index_t out, index_t in,
                           ddm::batch_view<float> y, float beta = 0.0f) {
  constexpr const char* where = "fashion::linear";
  if (x.cols() != in || y.cols() != out || y.rows() != x.rows())
    ddm::throw_error<ddm::shape_error>(where, ": x is (", x.rows(), ", ", x.cols(), "), y is (", y.rows(), ", ",
                                               y.cols(), "), expected x (B, ", in, ") and y (B, ", out, ")");
  if (x.rows() == 0) return;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, blas_int(where, "rows", x.rows()),
              blas_int(where, "out", out), blas_int(where, "in", in), 1.0f, x.data(),
              blas_int(where, "x.stride", x.stride()), w, blas_int(where, "in", in), beta, y.data(),
              blas_int(where, "y.stride", y.stride()));
}

}  // namespace fashion
