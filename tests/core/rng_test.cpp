#include <gtest/gtest.h>

#include <cmath>

#include <ddm/core/rng.hpp>

namespace {

// Known-answer tests of Random123 (kat_vectors, philox4x32_10).
TEST(Philox, MatchesRandom123KnownAnswers) {
  struct kat {
    std::uint32_t ctr[4];
    std::uint32_t key[2];
    std::uint32_t expect[4];
  };
  const kat cases[] = {
      {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
      {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
       {0xffffffff, 0xffffffff},
       {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
      {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
       {0xa4093822, 0x299f31d0},
       {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
  };
  for (const auto& c : cases) {
    std::uint32_t ctr[4] = {c.ctr[0], c.ctr[1], c.ctr[2], c.ctr[3]};
    std::uint32_t key[2] = {c.key[0], c.key[1]};
    ddm::philox4x32::generate(ctr, key);
    for (int i = 0; i < 4; ++i) EXPECT_EQ(ctr[i], c.expect[i]) << "word " << i;
  }
}

TEST(Philox, NormalsHaveUnitMomentsAndDependOnlyOnTheIndex) {
  ddm::batch<double> x(64, 1000);
  ddm::fill_normal(ddm::host_context{}, x.view(), 42, 7);
  double s1 = 0;
  double s2 = 0;
  double s4 = 0;
  const auto n = static_cast<double>(x.size());
  for (ddm::index_t i = 0; i < x.size(); ++i) {
    const double v = x.data()[i];
    s1 += v;
    s2 += v * v;
    s4 += v * v * v * v;
  }
  // Standard errors: mean 1/sqrt(n), variance sqrt(2/n), kurtosis sqrt(96/n); 5 sigma bounds.
  EXPECT_NEAR(s1 / n, 0.0, 5 / std::sqrt(n));
  EXPECT_NEAR(s2 / n, 1.0, 5 * std::sqrt(2 / n));
  EXPECT_NEAR(s4 / n, 3.0, 5 * std::sqrt(96 / n));

  // The same element of a differently shaped or strided batch has the same value.
  ddm::batch<float> wide(1, 64 * 1000 + 8);
  const ddm::batch_view<float> row(wide.data(), 1, 64 * 1000);
  ddm::fill_normal(ddm::host_context{}, row, 42, 7);
  EXPECT_EQ(wide(0, 1000 * 5 + 3), static_cast<float>(x(5, 3)));
  EXPECT_EQ(wide(0, 64 * 1000 + 1), 0.0F);
  // Different streams and seeds differ.
  EXPECT_NE(ddm::philox4x32::normal(42, 7, 0), ddm::philox4x32::normal(42, 8, 0));
  EXPECT_NE(ddm::philox4x32::normal(42, 7, 0), ddm::philox4x32::normal(43, 7, 0));
}

TEST(Philox, UniformsLieInTheUnitInterval) {
  ddm::batch<double> u(10, 1000);
  ddm::fill_uniform(ddm::host_context{}, u.view(), 3);
  double mean = 0;
  for (ddm::index_t i = 0; i < u.size(); ++i) {
    ASSERT_GE(u.data()[i], 0.0);
    ASSERT_LT(u.data()[i], 1.0);
    mean += u.data()[i];
  }
  EXPECT_NEAR(mean / 1e4, 0.5, 5 * std::sqrt(1.0 / 12 / 1e4));
}

}  // namespace
