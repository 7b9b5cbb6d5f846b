#pragma once
// batch_view: a non-owning (B, D) row-major view with a row stride, tagged with its memory space.
// batch: the owning counterpart, allocated through the space's memory_resource.
//
// A state of the sampler is a batch of B samples of D values each. Views of different spaces do
// not convert into one another, so passing host memory where device memory is required does not
// compile.

#include <cstddef>
#include <span>
#include <type_traits>
#include <utility>

#include "ddm/core/checked.hpp"
#include "ddm/core/config.hpp"
#include "ddm/core/error.hpp"
#include "ddm/core/memory_space.hpp"

namespace ddm {

template <class T, class Space>
class batch;

namespace detail {
template <class T, class Space>
class scratch_buffer;
}  // namespace detail

template <class T, class Space = host_space>
class batch_view {
  static_assert(memory_space<Space>, "ddm::batch_view: Space must be a memory space tag such as ddm::host_space");

 public:
  using element_type = T;
  using value_type = std::remove_cv_t<T>;
  using space = Space;

  constexpr batch_view() = default;

  /// A view of `rows` rows of `cols` values, row r starting at data + r * stride.
  constexpr batch_view(T* data, index_t rows, index_t cols, index_t stride)
      : data_(data), rows_(rows), cols_(cols), stride_(stride) {
    // One branch on the hot path (views are made on every call of every component); the cold
    // function works out which check failed.
    // rows * stride must fit: row() and operator() compute offsets up to it.
    if (rows < 0 || cols < 0 || stride < cols || (data == nullptr && rows != 0 && cols != 0) ||
        size_product_overflows(rows, stride))
      fail_(data, rows, cols, stride);
  }
  /// A contiguous view (stride == cols).
  constexpr batch_view(T* data, index_t rows, index_t cols) : batch_view(data, rows, cols, cols) {}

  /// A view of mutable data converts to a view of const data in the same space.
  template <class U>
    requires(std::is_const_v<T> && std::is_same_v<const U, T>)
  constexpr batch_view(const batch_view<U, Space>& other) noexcept  // NOLINT: implicit on purpose
      : data_(other.data()), rows_(other.rows()), cols_(other.cols()), stride_(other.stride()) {}

  [[nodiscard]] DDM_HOST_DEVICE constexpr T* data() const noexcept { return data_; }
  [[nodiscard]] DDM_HOST_DEVICE constexpr index_t rows() const noexcept { return rows_; }
  [[nodiscard]] DDM_HOST_DEVICE constexpr index_t cols() const noexcept { return cols_; }
  [[nodiscard]] DDM_HOST_DEVICE constexpr index_t stride() const noexcept { return stride_; }
  [[nodiscard]] DDM_HOST_DEVICE constexpr index_t size() const noexcept { return rows_ * cols_; }
  [[nodiscard]] constexpr bool empty() const noexcept { return rows_ == 0 || cols_ == 0; }
  /// True when the rows follow one another without gaps (the view is one flat array).
  [[nodiscard]] constexpr bool is_contiguous() const noexcept { return stride_ == cols_ || rows_ <= 1; }

  /// Pointer to the first value of row r (no access is made, so this is valid in every space).
  [[nodiscard]] DDM_HOST_DEVICE constexpr T* row(index_t r) const noexcept { return data_ + r * stride_; }

  /// Element access; host-accessible spaces only.
  [[nodiscard]] constexpr T& operator()(index_t r, index_t c) const noexcept
    requires(Space::host_accessible)
  {
    return data_[r * stride_ + c];
  }
  /// Row r as a span; host-accessible spaces only.
  [[nodiscard]] constexpr std::span<T> row_span(index_t r) const noexcept
    requires(Space::host_accessible)
  {
    return {row(r), static_cast<std::size_t>(cols_)};
  }

  /// Rows [first, first + count) as a view of the same memory.
  [[nodiscard]] constexpr batch_view subrows(index_t first, index_t count) const {
    if (first < 0 || count < 0 || first + count > rows_)
      ddm::throw_error<shape_error>("ddm::batch_view::subrows: rows [", first, ", ", first + count,
                                       ") requested, expected a range inside [0, ", rows_, ")");
    return batch_view(data_ + first * stride_, count, cols_, stride_);
  }

