#pragma once
// The message a user would read: what() of the exception of type E (any std::exception by
// default) that f() throws, or "no exception" when it throws none, so that a test of an error
// message fails on a missing throw with a readable comparison instead of passing.

#include <exception>
#include <string>
#include <utility>

namespace ddm::test {

template <class E = std::exception, class F>
[[nodiscard]] std::string error_message(F&& f) {
  try {
    std::forward<F>(f)();
  } catch (const E& e) {
    return e.what();
  }
  return "no exception";
}

}  // namespace ddm::test
