#pragma once
// Workspace buffers that components keep between calls, so that a field evaluated again and
// again on batches of the same shape allocates only on its first call.

#include <algorithm>
#include <type_traits>

#include "ddm/core/batch.hpp"
#include "ddm/core/checked.hpp"
#include "ddm/core/config.hpp"
#include "ddm/core/error.hpp"
#include "ddm/core/memory_space.hpp"

namespace ddm::detail {

/// Contiguous storage that grows when asked for more than it holds and is never shrunk. A copy
/// starts empty: workspace is not state, so copying the component that owns it stays cheap and
/// possible.
template <class T, class Space = host_space>
class scratch_buffer {
 public:
  scratch_buffer() = default;
  scratch_buffer(const scratch_buffer& /*other*/) noexcept {}
  scratch_buffer& operator=(const scratch_buffer& /*other*/) noexcept { return *this; }
  scratch_buffer(scratch_buffer&&) noexcept = default;
  scratch_buffer& operator=(scratch_buffer&&) noexcept = default;
  ~scratch_buffer() = default;

  /// A contiguous (rows, cols) view; reallocates only when rows * cols exceeds the capacity.
  /// The content is unspecified (whatever the previous use left).
  [[nodiscard]] batch_view<T, Space> get(const execution_context<Space>& ctx, index_t rows, index_t cols) {
    if (rows < 0 || cols < 0 || size_product_overflows(rows, cols)) fail_(rows, cols);
    const index_t need = rows * cols;
    if (need > storage_.size()) storage_ = batch<T, Space>(ctx, 1, std::max<index_t>(need, 1));
    // The shape is checked and the storage holds it: the view needs no checks of its own (the
    // components call get() several times per call, small batches feel it).
    return batch_view<T, Space>(typename batch_view<T, Space>::trusted{}, storage_.data(), rows, cols);
  }

  [[nodiscard]] index_t capacity() const noexcept { return storage_.size(); }

 private:
  [[noreturn]] static DDM_COLD void fail_(index_t rows, index_t cols) {
    ddm::throw_error<shape_error>("ddm::detail::scratch_buffer: shape (", rows, ", ", cols,
                                  ") requested, expected non-negative sizes whose product fits the index type");
  }

  batch<T, Space> storage_;
};

/// One scratch buffer for float and one for double, for components whose call operator is a
/// template on the value type.
template <class Space = host_space>
class typed_scratch {
 public:
  template <class T>
  [[nodiscard]] batch_view<T, Space> get(const execution_context<Space>& ctx, index_t rows, index_t cols) {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                  "ddm: host fields work in float or double");
    if constexpr (std::is_same_v<T, float>) {
      return f_.get(ctx, rows, cols);
    } else {
      return d_.get(ctx, rows, cols);
    }
  }

 private:
  scratch_buffer<float, Space> f_;
  scratch_buffer<double, Space> d_;
};

}  // namespace ddm::detail
