#pragma once
// ddm's exception types. Each derives from the standard exception that fits (so existing
// handlers keep working) and from ddm::error (so one handler catches everything ddm throws).
// Messages name the argument, its value and what was expected.

#include <sstream>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>

#include "ddm/core/config.hpp"

namespace ddm {

/// Common base of every exception ddm throws; catch `const ddm::error&` to handle them all.
class error {
 public:
  virtual ~error() = default;
  [[nodiscard]] virtual const char* message() const noexcept = 0;
};

namespace detail {
template <class Std>
class error_impl : public Std, public error {
 public:
  explicit error_impl(const std::string& what) : Std(what) {}
  [[nodiscard]] const char* message() const noexcept override { return Std::what(); }
};
}  // namespace detail

/// An argument has the wrong value (a step count of 0, a probability outside (0, 1], ...).
class argument_error : public detail::error_impl<std::invalid_argument> {
  using error_impl::error_impl;
};
/// Two operands that must agree in shape do not.
class shape_error : public argument_error {
  using argument_error::argument_error;
};
/// A batch with no rows or no columns where data is required.
class empty_batch_error : public argument_error {
  using argument_error::argument_error;
};
/// A time schedule that is not strictly decreasing inside [0, 1] (or does not end where asked).
class schedule_error : public argument_error {
  using argument_error::argument_error;
};
/// A NaN or infinity appeared in a computed quantity (velocity, logits, ...).
class non_finite_error : public detail::error_impl<std::runtime_error> {
 public:
  non_finite_error(const std::string& what, long step, double t)
      : error_impl(what), step_(step), t_(t) {}
  explicit non_finite_error(const std::string& what) : error_impl(what) {}
  /// The sampler step where the value appeared (-1 when not known).
  [[nodiscard]] long step() const noexcept { return step_; }
  /// The time of the evaluation that produced it (NaN when not known).
  [[nodiscard]] double time() const noexcept { return t_; }

 private:
  long step_ = -1;
  double t_ = std::numeric_limits<double>::quiet_NaN();
};
/// Reading or writing a file failed, or a file's content is malformed.
class io_error : public detail::error_impl<std::runtime_error> {
  using error_impl::error_impl;
};
/// A call into a device runtime or library (CUDA, cuBLAS) failed.
class device_error : public detail::error_impl<std::runtime_error> {
  using error_impl::error_impl;
};

// The message helpers every ddm check uses, public so that users' experts, routers and tools
// report bad input in the same form ("where: argument 'name' = value, expected what").

/// The parts streamed into one string (doubles at full precision).
template <class... Parts>
std::string concat(const Parts&... parts) {
  std::ostringstream os;
  os.precision(17);
  (os << ... << parts);
  return os.str();
}

/// Throws Error with the parts of its message concatenated. Out of line and cold: a check is
/// `if (bad) throw_error<shape_error>(...)`, whose hot path is the comparison alone.
template <class Error, class... Parts>
[[noreturn]] DDM_COLD void throw_error(const Parts&... parts) {
  throw Error(concat(parts...));
}

/// "where: argument 'name' = value, expected what"
template <class Error = argument_error, class Value>
[[noreturn]] DDM_COLD void fail_argument(const char* where, const char* name, const Value& value,
                                         const char* expected) {
  throw Error(concat(where, ": argument '", name, "' = ", value, ", expected ", expected));
}

}  // namespace ddm
