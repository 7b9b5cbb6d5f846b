// Crafted checkpoints and config files (issue 13): each once crashed, hung or overflowed a
// loader; each must now give one ddm error naming the file and what was wrong.
#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include <ddm/io/safetensors.hpp>
#include <ddm/io/safetensors_writer.hpp>

#include "dit/backend_host.hpp"
#include "dit/checkpoint.hpp"
#include "dit/paris_expert.hpp"
#include "dit/paris_loader.hpp"
#include "golden_support.hpp"

namespace {

namespace fs = std::filesystem;
using dit_test::fixture;

const char* const expert_file = "paris_tiny/expert_0/diffusion_pytorch_model.safetensors";

// `source` with tensor `name` replaced by an empty F32 tensor of `shape` (which must have a zero
// dimension): a valid safetensors file whose shapes a loader must not trust.
ddm::io::safetensors_file with_empty_tensor(const fs::path& source, const std::string& name,
                                            std::vector<std::uint64_t> shape) {
  const ddm::io::safetensors_file in(source);
  ddm::io::safetensors_writer w;
  for (const auto& t : in.tensors())
    if (t.name != name) w.add_raw(t.name, t.dtype, t.shape, in.raw(t.name));
  w.add_raw(name, ddm::io::dtype::f32, std::move(shape), {});
  return ddm::io::safetensors_file::from_bytes(w.to_bytes(), "crafted.safetensors");
}

std::string paris_error(const ddm::io::safetensors_file& f) {
  try {
    const auto config = dit::paris_expert_config_from_checkpoint(f, {.num_heads = 2});
    (void)dit::paris_expert<>(config, f);
  } catch (const ddm::error& e) {
    return e.message();
  }
  return "no error";
}

constexpr std::uint64_t two_32 = std::uint64_t{1} << 32;

TEST(DitHostile, AZeroPatchInAnEmptyPatchEmbeddingIsRefusedNotDividedBy) {
  const auto msg = paris_error(with_empty_tensor(fixture(expert_file), "patch_embed.weight", {32, 4, 0, 0}));
  EXPECT_NE(msg.find("'crafted.safetensors'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("tensor 'patch_embed.weight' has shape [32, 4, 0, 0], whose patch size"), std::string::npos)
      << msg;
}

TEST(DitHostile, HugeDimensionsOfAnEmptyTensorAreRefusedBeforeTheyMultiply) {
  const auto msg = paris_error(with_empty_tensor(fixture(expert_file), "patch_embed.weight", {32, 0, two_32, two_32}));
  EXPECT_NE(msg.find("whose input channels (axis 1) is not in [1, 2147483647]"), std::string::npos) << msg;
  const auto msg2 = paris_error(with_empty_tensor(fixture(expert_file), "patch_embed.weight", {0, 4, two_32, two_32}));
  EXPECT_NE(msg2.find("whose hidden size (axis 0) is not in"), std::string::npos) << msg2;
}

// (2^63 - 1, 0) sent mlp_ratio_for into an endless loop (a double >= 2^63 cast to index_t).
TEST(DitHostile, AnMlpWidthBeyondTheBoundEndsWithAnError) {
  const auto msg = paris_error(with_empty_tensor(fixture(expert_file), "layers.0.mlp.0.weight",
                                                 {std::uint64_t{std::numeric_limits<std::int64_t>::max()}, 0}));
  EXPECT_NE(msg.find("tensor 'layers.0.mlp.0.weight'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("MLP width"), std::string::npos) << msg;
  EXPECT_EQ(dit::mlp_ratio_for(std::numeric_limits<dit::index_t>::max(), 32), 0.0);
}

// A copy of the tiny Paris folder whose expert_0/config.json is `config` (or a directory).
fs::path paris_copy(const std::string& tag) {
  const fs::path dir = fs::temp_directory_path() / ("ddm_dit_hostile_" + tag);
  fs::remove_all(dir);
  fs::copy(fixture("paris_tiny"), dir, fs::copy_options::recursive);
  return dir;
}

std::string load_error(const fs::path& dir) {
  try {
    (void)dit::load_paris(dir);
  } catch (const ddm::error& e) {
    return e.message();
  }
  return "no error";
}

TEST(DitHostile, ConfigIntegersAreBoundedBeforeTextValuesMultipliesThem) {
  const auto dir = paris_copy("text_length");
  std::ofstream(dir / "expert_0" / "config.json") << R"({"num_heads": 2, "text_length": 1152921504606846976})";
  const auto msg = load_error(dir);
  EXPECT_NE(msg.find("expert_0/config.json"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'text_length' = 1152921504606846976, expected an integer in [1, 2147483647]"), std::string::npos)
      << msg;
  std::ofstream(dir / "expert_0" / "config.json") << R"({"num_heads": -2})";
  EXPECT_NE(load_error(dir).find("'num_heads' = -2"), std::string::npos);
  fs::remove_all(dir);
}

// The configuration's own check: a text_length within the bound whose product with text_dim is
// still fine, but a config built by hand with sizes past it is refused by validate().
TEST(DitHostile, ValidateRefusesSizesPastTheBound) {
  dit::paris_expert_config c;
  c.text_length = std::int64_t{1} << 60;
  EXPECT_THROW(c.validate(), ddm::argument_error);
  c = {};
  c.in_channels = dit::max_dimension;
  c.input_size = 131072;
  c.patch_size = 2;
  EXPECT_THROW(c.validate(), ddm::argument_error);  // in_channels x input_size^2 overflows
}

TEST(DitHostile, AConfigJsonThatIsADirectoryIsNamed) {
  const auto dir = paris_copy("config_dir");
  fs::remove(dir / "expert_0" / "config.json");
  fs::create_directory(dir / "expert_0" / "config.json");
  const auto msg = load_error(dir);
  EXPECT_NE(msg.find("expert_0/config.json' is not a regular file"), std::string::npos) << msg;
  fs::remove_all(dir);
}

}  // namespace