  [[nodiscard]] constexpr batch_view<const T, Space> as_const() const noexcept { return *this; }

 private:
  // batch's own views: its constructor has checked the sizes, so its view() can be noexcept.
  template <class, class>
  friend class batch;
  template <class, class>
  friend class detail::scratch_buffer;
  struct trusted {};
  constexpr batch_view(trusted, T* data, index_t rows, index_t cols) noexcept
      : data_(data), rows_(rows), cols_(cols), stride_(cols) {}

  [[noreturn]] static DDM_COLD void fail_(const T* data, index_t rows, index_t cols, index_t stride) {
    if (rows < 0) ddm::fail_argument<shape_error>("ddm::batch_view", "rows", rows, ">= 0");
    if (cols < 0) ddm::fail_argument<shape_error>("ddm::batch_view", "cols", cols, ">= 0");
    if (stride < cols) ddm::fail_argument<shape_error>("ddm::batch_view", "stride", stride, ">= cols");
    if (data != nullptr || rows == 0 || cols == 0)
      ddm::throw_error<shape_error>("ddm::batch_view: rows ", rows, " x stride ", stride,
                                       " overflows the index type, expected a view of addressable memory");
    ddm::fail_argument<argument_error>("ddm::batch_view", "data", "nullptr", "a valid pointer for a non-empty view");
  }

  T* data_ = nullptr;
  index_t rows_ = 0;
  index_t cols_ = 0;
  index_t stride_ = 0;
};

template <class T, class Space = host_space>
using const_batch_view = batch_view<const T, Space>;

/// Owning, contiguous (B, D) storage in `Space`. Move-only: copies are explicit (ddm::copy).
template <class T, class Space = host_space>
class batch {
  static_assert(std::is_same_v<T, std::remove_cv_t<T>>, "ddm::batch: T must not be const");

 public:
  using value_type = T;
  using space = Space;
  using context_type = execution_context<Space>;

  batch() = default;

  /// rows x cols values, zero-initialized, allocated with the default context of the space.
  batch(index_t rows, index_t cols) : batch(context_type{}, rows, cols) {}

  /// rows x cols values, zero-initialized, allocated (and later freed) through `ctx`.
  batch(const context_type& ctx, index_t rows, index_t cols) : ctx_(ctx), rows_(rows), cols_(cols) {
    if (rows < 0) ddm::fail_argument<shape_error>("ddm::batch", "rows", rows, ">= 0");
    if (cols < 0) ddm::fail_argument<shape_error>("ddm::batch", "cols", cols, ">= 0");
    const auto bytes = checked_bytes<T>("ddm::batch", "rows x cols", checked_size("ddm::batch", "rows x cols", rows, cols));
    data_ = static_cast<T*>(memory_resource<Space>::allocate(ctx_, bytes));
    memory_resource<Space>::zero(ctx_, data_, bytes);
  }

  batch(const batch&) = delete;
  batch& operator=(const batch&) = delete;
  batch(batch&& other) noexcept
      : ctx_(other.ctx_),
        data_(std::exchange(other.data_, nullptr)),
        rows_(std::exchange(other.rows_, 0)),
        cols_(std::exchange(other.cols_, 0)) {}
  batch& operator=(batch&& other) noexcept {
    if (this != &other) {
      release_();
      ctx_ = other.ctx_;
      data_ = std::exchange(other.data_, nullptr);
      rows_ = std::exchange(other.rows_, 0);
      cols_ = std::exchange(other.cols_, 0);
    }
    return *this;
  }
  ~batch() { release_(); }

  [[nodiscard]] T* data() noexcept { return data_; }
  [[nodiscard]] const T* data() const noexcept { return data_; }
  [[nodiscard]] index_t rows() const noexcept { return rows_; }
  [[nodiscard]] index_t cols() const noexcept { return cols_; }
  [[nodiscard]] index_t size() const noexcept { return rows_ * cols_; }
  [[nodiscard]] bool empty() const noexcept { return rows_ == 0 || cols_ == 0; }
  [[nodiscard]] const context_type& context() const noexcept { return ctx_; }

