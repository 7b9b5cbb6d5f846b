#pragma once
// The instruction set of the host backend's own kernels (attention), chosen at run time.
//
// The library is header-only and built with whatever flags the user's project has, usually no
// -march: the 16-float vector type of attention then compiles to SSE2 (four registers per vector,
// no FMA), which made attention half of a DiT forward. The hot kernels are therefore compiled
// once more under GCC/Clang target attributes (AVX2 + FMA, AVX-512), and one function here picks,
// once per process, the widest set the CPU has. The environment variable DIT_HOST_ISA
// (portable, avx2, avx512) or dit::host::pin_isa overrides the choice, e.g. to measure the gain
// or to test every path against the portable one.
//
// Results: the AVX2 and AVX-512 paths contract a * b + c into FMAs where the portable path (in a
// build without -march) rounds twice, so they differ from it in the last bits (tests/dit/
// backend_test.cpp states and checks the bound); they perform the same operations in the same
// order as each other, and agree bit for bit.

#include <atomic>
#include <cstdlib>
#include <string>
#include <string_view>

#include <ddm/core/error.hpp>

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define DDM_DIT_X86_DISPATCH 1
#else
#define DDM_DIT_X86_DISPATCH 0
#endif

namespace dit::host {

/// The host kernels' instruction sets, narrowest first.
enum class isa { portable, avx2, avx512 };

[[nodiscard]] constexpr const char* isa_name(isa i) noexcept {
  switch (i) {
    case isa::avx2: return "avx2";
    case isa::avx512: return "avx512";
    default: return "portable";
  }
}

/// Whether this CPU (and this compiler) can run the kernels of `i`. The portable path runs
/// everywhere; the others need x86 with GCC or Clang.
[[nodiscard]] inline bool isa_supported(isa i) noexcept {
  if (i == isa::portable) return true;
#if DDM_DIT_X86_DISPATCH
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (i == isa::avx2) return avx2;
  return avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
         __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw");
#else
  return false;
#endif
}

/// The widest supported set.
[[nodiscard]] inline isa best_isa() noexcept {
  if (isa_supported(isa::avx512)) return isa::avx512;
  if (isa_supported(isa::avx2)) return isa::avx2;
  return isa::portable;
}

namespace detail {
inline isa parse_isa(std::string_view s) {
  for (const isa i : {isa::portable, isa::avx2, isa::avx512})
    if (s == isa_name(i)) return i;
  ddm::fail_argument("DIT_HOST_ISA", "value", s, "portable, avx2 or avx512");
}

inline isa checked(isa i, const char* where) {
  if (!isa_supported(i)) {
    const std::string expected =
        std::string("an instruction set this CPU supports (the widest: ") + isa_name(best_isa()) + ")";
    ddm::fail_argument(where, "isa", isa_name(i), expected.c_str());
  }
  return i;
}

// The first use reads DIT_HOST_ISA; a bad value throws there, naming it.
inline std::atomic<isa>& active_isa_slot() {
  static std::atomic<isa> slot{[] {
    const char* env = std::getenv("DIT_HOST_ISA");
    return env != nullptr && *env != '\0' ? checked(parse_isa(env), "DIT_HOST_ISA") : best_isa();
  }()};
  return slot;
}
}  // namespace detail

/// The instruction set the host kernels use now.
[[nodiscard]] inline isa active_isa() { return detail::active_isa_slot().load(std::memory_order_relaxed); }

/// Pins the host kernels to `i` (for tests and benchmarks); throws ddm::argument_error when the
/// CPU lacks it. Not meant to be called while a forward pass runs on another thread.
inline void pin_isa(isa i) {
  detail::active_isa_slot().store(detail::checked(i, "dit::host::pin_isa"), std::memory_order_relaxed);
}

}  // namespace dit::host
