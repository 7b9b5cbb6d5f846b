// Conversions between float and the 16-bit checkpoint formats, against hand-computed values and
// against an independent nearest-value search over every representable 16-bit value.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include <ddm/io/float16.hpp>

namespace {

using ddm::io::bf16_to_float;
using ddm::io::f16_to_float;
using ddm::io::float_to_bf16;
using ddm::io::float_to_f16;

bool is_nan16(std::uint16_t bits, bool bf16) {
  return bf16 ? ((bits & 0x7f80u) == 0x7f80u && (bits & 0x7fu) != 0)
              : ((bits & 0x7c00u) == 0x7c00u && (bits & 0x3ffu) != 0);
}

TEST(Float16, WideningIsExactOnHandComputedValues) {
  EXPECT_EQ(bf16_to_float(0x3f80), 1.0f);
  EXPECT_EQ(bf16_to_float(0xc000), -2.0f);
  EXPECT_EQ(bf16_to_float(0x3f81), 1.0f + 0x1p-7f);
  EXPECT_EQ(bf16_to_float(0x0001), 0x1p-133f);  // smallest bf16 subnormal
  EXPECT_EQ(bf16_to_float(0x7f80), std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(bf16_to_float(0x7fc0)));

  EXPECT_EQ(f16_to_float(0x3c00), 1.0f);
  EXPECT_EQ(f16_to_float(0xc000), -2.0f);
  EXPECT_EQ(f16_to_float(0x7bff), 65504.0f);           // largest finite
  EXPECT_EQ(f16_to_float(0x0400), 0x1p-14f);           // smallest normal
  EXPECT_EQ(f16_to_float(0x0001), 0x1p-24f);           // smallest subnormal
  EXPECT_EQ(f16_to_float(0x03ff), 1023.0f * 0x1p-24f); // largest subnormal
  EXPECT_EQ(f16_to_float(0x8001), -0x1p-24f);
  EXPECT_EQ(std::bit_cast<std::uint32_t>(f16_to_float(0x8000)), 0x80000000u);  // -0 keeps its sign
  EXPECT_EQ(f16_to_float(0xfc00), -std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(f16_to_float(0x7e00)));
  EXPECT_TRUE(std::isnan(f16_to_float(0x7c01)));  // signalling NaN stays a NaN, not infinity
}

TEST(Float16, Bf16NarrowingRoundsToNearestEven) {
  // bf16 keeps 7 mantissa bits: the spacing at 1 is 2^-7.
  EXPECT_EQ(float_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(float_to_bf16(1.0f + 0x1p-8f), 0x3f80);                  // tie -> even (1.0)
  EXPECT_EQ(float_to_bf16(1.0f + 3 * 0x1p-8f), 0x3f82);              // tie -> even (1 + 2^-6)
  EXPECT_EQ(float_to_bf16(1.0f + 0x1p-8f + 0x1p-20f), 0x3f81);       // above the tie -> up
  EXPECT_EQ(float_to_bf16(1.0f + 0x1p-8f - 0x1p-20f), 0x3f80);       // below the tie -> down
  EXPECT_EQ(float_to_bf16(-1.0f - 3 * 0x1p-8f), 0xbf82);             // symmetric for negatives
  EXPECT_EQ(float_to_bf16(std::numeric_limits<float>::max()), 0x7f80);  // rounds up to infinity
  EXPECT_EQ(float_to_bf16(-0.0f), 0x8000);
  EXPECT_TRUE(is_nan16(float_to_bf16(std::numeric_limits<float>::quiet_NaN()), true));
  // A NaN whose payload lives only in the low 16 bits must not become infinity.
  EXPECT_TRUE(is_nan16(float_to_bf16(std::bit_cast<float>(0x7f800001u)), true));
}

TEST(Float16, F16NarrowingRoundsToNearestEven) {
  // binary16 keeps 10 mantissa bits: the spacing at 1 is 2^-10.
  EXPECT_EQ(float_to_f16(1.0f), 0x3c00);
  EXPECT_EQ(float_to_f16(1.0f + 0x1p-11f), 0x3c00);              // tie -> even
  EXPECT_EQ(float_to_f16(1.0f + 3 * 0x1p-11f), 0x3c02);          // tie -> even
  EXPECT_EQ(float_to_f16(1.0f + 0x1p-11f + 0x1p-20f), 0x3c01);
  EXPECT_EQ(float_to_f16(65504.0f), 0x7bff);
  EXPECT_EQ(float_to_f16(65519.0f), 0x7bff);                      // below the tie at 65520
  EXPECT_EQ(float_to_f16(65520.0f), 0x7c00);                      // tie -> even = 2^16 = infinity
  EXPECT_EQ(float_to_f16(-1e10f), 0xfc00);
  EXPECT_EQ(float_to_f16(0x1p-14f), 0x0400);                      // smallest normal
  EXPECT_EQ(float_to_f16(0x1p-14f - 0x1p-25f), 0x0400);           // tie between 0x03ff and 0x0400 -> even
  EXPECT_EQ(float_to_f16(0x1p-24f), 0x0001);                      // smallest subnormal
  EXPECT_EQ(float_to_f16(0x1p-25f), 0x0000);                      // tie between 0 and 2^-24 -> even (0)
  EXPECT_EQ(float_to_f16(0x1p-25f + 0x1p-40f), 0x0001);           // just above that tie
  EXPECT_EQ(float_to_f16(3 * 0x1p-25f), 0x0002);                  // 1.5 * 2^-24: tie -> even (2)
  EXPECT_EQ(float_to_f16(5 * 0x1p-25f), 0x0002);                  // 2.5 * 2^-24: tie -> even (2)
  EXPECT_EQ(float_to_f16(-0x1p-24f), 0x8001);
  EXPECT_EQ(float_to_f16(1e-30f), 0x0000);
  EXPECT_EQ(float_to_f16(-1e-30f), 0x8000);
  EXPECT_TRUE(is_nan16(float_to_f16(std::numeric_limits<float>::quiet_NaN()), false));
  EXPECT_TRUE(is_nan16(float_to_f16(std::bit_cast<float>(0x7f800001u)), false));
}

TEST(Float16, EveryValueRoundTrips) {
  for (std::uint32_t b = 0; b < 0x10000u; ++b) {
    const auto bits = static_cast<std::uint16_t>(b);
    if (!is_nan16(bits, false)) {
      ASSERT_EQ(float_to_f16(f16_to_float(bits)), bits) << "f16 bits " << b;
    }
    if (!is_nan16(bits, true)) {
      ASSERT_EQ(float_to_bf16(bf16_to_float(bits)), bits) << "bf16 bits " << b;
    }
  }
}

// Nearest representable value by search over the sorted finite values, ties to the even
// (lowest-bit-zero) encoding: an implementation that shares nothing with the bit tricks.
std::uint16_t nearest_by_search(float x, bool bf16) {
  static const auto table = [] {
    std::vector<std::pair<double, std::uint16_t>> t[2];
    for (std::uint32_t b = 0; b < 0x8000u; ++b) {  // non-negative encodings
      const auto bits = static_cast<std::uint16_t>(b);
      for (int k = 0; k < 2; ++k) {
        const float f = k ? bf16_to_float(bits) : f16_to_float(bits);
        if (std::isfinite(f)) t[k].emplace_back(f, bits);
      }
    }
    for (auto& v : t) std::sort(v.begin(), v.end());
    return std::array<std::vector<std::pair<double, std::uint16_t>>, 2>{t[0], t[1]};
  }();
  const auto& t = table[bf16 ? 1 : 0];
  const double a = std::abs(static_cast<double>(x));
  const std::uint16_t sign = std::signbit(x) ? 0x8000 : 0;
  const double largest = t.back().first;
  const double spacing_at_top = largest - t[t.size() - 2].first;
  if (a >= largest + spacing_at_top / 2) return static_cast<std::uint16_t>(sign | (bf16 ? 0x7f80 : 0x7c00));
  auto hi = std::lower_bound(t.begin(), t.end(), std::make_pair(a, std::uint16_t{0}));
  if (hi == t.end()) return static_cast<std::uint16_t>(sign | t.back().second);
  if (hi->first == a || hi == t.begin()) return static_cast<std::uint16_t>(sign | hi->second);
  const auto lo = hi - 1;
  const double dl = a - lo->first;
  const double dh = hi->first - a;
  const auto pick = dl < dh ? lo->second : dh < dl ? hi->second : ((lo->second & 1u) == 0 ? lo->second : hi->second);
  return static_cast<std::uint16_t>(sign | pick);
}

TEST(Float16, NarrowingMatchesNearestValueSearch) {
  std::mt19937 gen(7);
  std::uniform_int_distribution<std::uint32_t> exponent(90, 150);  // around both formats' ranges
  std::uniform_int_distribution<std::uint32_t> mantissa(0, 0x7fffff);
  std::uniform_int_distribution<std::uint32_t> sign(0, 1);
  int checked = 0;
  for (int i = 0; i < 200000; ++i) {
    const std::uint32_t u = (sign(gen) << 31) | (exponent(gen) << 23) | mantissa(gen);
    const float x = std::bit_cast<float>(u);
    ASSERT_EQ(float_to_f16(x), nearest_by_search(x, false)) << "x = " << x;
    ++checked;
  }
  std::uniform_int_distribution<std::uint32_t> any_exponent(0, 254);
  for (int i = 0; i < 200000; ++i) {
    const std::uint32_t u = (sign(gen) << 31) | (any_exponent(gen) << 23) | mantissa(gen);
    const float x = std::bit_cast<float>(u);
    ASSERT_EQ(float_to_bf16(x), nearest_by_search(x, true)) << "x = " << x;
    ++checked;
  }
  std::printf("[ measured ] %d random floats narrowed exactly as the nearest-value search\n", checked);
}

}  // namespace
