// The safetensors reader: round trips, conversions, alignment, and one test per rule of the
// format that a malformed file can break. Every rejection must name the file (and the tensor
// where there is one) and the problem.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <ddm/io/safetensors.hpp>
#include <ddm/io/safetensors_writer.hpp>

#if defined(__unix__) || defined(__APPLE__)
#include <sys/stat.h>
#endif

namespace {

namespace io = ddm::io;
using bytes = std::vector<std::byte>;

// A file from a header text and a data buffer; `declared` overrides the length field.
bytes make_file(const std::string& header, const bytes& data = {}, std::int64_t declared = -1) {
  const std::uint64_t n = declared < 0 ? header.size() : static_cast<std::uint64_t>(declared);
  bytes out(8 + header.size() + data.size());
  std::memcpy(out.data(), &n, 8);
  std::memcpy(out.data() + 8, header.data(), header.size());
  if (!data.empty()) std::memcpy(out.data() + 8 + header.size(), data.data(), data.size());
  return out;
}

bytes float_bytes(const std::vector<float>& v) {
  bytes b(v.size() * 4);
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

// Expects parsing to fail with a ddm::io_error whose message contains every fragment.
void expect_rejected(const bytes& file, const std::vector<std::string>& fragments) {
  try {
    (void)io::safetensors_file::from_bytes(file, "model.safetensors");
    FAIL() << "the file was accepted";
  } catch (const ddm::io_error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("'model.safetensors'"), std::string::npos) << what;
    for (const auto& f : fragments) EXPECT_NE(what.find(f), std::string::npos) << "missing '" << f << "' in: " << what;
  }
}

std::filesystem::path temp_path(const std::string& name) {
  return std::filesystem::temp_directory_path() / ("ddm_safetensors_test_" + name);
}

// --- valid files ------------------------------------------------------------------------------

TEST(Safetensors, ReadsTheReferenceWritersOutput) {
  // Bytes produced by the reference implementation's serializer for a (1, 2, 3) F32 tensor
  // "attn.0" holding 0..5 (huggingface/safetensors, tensor.rs, test_serialization).
  const unsigned char ref[] = {
      64, 0, 0, 0, 0, 0, 0, 0, 123, 34, 97, 116, 116, 110, 46, 48, 34, 58, 123, 34, 100, 116, 121, 112, 101, 34,
      58, 34, 70, 51, 50, 34, 44, 34, 115, 104, 97, 112, 101, 34, 58, 91, 49, 44, 50, 44, 51, 93, 44, 34, 100, 97,
      116, 97, 95, 111, 102, 102, 115, 101, 116, 115, 34, 58, 91, 48, 44, 50, 52, 93, 125, 125, 0, 0, 0, 0, 0, 0,
      128, 63, 0, 0, 0, 64, 0, 0, 64, 64, 0, 0, 128, 64, 0, 0, 160, 64};
  bytes file(sizeof ref);
  std::memcpy(file.data(), ref, sizeof ref);
  const auto f = io::safetensors_file::from_bytes(file);
  ASSERT_EQ(f.tensors().size(), 1u);
  const auto& t = f.info("attn.0");
  EXPECT_EQ(t.dtype, io::dtype::f32);
  EXPECT_EQ(t.shape, (std::vector<std::uint64_t>{1, 2, 3}));
  EXPECT_EQ(f.read<float>("attn.0"), (std::vector<float>{0, 1, 2, 3, 4, 5}));
}

TEST(Safetensors, RoundTripsEveryFloatDtypeWithMetadataThroughADiskFile) {
  io::safetensors_writer w;
  w.set_metadata("format", "pt");
  w.set_metadata("note", "unit test");
  const std::vector<float> a{1.5f, -2.0f, 0.25f, 3.0f, 0.0f, -0.125f};
  const std::vector<double> b{1.0 / 3.0, -7.0, 1e-300};
  const std::vector<float> c{1.0f, 0.5f, -65504.0f, 0x1p-24f};  // exact in F16
  const std::vector<float> d{1.0f, -3.0f, 0x1p-120f, 256.0f};  // exact in BF16
  w.add("a", {2, 3}, a);
  w.add("b", {3}, b, io::dtype::f64);
  w.add("c", {2, 2}, c, io::dtype::f16);
  w.add("d", {4, 1}, d, io::dtype::bf16);
  const auto path = temp_path("roundtrip.safetensors");
  w.write(path);

  const io::safetensors_file f(path);
  EXPECT_EQ(f.label(), path.string());
  EXPECT_EQ(f.metadata().at("format"), "pt");
  EXPECT_EQ(f.metadata().at("note"), "unit test");
  EXPECT_EQ(f.tensors().size(), 4u);
  EXPECT_EQ(f.read<float>("a"), a);
  EXPECT_EQ(f.read<double>("b"), b);
  EXPECT_EQ(f.read<float>("c"), c);
  EXPECT_EQ(f.read<float>("d"), d);
  EXPECT_EQ(f.info("c").dtype, io::dtype::f16);
  EXPECT_EQ(f.info("d").shape, (std::vector<std::uint64_t>{4, 1}));
  // The writer orders by decreasing element size, so every tensor is naturally aligned.
  for (const auto& t : f.tensors()) {
    const auto address = reinterpret_cast<std::uintptr_t>(f.raw(t.name).data());
    EXPECT_EQ(address % (io::bits_of(t.dtype) / 8), 0u) << t.name;
  }
  EXPECT_EQ(f.tensors().front().name, "b");  // F64 first
  std::filesystem::remove(path);
}

TEST(Safetensors, ConvertsBetweenPrecisionsWithRoundToNearestEven) {
  io::safetensors_writer w;
  // F64 -> float rounds: 1 + 2^-24 is a tie (-> 1), 1 + 3 * 2^-24 a tie (-> 1 + 2^-22).
  w.add("f64", {3}, std::vector<double>{1.0 + 0x1p-24, 1.0 + 3 * 0x1p-24, 1.0 + 0x1p-30}, io::dtype::f64);
  // float -> BF16 / F16 storage rounds the same way (ties to even).
  w.add("bf16", {2}, std::vector<float>{1.0f + 0x1p-8f, 1.0f + 3 * 0x1p-8f}, io::dtype::bf16);
  w.add("f16", {2}, std::vector<float>{1.0f + 0x1p-11f, 1.0f + 3 * 0x1p-11f}, io::dtype::f16);
  w.add("f32", {2}, std::vector<float>{0.1f, -1e-40f});
  const auto f = io::safetensors_file::from_bytes(w.to_bytes());
  EXPECT_EQ(f.read<float>("f64"), (std::vector<float>{1.0f, 1.0f + 0x1p-22f, 1.0f}));
  EXPECT_EQ(f.read<double>("f64")[2], 1.0 + 0x1p-30);  // exact into double
  EXPECT_EQ(f.read<float>("bf16"), (std::vector<float>{1.0f, 1.0f + 0x1p-6f}));
  EXPECT_EQ(f.read<double>("bf16"), (std::vector<double>{1.0, 1.0 + 0x1p-6}));
  EXPECT_EQ(f.read<float>("f16"), (std::vector<float>{1.0f, 1.0f + 0x1p-9f}));
  EXPECT_EQ(f.read<double>("f32"), (std::vector<double>{static_cast<double>(0.1f), static_cast<double>(-1e-40f)}));
}

TEST(Safetensors, ReadsUnalignedTensors) {
  // A 3-byte pad in the header puts the float data at file offset 8 + 61: not 4-aligned.
  std::string header = R"({"x":{"dtype":"F32","shape":[3],"data_offsets":[0,12]}})";
  header += std::string(61 - header.size(), ' ');
  ASSERT_EQ(header.size(), 61u);
  const std::vector<float> values{1.25f, -3.5f, 1e-3f};
  const auto file = make_file(header, float_bytes(values));
  const auto path = temp_path("unaligned.safetensors");
  {
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(file.data()), static_cast<std::streamsize>(file.size()));
  }
  const io::safetensors_file f(path);
  EXPECT_NE(reinterpret_cast<std::uintptr_t>(f.raw("x").data()) % 4, 0u);
  EXPECT_EQ(f.read<float>("x"), values);
  EXPECT_EQ(f.read<double>("x")[1], -3.5);
  std::filesystem::remove(path);
}