  [[nodiscard]] batch_view<T, Space> view() noexcept { return {typename batch_view<T, Space>::trusted{}, data_, rows_, cols_}; }
  [[nodiscard]] batch_view<const T, Space> view() const noexcept { return cview(); }
  [[nodiscard]] batch_view<const T, Space> cview() const noexcept {
    return {typename batch_view<const T, Space>::trusted{}, data_, rows_, cols_};
  }

  operator batch_view<T, Space>() noexcept { return view(); }                  // NOLINT
  operator batch_view<const T, Space>() const noexcept { return cview(); }     // NOLINT

  T& operator()(index_t r, index_t c) noexcept
    requires(Space::host_accessible)
  {
    return data_[r * cols_ + c];
  }
  const T& operator()(index_t r, index_t c) const noexcept
    requires(Space::host_accessible)
  {
    return data_[r * cols_ + c];
  }

 private:
  [[nodiscard]] std::size_t bytes_() const noexcept {
    return static_cast<std::size_t>(rows_) * static_cast<std::size_t>(cols_) * sizeof(T);
  }
  void release_() noexcept {
    if (data_ != nullptr) memory_resource<Space>::deallocate(ctx_, data_, bytes_());
    data_ = nullptr;
  }

  [[no_unique_address]] context_type ctx_{};
  T* data_ = nullptr;
  index_t rows_ = 0;
  index_t cols_ = 0;
};

namespace detail {
template <class X>
struct view_of;
template <class T, class S>
struct view_of<batch_view<T, S>> {
  using type = batch_view<T, S>;
};
template <class T, class S>
struct view_of<batch<T, S>> {
  using type = batch_view<T, S>;
};
}  // namespace detail

/// Anything that is a batch_view or a batch (of any constness).
template <class X>
concept batch_like = requires { typename detail::view_of<std::remove_cvref_t<X>>::type; };

/// The view type of a batch_like argument, const-qualified.
template <batch_like X>
using const_view_t = batch_view<const typename detail::view_of<std::remove_cvref_t<X>>::type::value_type,
                                typename detail::view_of<std::remove_cvref_t<X>>::type::space>;

/// A const view of any batch_like value.
template <batch_like X>
[[nodiscard]] constexpr const_view_t<X> cview(const X& x) noexcept {
  if constexpr (requires { x.cview(); }) {
    return x.cview();
  } else {
    return x.as_const();
  }
}

/// Views of the same shape? (rows and cols equal; strides may differ)
template <class A, class SA, class B, class SB>
[[nodiscard]] constexpr bool same_shape(const batch_view<A, SA>& a, const batch_view<B, SB>& b) noexcept {
  return a.rows() == b.rows() && a.cols() == b.cols();
}

// Shape checks with ddm's messages, for any code that takes batches (public, like concat).
template <class A, class B, class S>
void require_same_shape(const char* where, const char* name, const batch_view<A, S>& got,
                        const batch_view<B, S>& expected_like) {
  if (!same_shape(got, expected_like))
    throw_error<shape_error>(where, ": argument '", name, "' has shape (", got.rows(), ", ", got.cols(),
                             "), expected (", expected_like.rows(), ", ", expected_like.cols(), ")");
}
template <class A, class S>
void require_shape(const char* where, const char* name, const batch_view<A, S>& got, index_t rows,
                   index_t cols) {
  if (got.rows() != rows || got.cols() != cols)
    throw_error<shape_error>(where, ": argument '", name, "' has shape (", got.rows(), ", ", got.cols(),
                             "), expected (", rows, ", ", cols, ")");
}
template <class A, class S>
void require_non_empty(const char* where, const char* name, const batch_view<A, S>& v) {
  if (v.empty())
    throw_error<empty_batch_error>(where, ": argument '", name, "' is an empty batch of shape (", v.rows(),
                                   ", ", v.cols(), "), expected at least one row and one column");
}

}  // namespace ddm
