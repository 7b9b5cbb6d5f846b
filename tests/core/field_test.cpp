#include <gtest/gtest.h>

#include <span>

#include <ddm/core/field.hpp>

#include "support/gaussian_flow.hpp"

namespace {

TEST(VelocityField, ConceptAcceptsFieldsAndRejectsOtherCallables) {
  auto lambda = [](ddm::batch_view<const float>, double, ddm::batch_view<float>) {};
  static_assert(ddm::velocity_field<decltype(lambda), float>);
  static_assert(!ddm::velocity_field<decltype(lambda), double>);
  static_assert(!ddm::velocity_field<decltype(lambda), float, ddm::cuda_space>);
  static_assert(ddm::velocity_field<ddm::test::gaussian_flow, double>);
  static_assert(ddm::has_jvp<ddm::test::gaussian_flow, double>);
  static_assert(!ddm::has_vjp<ddm::test::gaussian_flow, double>);
  auto wrong = [](float x) { return x; };
  static_assert(!ddm::velocity_field<decltype(wrong), float>);
}

TEST(VelocityField, PerSampleAdapterCallsOncePerRow) {
  int calls = 0;
  auto f = ddm::per_sample([&](std::span<const double> x, double t, std::span<double> v) {
    ++calls;
    for (std::size_t i = 0; i < x.size(); ++i) v[i] = t * x[i];
  });
  static_assert(ddm::velocity_field<decltype(f), double>);
  ddm::batch<double> x(3, 2);
  ddm::batch<double> v(3, 2);
  x(2, 1) = 4;
  f(x.cview(), 0.5, v.view());
  EXPECT_EQ(calls, 3);
  EXPECT_EQ(v(2, 1), 2.0);
  ddm::batch<double> wrong(2, 2);
  EXPECT_THROW(f(x.cview(), 0.5, wrong.view()), ddm::shape_error);
}

}  // namespace