TEST(Safetensors, AcceptsRankZeroAndEmptyTensorsAndAnEmptyFile) {
  io::safetensors_writer w;
  w.add("scalar", {}, std::vector<float>{4.5f});
  w.add("empty", {0, 7}, std::vector<float>{});
  w.add("empty16", {3, 0}, std::vector<float>{}, io::dtype::bf16);
  const auto f = io::safetensors_file::from_bytes(w.to_bytes());
  EXPECT_EQ(f.info("scalar").shape.size(), 0u);
  EXPECT_EQ(f.info("scalar").numel(), 1u);
  EXPECT_EQ(f.read<float>("scalar"), std::vector<float>{4.5f});
  EXPECT_EQ(f.info("empty").numel(), 0u);
  EXPECT_TRUE(f.read<float>("empty").empty());
  EXPECT_TRUE(f.read<double>("empty16").empty());

  const auto none = io::safetensors_file::from_bytes(make_file("{}"));
  EXPECT_TRUE(none.tensors().empty());
  EXPECT_TRUE(none.metadata().empty());
}

TEST(Safetensors, AcceptsWhitespaceAroundTheHeaderAndEntriesInAnyOrder) {
  const std::string header =
      "\n \t{\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]},"
      "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"__metadata__\":{\"k\":\"v\"}}   \n\r\t";
  const auto f = io::safetensors_file::from_bytes(make_file(header, float_bytes({1.0f, 2.0f})));
  EXPECT_EQ(f.read<float>("a"), std::vector<float>{1.0f});
  EXPECT_EQ(f.read<float>("b"), std::vector<float>{2.0f});
  EXPECT_EQ(f.tensors().front().name, "a");
  EXPECT_EQ(f.metadata().at("k"), "v");
}

