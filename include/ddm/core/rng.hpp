#pragma once
// A counter-based generator (Philox 4x32-10, Salmon et al., SC'11) shared by host and device code.
//
// A counter-based generator has no sequential state: the value at (key, counter) is a pure
// function, so element n of a noise batch depends only on the seed, a stream id and n. The host
// and the CUDA fill of the same batch therefore produce the same numbers, whatever the thread
// layout, and runs compare sample by sample.
//
// Normal variates: element n of stream s uses block n / 2 (counter = {n/2 low, n/2 high, s low,
// s high}). The four 32-bit outputs make two 53-bit uniforms u1 in (0, 1], u2 in [0, 1), and the
// Box-Muller pair sqrt(-2 log u1) (cos 2 pi u2, sin 2 pi u2), computed in double; element n takes
// the cosine when n is even and the sine when it is odd.

#include <array>
#include <cmath>
#include <cstdint>

#include "ddm/core/algebra.hpp"
#include "ddm/core/batch.hpp"
#include "ddm/core/config.hpp"

namespace ddm {

struct philox4x32 {
  using counter_type = std::array<std::uint32_t, 4>;
  using key_type = std::array<std::uint32_t, 2>;

  static constexpr std::uint32_t m0 = 0xD2511F53u;
  static constexpr std::uint32_t m1 = 0xCD9E8D57u;
  static constexpr std::uint32_t w0 = 0x9E3779B9u;  // golden ratio
  static constexpr std::uint32_t w1 = 0xBB67AE85u;  // sqrt(3) - 1

  /// Ten rounds of Philox4x32 on `ctr` with `key`.
  DDM_HOST_DEVICE static constexpr void generate(std::uint32_t ctr[4], std::uint32_t key[2]) noexcept {
    std::uint32_t k0 = key[0];
    std::uint32_t k1 = key[1];
    for (int round = 0; round < 10; ++round) {
      const std::uint64_t p0 = static_cast<std::uint64_t>(m0) * ctr[0];
      const std::uint64_t p1 = static_cast<std::uint64_t>(m1) * ctr[2];
      const auto hi0 = static_cast<std::uint32_t>(p0 >> 32);
      const auto lo0 = static_cast<std::uint32_t>(p0);
      const auto hi1 = static_cast<std::uint32_t>(p1 >> 32);
      const auto lo1 = static_cast<std::uint32_t>(p1);
      const std::uint32_t c0 = hi1 ^ ctr[1] ^ k0;
      const std::uint32_t c1 = lo1;
      const std::uint32_t c2 = hi0 ^ ctr[3] ^ k1;
      const std::uint32_t c3 = lo0;
      ctr[0] = c0;
      ctr[1] = c1;
      ctr[2] = c2;
      ctr[3] = c3;
      k0 += w0;
      k1 += w1;
    }
  }

  /// The block for (seed, stream, block index).
  DDM_HOST_DEVICE static constexpr void block(std::uint64_t seed, std::uint64_t stream, std::uint64_t index,
                                              std::uint32_t out[4]) noexcept {
    out[0] = static_cast<std::uint32_t>(index);
    out[1] = static_cast<std::uint32_t>(index >> 32);
    out[2] = static_cast<std::uint32_t>(stream);
    out[3] = static_cast<std::uint32_t>(stream >> 32);
    std::uint32_t key[2] = {static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32)};
    generate(out, key);
  }

  /// 53-bit uniform in [0, 1) from two 32-bit words.
  DDM_HOST_DEVICE static constexpr double uniform53(std::uint32_t hi, std::uint32_t lo) noexcept {
    const std::uint64_t bits = (static_cast<std::uint64_t>(hi) << 21) ^ (lo >> 11);  // 53 bits
    return static_cast<double>(bits & ((std::uint64_t{1} << 53) - 1)) * 0x1.0p-53;
  }

  /// Standard normal variate number n of (seed, stream).
  DDM_HOST_DEVICE static double normal(std::uint64_t seed, std::uint64_t stream, std::uint64_t n) noexcept {
    std::uint32_t r[4];
    block(seed, stream, n >> 1, r);
    const double u1 = 1.0 - uniform53(r[0], r[1]);  // (0, 1]: log is finite
    const double u2 = uniform53(r[2], r[3]);
    const double radius = std::sqrt(-2.0 * std::log(u1));
    constexpr double two_pi = 6.283185307179586476925286766559;
    return (n & 1u) == 0 ? radius * std::cos(two_pi * u2) : radius * std::sin(two_pi * u2);
  }

  /// Uniform variate in [0, 1) number n of (seed, stream).
  DDM_HOST_DEVICE static constexpr double uniform(std::uint64_t seed, std::uint64_t stream,
                                                  std::uint64_t n) noexcept {
    std::uint32_t r[4];
    block(seed, stream, n >> 1, r);
    return (n & 1u) == 0 ? uniform53(r[0], r[1]) : uniform53(r[2], r[3]);
  }
};

/// Fill x with standard normal noise: x(r, c) = philox normal number r * cols + c of (seed, stream).
/// The value of an element does not depend on the view's stride or on the backend.
template <class T>
void fill_normal(const host_context& /*ctx*/, batch_view<T> x, std::uint64_t seed, std::uint64_t stream = 0) {
  for (index_t r = 0; r < x.rows(); ++r) {
    T* p = x.row(r);
    const auto base = static_cast<std::uint64_t>(r) * static_cast<std::uint64_t>(x.cols());
    for (index_t c = 0; c < x.cols(); ++c)
      p[c] = static_cast<T>(philox4x32::normal(seed, stream, base + static_cast<std::uint64_t>(c)));
  }
}

/// Fill x with uniform [0, 1) values, indexed like fill_normal.
template <class T>
void fill_uniform(const host_context& /*ctx*/, batch_view<T> x, std::uint64_t seed, std::uint64_t stream = 0) {
  for (index_t r = 0; r < x.rows(); ++r) {
    T* p = x.row(r);
    const auto base = static_cast<std::uint64_t>(r) * static_cast<std::uint64_t>(x.cols());
    for (index_t c = 0; c < x.cols(); ++c)
      p[c] = static_cast<T>(philox4x32::uniform(seed, stream, base + static_cast<std::uint64_t>(c)));
  }
}

}  // namespace ddm
