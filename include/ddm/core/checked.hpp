#pragma once
// Checked size arithmetic: the one place where a size that comes from outside the program (a
// tensor shape, an integer of a config file, a command-line flag) is multiplied or added.
//
// Wrapped size arithmetic does not fail where it happens: a product that wraps to a small number
// allocates a small buffer that later code overruns, and a product of a zero-sized dimension and
// a huge one divides by zero further on. So every such size goes through these functions, which
// check each operand before any arithmetic is done on it and report the overflow as a ddm error
// naming the caller, the quantity and the operands.

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <type_traits>

#include "ddm/core/config.hpp"
#include "ddm/core/error.hpp"

namespace ddm {

/// The largest size any ddm buffer or view may have, in elements or bytes.
inline constexpr index_t max_size = std::numeric_limits<index_t>::max();

/// a * b for sizes, or nothing when an operand is negative or the product exceeds `limit`.
[[nodiscard]] constexpr std::optional<index_t> size_product(index_t a, index_t b, index_t limit = max_size) noexcept {
  if (a < 0 || b < 0 || limit < 0) return std::nullopt;
  if (a != 0 && b > limit / a) return std::nullopt;
  return a * b;
}

/// Whether a * b (both >= 0) exceeds max_size: the check of a hot path, one multiply with
/// the overflow flag where the compiler offers it.
[[nodiscard]] constexpr bool size_product_overflows(index_t a, index_t b) noexcept {
#if (defined(__GNUC__) || defined(__clang__)) && !defined(__CUDA_ARCH__)
  index_t p = 0;
  return __builtin_mul_overflow(a, b, &p);
#else
  return a != 0 && b > max_size / a;
#endif
}

/// a + b for sizes, or nothing when an operand is negative or the sum exceeds `limit`.
[[nodiscard]] constexpr std::optional<index_t> size_sum(index_t a, index_t b, index_t limit = max_size) noexcept {
  if (a < 0 || b < 0 || limit < 0) return std::nullopt;
  if (a > limit - b) return std::nullopt;
  return a + b;
}

namespace detail {

template <class I>
concept size_operand = std::integral<I> && !std::same_as<I, bool>;

/// An integer from outside as an index_t, or nothing when it is negative or does not fit.
template <size_operand I>
[[nodiscard]] constexpr std::optional<index_t> as_size(I v) noexcept {
  if constexpr (std::is_signed_v<I>) {
    if (v < 0) return std::nullopt;
  }
  if (static_cast<std::uintmax_t>(v) > static_cast<std::uintmax_t>(max_size)) return std::nullopt;
  return static_cast<index_t>(v);
}

template <class... I>
DDM_COLD std::string size_expression(const I&... v) {
  std::string s;
  ((s += (s.empty() ? "" : " x ") + std::to_string(v)), ...);
  return s;
}

}  // namespace detail

/// The product of `factors` (each a size: non-negative), checked: an ddm::argument_error naming
/// `where`, `what` and the factors when one is negative or the product exceeds `limit`. A zero
/// factor makes the product 0 whatever the others are, but every factor must still be a valid
/// size, so that later code may divide by or allocate any one of them.
template <detail::size_operand... I>
[[nodiscard]] index_t checked_size_within(const char* where, const char* what, index_t limit, I... factors) {
  const std::optional<index_t> each[] = {detail::as_size(factors)...};
  bool ok = true;
  bool zero = false;
  for (const auto& f : each) {
    ok = ok && f.has_value();
    zero = zero || (f.has_value() && *f == 0);
  }
  index_t product = ok && zero ? 0 : 1;
  if (ok && !zero)
    for (const auto& f : each) {
      const auto p = size_product(product, *f, limit);
      if (!p) {
        ok = false;
        break;
      }
      product = *p;
    }
  if (!ok)
    throw argument_error(ddm::concat(where, ": ", what, " = ", detail::size_expression(factors...),
                                        " is not a valid size (expected non-negative factors whose product is at "
                                        "most ",
                                        limit, ")"));
  return product;
}

/// checked_size with the largest index_t as the limit.
template <detail::size_operand... I>
[[nodiscard]] index_t checked_size(const char* where, const char* what, I... factors) {
  return checked_size_within(where, what, max_size, factors...);
}

/// The sum of `terms` (each a size), checked like checked_size.
template <detail::size_operand... I>
[[nodiscard]] index_t checked_sum(const char* where, const char* what, I... terms) {
  const std::optional<index_t> each[] = {detail::as_size(terms)...};
  index_t sum = 0;
  bool ok = true;
  for (const auto& t : each) {
    const auto s = t ? size_sum(sum, *t) : std::nullopt;
    if (!s) {
      ok = false;
      break;
    }
    sum = *s;
  }
  if (!ok) {
    std::string expr;
    ((expr += (expr.empty() ? "" : " + ") + std::to_string(terms)), ...);
    throw argument_error(ddm::concat(where, ": ", what, " = ", expr,
                                        " is not a valid size (expected non-negative terms whose sum is at most ",
                                        max_size, ")"));
  }
  return sum;
}

/// The bytes of `count` values of T, checked (count >= 0, count * sizeof(T) <= max_size).
template <class T>
[[nodiscard]] std::size_t checked_bytes(const char* where, const char* what, index_t count) {
  return static_cast<std::size_t>(checked_size(where, what, count, static_cast<index_t>(sizeof(T))));
}

}  // namespace ddm