TEST(Safetensors, KeepsNonFloatDtypesAsRawBytes) {
  const std::string header =
      R"({"ids":{"dtype":"I64","shape":[2],"data_offsets":[0,16]},"q":{"dtype":"F4","shape":[4],"data_offsets":[16,18]}})";
  bytes data(18);
  const std::int64_t ids[2] = {7, -1};
  std::memcpy(data.data(), ids, 16);
  const auto f = io::safetensors_file::from_bytes(make_file(header, data));
  EXPECT_EQ(f.raw("ids").size(), 16u);
  std::int64_t back[2];
  std::memcpy(back, f.raw("ids").data(), 16);
  EXPECT_EQ(back[1], -1);
  EXPECT_EQ(f.raw("q").size(), 2u);  // four 4-bit values
}

// --- one test per rule ------------------------------------------------------------------------

TEST(SafetensorsRejects, FileShorterThanTheLengthField) {
  expect_rejected(bytes(5), {"5 bytes", "at least the 8 bytes"});
}

TEST(SafetensorsRejects, HeaderLongerThanTheLimit) {
  expect_rejected(make_file("{}", {}, 100'000'001), {"100000001", "limit of 100000000"});
}

TEST(SafetensorsRejects, HeaderRunningPastTheEndOfTheFile) {
  expect_rejected(make_file("{}", {}, 40), {"header length is 40", "truncated"});
}

TEST(SafetensorsRejects, HeaderThatIsNotUtf8) {
  expect_rejected(make_file("{\"\xff\":1}"), {"not valid UTF-8", "byte 2"});
  expect_rejected(make_file("{\"\xc0\xaf\":1}"), {"not valid UTF-8"});  // overlong '/'
}

TEST(SafetensorsRejects, HeaderThatIsNotJson) {
  expect_rejected(make_file(R"({"a":{"dtype":"F32",)"), {"not valid JSON"});
  expect_rejected(make_file(std::string("{}\0\0", 4)), {"not valid JSON"});  // zero padding is not whitespace
}

