// The C++ DiT models against the PyTorch reference (tests/dit/golden/make_golden.py): tiny
// configurations with random weights, compared stage by stage (max abs error <= 1e-4 and
// cosine >= 0.9999 in fp32).
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include <ddm/io/safetensors.hpp>

#include "dit/backend_host.hpp"
#include "dit/dit_model.hpp"
#include "dit/dit_router.hpp"
#include "dit/embeddings.hpp"
#include "dit/paris_expert.hpp"
#include "golden_support.hpp"

namespace {

using dit_test::fixture;

std::vector<std::int32_t> labels_of(const ddm::io::safetensors_file& g) {
  std::vector<std::int32_t> y;
  for (const float v : g.read<float>("input.y")) y.push_back(static_cast<std::int32_t>(v));
  return y;
}

void run_dit_golden(const std::string& name) {
  const ddm::io::safetensors_file golden(fixture(name + ".golden.safetensors"));
  const auto config = dit_test::dit_config_of(dit_test::config_of(golden));
  const auto model = dit::dit_model<>::load(fixture(name + ".safetensors"), config);
  const auto x = golden.read<float>("input.x");
  const auto t = golden.read<float>("input.t");
  const auto y = labels_of(golden);
  const auto b = static_cast<ddm::index_t>(t.size());
  ddm::batch<float> out(b, model->output_values());
  dit::workspace<ddm::host_space> ws;
  dit_test::stage_recorder rec;
  const auto hook = rec.hook();
  model->forward({}, ddm::batch_view<const float>(x.data(), b, model->input_values()), t, y, out.view(), ws, -1,
                 &hook);
  dit_test::expect_stages_match(golden, rec, name);
}

TEST(DitGolden, HeadSize72WithLearnSigmaNullClassAndStoredPositions) { run_dit_golden("dit_a"); }

TEST(DitGolden, FourHeadsPatch4ThreeChannelsAndComputedPositions) { run_dit_golden("dit_b"); }

TEST(DitGolden, ParisExpertsMatchPyTorch) {
  for (int k = 0; k < 3; ++k) {
    const std::string name = "expert_" + std::to_string(k);
    const ddm::io::safetensors_file golden(fixture("paris_tiny/" + name + ".golden.safetensors"));
    const auto config = dit_test::paris_config_of(dit_test::config_of(golden));
    const auto model =
        dit::paris_expert<>::load(fixture("paris_tiny/" + name + "/diffusion_pytorch_model.safetensors"), config);
    const auto x = golden.read<float>("input.x");
    const auto t = golden.read<float>("input.t");
    const auto text = golden.read<float>("input.text");
    const auto b = static_cast<ddm::index_t>(t.size());
    ddm::batch<float> out(b, model->output_values());
    dit::workspace<ddm::host_space> ws;
    dit_test::stage_recorder rec;
    const auto hook = rec.hook();
    model->forward({}, ddm::batch_view<const float>(x.data(), b, model->input_values()), t,
                   ddm::batch_view<const float>(text.data(), b, config.text_values()), out.view(), ws, &hook);
    dit_test::expect_stages_match(golden, rec, name);
  }
}

TEST(DitGolden, RouterMatchesPyTorch) {
  const ddm::io::safetensors_file golden(fixture("paris_tiny/router.golden.safetensors"));
  const auto config = dit_test::router_config_of(dit_test::config_of(golden));
  const auto model = dit::dit_router_model<>::load(fixture("paris_tiny/router/pytorch_model.safetensors"), config);
  const auto x = golden.read<float>("input.x");
  const auto t = golden.read<float>("input.t");
  const auto b = static_cast<ddm::index_t>(t.size());
  ddm::batch<float> logits(b, config.num_experts);
  dit::workspace<ddm::host_space> ws;
  dit_test::stage_recorder rec;
  const auto hook = rec.hook();
  model->forward({}, ddm::batch_view<const float>(x.data(), b, model->input_values()), t, logits.view(), ws, &hook);
  dit_test::expect_stages_match(golden, rec, "router");
}

TEST(DitEmbeddings, SinCosTableEqualsTheReferenceTableStoredInTheCheckpoint) {
  // dit_a stores the numpy-computed (MAE / DiT) table in F32.
  const ddm::io::safetensors_file file(fixture("dit_a.safetensors"));
  const auto stored = file.read<float>("pos_embed");
  const auto computed = dit::sincos_pos_embed_2d(72, 4);
  ASSERT_EQ(stored.size(), computed.size());
  double worst = 0;
  for (std::size_t i = 0; i < stored.size(); ++i) worst = std::max(worst, std::abs(double(stored[i]) - computed[i]));
  std::printf("[ measured ] max |computed - numpy| over the 2D sin-cos table: %.2e\n", worst);
  EXPECT_LE(worst, 1e-7);
}

TEST(DitEmbeddings, TimestepEmbeddingPutsCosineFirst) {
  // Frequency 0 is exp(0) = 1: the first column is cos(t), column half is sin(t).
  const std::vector<float> t{0.0f, 2.0f};
  std::vector<float> out(2 * 8);
  dit::timestep_embedding(t, 8, out);
  EXPECT_EQ(out[0], 1.0f);                                  // cos(0)
  EXPECT_EQ(out[4], 0.0f);                                  // sin(0)
  EXPECT_FLOAT_EQ(out[8 + 0], std::cos(2.0f));
  EXPECT_FLOAT_EQ(out[8 + 4], std::sin(2.0f));
  EXPECT_FLOAT_EQ(out[8 + 1], std::cos(2.0f * std::exp(-std::log(10000.0f) / 4)));
}

}  // namespace
