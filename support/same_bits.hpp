#pragma once
// Whether two batches hold the same bits (shape and every value, NaN payloads and the sign of
// zero included): the check of the tests that say "the same result", not "a close one".

#include <cstddef>
#include <cstring>

#include <ddm/core/batch.hpp>

namespace ddm::test {

template <class T>
[[nodiscard]] bool same_bits(ddm::batch_view<const T> a, ddm::batch_view<const T> b) {
  if (a.rows() != b.rows() || a.cols() != b.cols()) return false;
  for (ddm::index_t r = 0; r < a.rows(); ++r)
    if (std::memcmp(a.row(r), b.row(r), sizeof(T) * static_cast<std::size_t>(a.cols())) != 0) return false;
  return true;
}

}  // namespace ddm::test