TEST(SafetensorsRejects, HeaderThatIsNotAnObject) {
  expect_rejected(make_file("[1, 2]"), {"is a JSON array, expected an object"});
}

TEST(SafetensorsRejects, DuplicateTensorNames) {
  const std::string header =
      R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})";
  expect_rejected(make_file(header, float_bytes({1, 2})), {"tensor 'w'", "appears twice"});
}

TEST(SafetensorsRejects, DuplicateFieldsInsideAnEntry) {
  const std::string header = R"({"w":{"dtype":"F32","dtype":"F16","shape":[1],"data_offsets":[0,4]}})";
  expect_rejected(make_file(header, float_bytes({1})), {"key 'dtype' appears twice"});
}

TEST(SafetensorsRejects, EntryThatIsNotAnObject) {
  expect_rejected(make_file(R"({"w":[0,4]})"), {"tensor 'w'", "expected an object"});
}

TEST(SafetensorsRejects, UnknownOrMissingDtype) {
  expect_rejected(make_file(R"({"w":{"dtype":"F31","shape":[1],"data_offsets":[0,4]}})", float_bytes({1})),
                  {"tensor 'w'", "unknown dtype 'F31'"});
  expect_rejected(make_file(R"({"w":{"shape":[1],"data_offsets":[0,4]}})", float_bytes({1})),
                  {"tensor 'w'", "'dtype' is missing"});
}

TEST(SafetensorsRejects, ShapeThatIsNotNonNegativeIntegers) {
  expect_rejected(make_file(R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", float_bytes({1})),
                  {"tensor 'w'", "'shape' holds -1"});
  expect_rejected(make_file(R"({"w":{"dtype":"F32","shape":[1.0],"data_offsets":[0,4]}})", float_bytes({1})),
                  {"tensor 'w'", "expected non-negative integers"});
  expect_rejected(make_file(R"({"w":{"dtype":"F32","shape":3,"data_offsets":[0,4]}})", float_bytes({1})),
                  {"tensor 'w'", "'shape' is missing or not an array"});
}

TEST(SafetensorsRejects, OffsetsThatAreNotTwoIntegers) {
  expect_rejected(make_file(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}})", float_bytes({1})),
                  {"tensor 'w'", "'data_offsets'"});
  expect_rejected(make_file(R"({"w":{"dtype":"F32","shape":[1],"offsets":[0,4]}})", float_bytes({1})),
                  {"tensor 'w'", "'data_offsets' is missing"});
}

TEST(SafetensorsRejects, MetadataThatIsNotAStringMap) {
  expect_rejected(make_file(R"({"__metadata__":{"epoch":3}})"), {"'__metadata__' entry 'epoch'", "expected a string"});
  expect_rejected(make_file(R"({"__metadata__":"pt"})"), {"'__metadata__' is a JSON string"});
}

TEST(SafetensorsRejects, AGapBetweenTensors) {
  const std::string header =
      R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})";
  expect_rejected(make_file(header, float_bytes({1, 2, 3})), {"tensor 'b'", "leave a gap", "begin at 4"});
}

TEST(SafetensorsRejects, OverlappingTensors) {
  const std::string header =
      R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})";
  expect_rejected(make_file(header, float_bytes({1, 2})), {"tensor 'b'", "overlap the previous tensor"});
}

TEST(SafetensorsRejects, OffsetsThatEndBeforeTheyBegin) {
  const std::string header =
      R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},"b":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},"c":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"d":{"dtype":"F32","shape":[0],"data_offsets":[4,2]}})";
  expect_rejected(make_file(header, float_bytes({1})), {"tensor 'd'", "[4, 2] end before they begin"});
}

TEST(SafetensorsRejects, ByteLengthThatDisagreesWithShapeAndDtype) {
  const std::string header = R"({"w":{"dtype":"BF16","shape":[2,2],"data_offsets":[0,16]}})";
  expect_rejected(make_file(header, float_bytes({1, 2, 3, 4})), {"tensor 'w'", "span 16 bytes", "[2, 2] of BF16 needs 8"});
}

