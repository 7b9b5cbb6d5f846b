#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <type_traits>

#include <ddm/core/batch.hpp>

namespace {

using ddm::batch;
using ddm::batch_view;

TEST(BatchView, StridedRowsAddressTheRightMemory) {
  float data[12];
  for (int i = 0; i < 12; ++i) data[i] = static_cast<float>(i);
  const batch_view<float> v(data, 3, 2, 4);  // 3 rows of 2 values, rows 4 apart
  EXPECT_EQ(v.rows(), 3);
  EXPECT_EQ(v.cols(), 2);
  EXPECT_EQ(v.size(), 6);
  EXPECT_FALSE(v.is_contiguous());
  EXPECT_EQ(v(2, 1), 9.0F);
  EXPECT_EQ(v.row(1), data + 4);
  const auto sub = v.subrows(1, 2);
  EXPECT_EQ(sub.rows(), 2);
  EXPECT_EQ(sub(0, 0), 4.0F);
  EXPECT_EQ(sub.row_span(1).size(), 2U);
}

TEST(BatchView, MutableConvertsToConstButNotBack) {
  static_assert(std::is_convertible_v<batch_view<float>, batch_view<const float>>);
  static_assert(!std::is_convertible_v<batch_view<const float>, batch_view<float>>);
  static_assert(!std::is_convertible_v<batch_view<float>, batch_view<double>>);
}

TEST(BatchView, SpacesDoNotConvert) {
  static_assert(!std::is_convertible_v<batch_view<float, ddm::host_space>, batch_view<float, ddm::cuda_space>>);
  static_assert(!std::is_convertible_v<batch_view<float, ddm::cuda_space>, batch_view<float, ddm::host_space>>);
  static_assert(!std::is_constructible_v<batch_view<float, ddm::cuda_space>, batch_view<float, ddm::host_space>>);
}

TEST(BatchView, BadShapesAreRejectedWithTheirValues) {
  float data[4];
  EXPECT_THROW(batch_view<float>(data, -1, 2), ddm::shape_error);
  try {
    (void)batch_view<float>(data, 2, 3, 2);
    FAIL() << "stride < cols accepted";
  } catch (const ddm::shape_error& e) {
    EXPECT_STREQ(e.what(), "ddm::batch_view: argument 'stride' = 2, expected >= cols");
  }
  EXPECT_THROW(batch_view<float>(nullptr, 2, 2), ddm::argument_error);
  const batch_view<float> v(data, 2, 2);
  EXPECT_THROW((void)v.subrows(1, 2), ddm::shape_error);
}

TEST(Batch, OwnsZeroedContiguousAlignedStorageAndMoves) {
  batch<double> b(5, 7);
  EXPECT_EQ(b.rows(), 5);
  EXPECT_EQ(b.cols(), 7);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(b.data()) % 64, 0U);
  for (ddm::index_t r = 0; r < 5; ++r)
    for (ddm::index_t c = 0; c < 7; ++c) EXPECT_EQ(b(r, c), 0.0);
  b(4, 6) = 3.0;
  batch<double> moved(std::move(b));
  EXPECT_EQ(moved(4, 6), 3.0);
  EXPECT_EQ(b.data(), nullptr);  // NOLINT(bugprone-use-after-move): the moved-from state is specified
  const batch_view<const double> view = moved;
  EXPECT_EQ(view(4, 6), 3.0);
  EXPECT_TRUE(view.is_contiguous());
}

TEST(Batch, ErrorsDeriveFromBothHierarchies) {
  try {
    batch<float> bad(-2, 3);
    FAIL();
  } catch (const ddm::error& e) {
    EXPECT_NE(std::string(e.message()).find("'rows' = -2"), std::string::npos);
  }
  EXPECT_THROW(batch<float>(2, -3), std::invalid_argument);
}

}  // namespace

// Sizes from outside (a flag, a shape) reach batch unchecked; a product that wrapped would
// allocate a few bytes and be overrun (rows * cols * sizeof(float) = 2^61 * 4 * 4 wraps to 0).
TEST(Batch, SizesWhoseByteCountOverflowsAreRejectedBeforeAllocating) {
  constexpr ddm::index_t huge = ddm::index_t{1} << 61;
  EXPECT_THROW((batch<float>(huge, 4)), ddm::argument_error);
  EXPECT_THROW((batch<float>(4, huge)), ddm::argument_error);
  EXPECT_THROW((batch<double>(ddm::max_size, ddm::max_size)), ddm::argument_error);
  try {
    batch<float> b(huge, 4);
    FAIL() << "no exception";
  } catch (const ddm::argument_error& e) {
    EXPECT_NE(std::string(e.what()).find("ddm::batch"), std::string::npos) << e.what();
  }
  const batch<float> empty(huge, 0);  // zero values: a valid empty batch
  EXPECT_TRUE(empty.empty());
}

TEST(BatchView, RowOffsetsThatOverflowTheIndexTypeAreRejected) {
  float data[4] = {};
  EXPECT_THROW((batch_view<float>(data, ddm::index_t{1} << 62, 4)), ddm::shape_error);
  EXPECT_NO_THROW((batch_view<float>(nullptr, ddm::index_t{1} << 62, 0)));
}

TEST(CheckedSize, ProductsSumsAndBytesFailWithTheirOperands) {
  EXPECT_EQ(ddm::checked_size("t", "n", 3, 4, 5), 60);
  EXPECT_EQ(ddm::checked_size("t", "n", std::uint64_t{1} << 40, 0, std::uint64_t{1} << 40), 0);
  EXPECT_EQ(ddm::checked_size("t", "n", ddm::max_size, 1), ddm::max_size);
  EXPECT_THROW((void)ddm::checked_size("t", "n", ddm::max_size, 2), ddm::argument_error);
  EXPECT_THROW((void)ddm::checked_size("t", "n", -1, 0), ddm::argument_error);  // a negative size, even times 0
  EXPECT_THROW((void)ddm::checked_size("t", "n", ~std::uint64_t{0}, 0), ddm::argument_error);  // beyond index_t
  EXPECT_THROW((void)ddm::checked_size_within("t", "n", 100, 11, 10), ddm::argument_error);  // limit 100
  EXPECT_EQ(ddm::checked_size_within("t", "n", 100, 10, 10), 100);
  EXPECT_EQ(ddm::checked_sum("t", "n", 1, 2, 3), 6);
  EXPECT_THROW((void)ddm::checked_sum("t", "n", ddm::max_size, 1), ddm::argument_error);
  EXPECT_EQ(ddm::checked_bytes<double>("t", "n", 3), 24U);
  EXPECT_THROW((void)ddm::checked_bytes<double>("t", "n", ddm::max_size / 4), ddm::argument_error);
  try {
    (void)ddm::checked_size("where", "rows x cols", ddm::max_size, 3);
    FAIL() << "no exception";
  } catch (const ddm::argument_error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("where: rows x cols = 9223372036854775807 x 3"), std::string::npos) << m;
  }
}