TEST(SafetensorsRejects, ShapesWhoseSizeOverflows) {
  const std::string header =
      R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}})";
  expect_rejected(make_file(header, float_bytes({1})), {"tensor 'w'", "overflows 64 bits"});
}

TEST(SafetensorsRejects, SubByteTensorsThatAreNotWholeBytes) {
  const std::string header = R"({"q":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}})";
  expect_rejected(make_file(header, bytes(2)), {"tensor 'q'", "not a whole number of bytes"});
}

TEST(SafetensorsRejects, TrailingBytesAfterTheLastTensor) {
  const std::string header = R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
  expect_rejected(make_file(header, float_bytes({1, 2})), {"cover 4 bytes", "has 8 bytes", "trailing bytes"});
}

TEST(SafetensorsRejects, DataTruncatedBeforeTheLastTensorEnds) {
  const std::string header = R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})";
  expect_rejected(make_file(header, float_bytes({1, 2, 3})), {"cover 16 bytes", "has 12 bytes", "truncated file"});
}

// Extra fields are ignored at any depth the reference's JSON parser accepts (serde_json: 128
// levels), and refused beyond it without building the whole nest.
TEST(Safetensors, IgnoresExtraFieldsNestedAsDeepAsTheReferenceAccepts) {
  const auto nest = [](std::size_t levels) { return std::string(levels, '[') + std::string(levels, ']'); };
  // the header object is level 1 and the entry level 2: 126 more levels reach the limit
  const std::string ok = R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"extra":)" + nest(126) + "}}";
  const auto f = io::safetensors_file::from_bytes(make_file(ok, float_bytes({5})));
  EXPECT_EQ(f.read<float>("w"), std::vector<float>{5});
  const std::string deep = R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"extra":)" + nest(127) + "}}";
  expect_rejected(make_file(deep, float_bytes({5})), {"nests containers deeper than 128 levels"});
  expect_rejected(make_file(nest(100000)), {"deeper than 128"});
}

// nlohmann's lexer skips a byte-order mark; the reference (serde_json) refuses it, and so does ddm.
TEST(SafetensorsRejects, AHeaderThatStartsWithAByteOrderMark) {
  expect_rejected(make_file("\xEF\xBB\xBF{}"), {"byte-order mark"});
}

// The reference keeps the last of two identical entries silently; ddm refuses any duplicate key
// (docs/safetensors.md: "Where ddm is stricter than the reference").
TEST(SafetensorsRejects, DuplicatesEvenWhenIdenticalAndInTheMetadata) {
  const std::string entry = R"("w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]})";
  expect_rejected(make_file("{" + entry + "," + entry + "}", float_bytes({1})), {"tensor 'w'", "appears twice"});
  expect_rejected(make_file(R"({"__metadata__":{"format":"pt","format":"np"}})"),
                  {"key 'format' appears twice", "'__metadata__'"});
}

// The reference reads -0 as the float -0.0 (serde_json), which no shape or offset may be; the
// message shows the value as written, not as the 0 nlohmann would make of it.
TEST(SafetensorsRejects, NegativeZeroInAShapeOrOffset) {
  expect_rejected(make_file(R"({"w":{"dtype":"F32","shape":[-0],"data_offsets":[0,0]}})"),
                  {"tensor 'w'", "'shape' holds -0.0"});
  expect_rejected(make_file(R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[-0,0]}})"),
                  {"tensor 'w'", "'data_offsets'"});
}

// [4, 0] is no range at all, not a gap after the tensor before it.
TEST(SafetensorsRejects, ReversedOffsetsAsReversedNotAsAGap) {
  const std::string header = R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}})";
  expect_rejected(make_file(header, float_bytes({1})), {"tensor 'w'", "[4, 0] end before they begin"});
}

// The parse is linear: 40,000 tensors (a 2.6 MB header) used to take 44 s through the callback
// parser and a linear duplicate search. This checks the result only; bench/safetensors_bench.cpp
// measures the time.
TEST(Safetensors, ReadsAHeaderOfManyEmptyTensors) {
  std::string header = "{";
  for (int i = 0; i < 40000; ++i) {
    if (i != 0) header += ',';
    header += "\"t" + std::to_string(i) + R"(":{"dtype":"F32","shape":[0],"data_offsets":[0,0]})";
  }
  header += "}";
  const auto f = io::safetensors_file::from_bytes(make_file(header));
  EXPECT_EQ(f.tensors().size(), 40000U);
  EXPECT_TRUE(f.contains("t39999"));
}

#if defined(__unix__) || defined(__APPLE__)
// A FIFO would block open() until a writer came; the reader refuses it without waiting.
TEST(SafetensorsRejects, AFifoWithoutBlocking) {
  const auto path = temp_path("fifo");
  std::filesystem::remove(path);
  ASSERT_EQ(::mkfifo(path.c_str(), 0600), 0);
  try {
    (void)io::safetensors_file(path);
    ADD_FAILURE() << "a FIFO was accepted";
  } catch (const ddm::io_error& e) {
    EXPECT_NE(std::string(e.what()).find("is not a regular file"), std::string::npos) << e.what();
  }
  std::filesystem::remove(path);
}
#endif

// --- errors when reading ----------------------------------------------------------------------

TEST(SafetensorsReadErrors, NameTheFileTheTensorAndTheProblem) {
  io::safetensors_writer w;
  w.add("blocks.0.attn.qkv.weight", {6, 2}, std::vector<float>(12, 1.0f));
  const std::string header = R"({"ids":{"dtype":"I32","shape":[1],"data_offsets":[0,4]}})";
  const auto f = io::safetensors_file::from_bytes(w.to_bytes(), "dit.safetensors");
  auto message_of = [](auto&& action) -> std::string {
    try {
      action();
    } catch (const ddm::io_error& e) {
      return e.what();
    }
    return "no error";
  };
  const auto missing = message_of([&] { (void)f.read<float>("blocks.1.attn.qkv.weight"); });
  EXPECT_NE(missing.find("'dit.safetensors': tensor 'blocks.1.attn.qkv.weight': not found"), std::string::npos)
      << missing;
  const auto shape = message_of([&] { (void)f.read<float>("blocks.0.attn.qkv.weight", {12, 4}); });
  EXPECT_NE(shape.find("tensor 'blocks.0.attn.qkv.weight': has shape [6, 2], expected [12, 4]"), std::string::npos)
      << shape;
  std::vector<float> small(3);
  const auto size = message_of([&] { f.read_into("blocks.0.attn.qkv.weight", std::span<float>(small)); });
  EXPECT_NE(size.find("destination holds 3"), std::string::npos) << size;
  const auto ints = io::safetensors_file::from_bytes(make_file(header, bytes(4)), "ids.safetensors");
  const auto dtype = message_of([&] { (void)ints.read<float>("ids"); });
  EXPECT_NE(dtype.find("tensor 'ids': has dtype I32"), std::string::npos) << dtype;
  const auto absent = message_of([] { io::safetensors_file f2("/nonexistent/dir/x.safetensors"); });
  EXPECT_NE(absent.find("/nonexistent/dir/x.safetensors"), std::string::npos) << absent;
}

TEST(SafetensorsWriter, RejectsDuplicateNamesAndMismatchedSizes) {
  io::safetensors_writer w;
  w.add("a", {2}, std::vector<float>{1, 2});
  EXPECT_THROW(w.add("a", {2}, std::vector<float>{1, 2}), ddm::argument_error);
  EXPECT_THROW(w.add("b", {3}, std::vector<float>{1, 2}), ddm::argument_error);
  EXPECT_THROW(w.add("__metadata__", {1}, std::vector<float>{1}), ddm::argument_error);
  EXPECT_THROW(w.add("c", {1}, std::vector<float>{1}, ddm::io::dtype::i32), ddm::argument_error);
}

}  // namespace
