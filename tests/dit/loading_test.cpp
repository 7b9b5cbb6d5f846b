// Loading checkpoints: configurations read off tensor shapes, every kind of mismatch reported
// with the file and the tensor, presets and parameter counts, and per-sample independence of
// the batched forward pass.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <ddm/io/safetensors.hpp>
#include <ddm/io/safetensors_writer.hpp>

#include "dit/backend_host.hpp"
#include "dit/checkpoint.hpp"
#include "dit/dit_model.hpp"
#include "dit/dit_router.hpp"
#include "dit/paris_expert.hpp"
#include "golden_support.hpp"

namespace {

using dit_test::fixture;

std::string load_error(const dit::dit_config& config, const std::string& file = "dit_a.safetensors") {
  try {
    (void)dit::dit_model<>::load(fixture(file), config);
  } catch (const ddm::error& e) {
    return e.message();
  }
  return "no error";
}

dit::dit_config dit_a_config() {
  const ddm::io::safetensors_file golden(fixture("dit_a.golden.safetensors"));
  return dit_test::dit_config_of(dit_test::config_of(golden));
}

TEST(DitLoading, MissingTensorNamesTheFileAndTheTensor) {
  auto c = dit_a_config();
  c.depth = 3;
  const auto msg = load_error(c);
  EXPECT_NE(msg.find("dit_a.safetensors"), std::string::npos) << msg;
  EXPECT_NE(msg.find("tensor 'blocks.2.adaLN_modulation.1.weight': not found"), std::string::npos) << msg;
}

TEST(DitLoading, UnusedTensorsAreAnErrorInStrictMode) {
  auto c = dit_a_config();
  c.depth = 1;
  const auto msg = load_error(c);
  EXPECT_NE(msg.find("not used by the DiT configuration"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'blocks.1."), std::string::npos) << msg;
  const ddm::io::safetensors_file file(fixture("dit_a.safetensors"));
  EXPECT_NO_THROW(dit::dit_model<>(c, file, /*strict=*/false));
}

TEST(DitLoading, WrongShapeNamesTheTensorAndBothShapes) {
  auto c = dit_a_config();
  c.hidden_size = 64;
  c.num_heads = 1;
  const auto msg = load_error(c);
  EXPECT_NE(msg.find("tensor 'x_embedder.proj.weight': has shape [72, 4, 2, 2], expected [64, 4, 2, 2]"),
            std::string::npos)
      << msg;
  c = dit_a_config();
  c.num_classes = 11;
  EXPECT_NE(load_error(c).find("y_embedder.embedding_table.weight"), std::string::npos);
}

TEST(DitLoading, InvalidConfigurationIsAnArgumentError) {
  auto c = dit_a_config();
  c.num_heads = 5;  // 72 is not divisible by 5
  EXPECT_THROW((void)dit::dit_model<>::load(fixture("dit_a.safetensors"), c), ddm::argument_error);
  EXPECT_THROW((void)dit::dit_config::preset("DiT-M/2"), ddm::argument_error);
  EXPECT_THROW((void)dit::dit_config::preset("DiT-XL/3"), ddm::argument_error);
}

TEST(DitLoading, SixteenBitStorageIsRefusedOnTheHostByName) {
  try {
    (void)dit::dit_model<>::load(fixture("dit_a.safetensors"), dit_a_config(), true, {}, dit::weight_storage::bf16);
    ADD_FAILURE() << "bf16 storage loaded on the host";
  } catch (const ddm::argument_error& e) {
    const std::string msg = e.message();
    EXPECT_NE(msg.find("'storage' is bf16"), std::string::npos) << msg;
    EXPECT_NE(msg.find("dit_a.safetensors"), std::string::npos) << msg;
  }
}

TEST(DitLoading, WeightViewsOfSixteenBitRowsStepInTwoByteWords) {
  // A weight_view's subrows of 16-bit storage advance by rows x stride x 2 bytes (cross-
  // attention splits a fused in_proj matrix this way), and only f32 converts to a float view.
  const std::uint16_t words[12] = {};
  const dit::weight_view<ddm::host_space> w(words, 4, 3, 3, dit::weight_storage::bf16);
  const auto lower = w.subrows(1, 2);
  EXPECT_EQ(static_cast<const std::uint16_t*>(lower.data), words + 3);
  EXPECT_EQ(lower.rows, 2);
  EXPECT_THROW((void)w.subrows(3, 2), ddm::shape_error);
  EXPECT_THROW((void)w.as_f32("test"), ddm::argument_error);
  const float values[6] = {};
  const dit::weight_view<ddm::host_space> f(ddm::batch_view<const float>(values, 3, 2));
  EXPECT_EQ(f.subrows(2, 1).as_f32("test").data(), values + 4);
}

TEST(DitLoading, ParameterCountsMatchTheCheckpointAndThePaper) {
  const auto c = dit_a_config();
  const ddm::io::safetensors_file file(fixture("dit_a.safetensors"));
  std::int64_t stored = 0;
  for (const auto& t : file.tensors()) stored += static_cast<std::int64_t>(t.numel());
  EXPECT_EQ(c.parameter_count(), stored);
  // DiT paper / README sizes at 256 px (32x32x4 latents), pos_embed included.
  const struct {
    const char* name;
    double millions;
  } paper[] = {{"DiT-S/2", 32.96}, {"DiT-B/2", 130.51}, {"DiT-L/2", 458.10}, {"DiT-XL/2", 675.13}};
  for (const auto& p : paper) {
    const double m = static_cast<double>(dit::dit_config::preset(p.name).parameter_count()) / 1e6;
    std::printf("[ measured ] %-9s %.2fM parameters\n", p.name, m);
    EXPECT_NEAR(m, p.millions, 0.005) << p.name;
  }
  const auto xl8 = dit::dit_config::preset("DiT-XL/8");
  EXPECT_EQ(xl8.patch_size, 8);
  EXPECT_EQ(xl8.tokens(), 16);
}

TEST(DitLoading, CheckpointLayoutListsExactlyTheTensorsOfACheckpoint) {
  const auto layout = dit::dit_model<>::checkpoint_layout(dit_a_config());
  const ddm::io::safetensors_file file(fixture("dit_a.safetensors"));
  EXPECT_EQ(layout.size(), file.tensors().size());
  std::int64_t values = 0;
  for (const auto& [name, shape] : layout) {
    ASSERT_TRUE(file.contains(name)) << name;
    EXPECT_EQ(file.info(name).shape, shape) << name;
    std::int64_t n = 1;
    for (const auto d : shape) n *= static_cast<std::int64_t>(d);
    values += n;
  }
  EXPECT_EQ(values, dit_a_config().parameter_count());
}

// `source` with `metadata` added (the tensors as they are).
ddm::io::safetensors_file with_metadata(const std::string& source, const std::map<std::string, std::string>& metadata) {
  const ddm::io::safetensors_file in(fixture(source));
  ddm::io::safetensors_writer w;
  for (const auto& t : in.tensors()) w.add_raw(t.name, t.dtype, t.shape, in.raw(t.name));
  for (const auto& [k, v] : metadata) w.set_metadata(k, v);
  return ddm::io::safetensors_file::from_bytes(w.to_bytes(), source + " with metadata");
}

void expect_same_config(const dit::dit_config& got, const dit::dit_config& want) {
  EXPECT_EQ(got.input_size, want.input_size);
  EXPECT_EQ(got.patch_size, want.patch_size);
  EXPECT_EQ(got.in_channels, want.in_channels);
  EXPECT_EQ(got.hidden_size, want.hidden_size);
  EXPECT_EQ(got.depth, want.depth);
  EXPECT_EQ(got.num_heads, want.num_heads);
  EXPECT_EQ(got.mlp_hidden(), want.mlp_hidden());
  EXPECT_EQ(got.num_classes, want.num_classes);
  EXPECT_EQ(got.null_class, want.null_class);
  EXPECT_EQ(got.learn_sigma, want.learn_sigma);
  EXPECT_EQ(got.layer_norm_eps, want.layer_norm_eps);
}

TEST(DitLoading, OriginalDitConfigurationIsReadFromTheCheckpoint) {
  // dit_a: one head of 72, learn_sigma, 10 classes + the null class, pos_embed stored. The head
  // count is the one value its shapes cannot give: from the caller, or from the metadata.
  const ddm::io::safetensors_file a(fixture("dit_a.safetensors"));
  const auto want_a = dit_a_config();
  expect_same_config(dit::dit_config_from_checkpoint(a, {.num_heads = 1}), want_a);
  expect_same_config(dit::dit_config_from_checkpoint(with_metadata("dit_a.safetensors", {{"num_heads", "1"}})),
                     want_a);
  // The caller's value wins over the metadata's (a flag corrects a wrong file).
  EXPECT_EQ(dit::dit_config_from_checkpoint(with_metadata("dit_a.safetensors", {{"num_heads", "8"}}),
                                            {.num_heads = 1})
                .num_heads,
            1);
  EXPECT_NO_THROW((void)dit::load_dit(fixture("dit_a.safetensors"), {.num_heads = 1}));

  // dit_b: four heads of 8, no learn_sigma, 5 classes and no null class, and no pos_embed
  // (computed): the latent size must be given too, and the class count, since a table of 5 rows
  // reads as 4 classes and the null class (DiT's training default) otherwise.
  const ddm::io::safetensors_file bgold(fixture("dit_b.golden.safetensors"));
  const auto want_b = dit_test::dit_config_of(dit_test::config_of(bgold));
  const ddm::io::safetensors_file b(fixture("dit_b.safetensors"));
  ASSERT_FALSE(b.contains("pos_embed"));
  expect_same_config(
      dit::dit_config_from_checkpoint(b, {.num_heads = want_b.num_heads, .input_size = want_b.input_size,
                                          .num_classes = want_b.num_classes}),
      want_b);
  expect_same_config(dit::dit_config_from_checkpoint(
                         with_metadata("dit_b.safetensors", {{"num_heads", std::to_string(want_b.num_heads)},
                                                             {"input_size", std::to_string(want_b.input_size)},
                                                             {"num_classes", std::to_string(want_b.num_classes)}})),
                     want_b);
  const auto guessed = dit::dit_config_from_checkpoint(b, {.num_heads = 4, .input_size = want_b.input_size});
  EXPECT_EQ(guessed.num_classes, want_b.num_classes - 1);
  EXPECT_TRUE(guessed.null_class);
}

TEST(DitLoading, WhatACheckpointCannotTellIsAskedForByName) {
  const ddm::io::safetensors_file a(fixture("dit_a.safetensors"));
  auto error = [](auto&& f) -> std::string {
    try {
      f();
    } catch (const ddm::error& e) {
      return e.message();
    }
    return "no error";
  };
  auto msg = error([&] { (void)dit::dit_config_from_checkpoint(a); });
  EXPECT_NE(msg.find("head count of '"), std::string::npos) << msg;
  EXPECT_NE(msg.find("--heads N"), std::string::npos) << msg;
  const ddm::io::safetensors_file b(fixture("dit_b.safetensors"));
  msg = error([&] { (void)dit::dit_config_from_checkpoint(b, {.num_heads = 4}); });
  EXPECT_NE(msg.find("has no 'pos_embed'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("input_size"), std::string::npos) << msg;
  msg = error([&] { (void)dit::dit_config_from_checkpoint(with_metadata("dit_a.safetensors", {{"num_heads", "x1"}})); });
  EXPECT_NE(msg.find("metadata 'num_heads' = 'x1', expected an integer"), std::string::npos) << msg;
  // 11 label rows: 10 classes + null, or 11 classes without; 12 classes fit neither.
  msg = error([&] { (void)dit::dit_config_from_checkpoint(a, {.num_heads = 1, .num_classes = 12}); });
  EXPECT_NE(msg.find("11 rows for num_classes = 12"), std::string::npos) << msg;
  const auto no_null = dit::dit_config_from_checkpoint(a, {.num_heads = 1, .num_classes = 11});
  EXPECT_EQ(no_null.num_classes, 11);
  EXPECT_FALSE(no_null.null_class);
  // A Paris expert is not an original DiT.
  const ddm::io::safetensors_file expert(fixture("paris_tiny/expert_0/diffusion_pytorch_model.safetensors"));
  msg = error([&] { (void)dit::dit_config_from_checkpoint(expert, {.num_heads = 2}); });
  EXPECT_NE(msg.find("not a DiT checkpoint"), std::string::npos) << msg;
}

TEST(DitLoading, ParisAndRouterConfigurationsAreReadOffTheShapes) {
  const ddm::io::safetensors_file expert(fixture("paris_tiny/expert_0/diffusion_pytorch_model.safetensors"));
  const ddm::io::safetensors_file golden(fixture("paris_tiny/expert_0.golden.safetensors"));
  const auto want = dit_test::paris_config_of(dit_test::config_of(golden));
  const auto got =
      dit::paris_expert_config_from_checkpoint(expert, {.num_heads = want.num_heads, .text_length = want.text_length});
  EXPECT_EQ(got.hidden_size, want.hidden_size);
  EXPECT_EQ(got.depth, want.depth);
  EXPECT_EQ(got.patch_size, want.patch_size);
  EXPECT_EQ(got.input_size, want.input_size);
  EXPECT_EQ(got.in_channels, want.in_channels);
  EXPECT_EQ(got.out_channels, want.out_channels);
  EXPECT_EQ(got.text_dim, want.text_dim);
  EXPECT_EQ(got.mlp_ratio, want.mlp_ratio);
  EXPECT_NO_THROW(dit::paris_expert<>(got, expert));

  const ddm::io::safetensors_file router(fixture("paris_tiny/router/pytorch_model.safetensors"));
  const ddm::io::safetensors_file rgolden(fixture("paris_tiny/router.golden.safetensors"));
  const auto rwant = dit_test::router_config_of(dit_test::config_of(rgolden));
  const auto rgot = dit::router_config_from_checkpoint(router, {.num_heads = rwant.num_heads});
  EXPECT_EQ(rgot.hidden_size, rwant.hidden_size);
  EXPECT_EQ(rgot.depth, rwant.depth);
  EXPECT_EQ(rgot.num_experts, rwant.num_experts);
  EXPECT_EQ(rgot.input_size, rwant.input_size);
  EXPECT_NO_THROW(dit::dit_router_model<>(rgot, router));
  // A router checkpoint is not an expert.
  EXPECT_THROW((void)dit::paris_expert_config_from_checkpoint(router, {.num_heads = 1}), ddm::io_error);
}

TEST(DitLoading, MlpWidthReadOffTheShapesSurvivesTheRatioRoundTrip) {
  // width / hidden * hidden truncates to width - 1 for many pairs (for hidden 11, width 15 and for
  // hidden 352, width 480 among multiples of 32): the inferred configuration must still ask for
  // the MLP the checkpoint holds.
  std::size_t checked = 0;
  for (ddm::index_t h = 1; h <= 400; ++h)
    for (ddm::index_t f = 1; f <= 4 * h + 8; ++f, ++checked) {
      dit::paris_expert_config c;
      c.hidden_size = h;
      c.mlp_ratio = dit::mlp_ratio_for(f, h);
      ASSERT_EQ(c.mlp_hidden(), f) << "hidden " << h << ", width " << f;
    }
  std::printf("[ measured ] %zu (hidden, width) pairs round-trip\n", checked);

  // Through the readers of expert and router checkpoints (only the tensors they inspect).
  const std::uint64_t d = 11, width = 15;
  auto zeros = [](std::uint64_t n) { return std::vector<float>(n, 0.0f); };
  ddm::io::safetensors_writer we;
  we.add("patch_embed.weight", {d, 4, 2, 2}, zeros(d * 16));
  we.add("pos_embed", {1, 16, d}, zeros(16 * d));
  we.add("text_proj.weight", {d, 16}, zeros(d * 16));
  we.add("layers.0.mlp.0.weight", {width, d}, zeros(width * d));
  we.add("layers.0.scale_shift_table", {6, d}, zeros(6 * d));
  we.add("final_layer.linear.weight", {16, d}, zeros(16 * d));
  const auto expert = ddm::io::safetensors_file::from_bytes(we.to_bytes(), "expert with MLP 15 of 11");
  EXPECT_EQ(dit::paris_expert_config_from_checkpoint(expert, {.num_heads = 1}).mlp_hidden(), 15);
  ddm::io::safetensors_writer wr;
  wr.add("patch_embed.weight", {d, 4, 2, 2}, zeros(d * 16));
  wr.add("pos_embed", {1, 16, d}, zeros(16 * d));
  wr.add("layers.0.mlp.0.weight", {width, d}, zeros(width * d));
  wr.add("layers.0.adaLN_modulation.1.weight", {6 * d, d}, zeros(6 * d * d));
  wr.add("head.4.weight", {3, d}, zeros(3 * d));
  const auto router = ddm::io::safetensors_file::from_bytes(wr.to_bytes(), "router with MLP 15 of 11");
  EXPECT_EQ(dit::router_config_from_checkpoint(router, {.num_heads = 1}).mlp_hidden(), 15);
}

TEST(DitForward, EachSampleIsIndependentOfTheRestOfTheBatch) {
  const ddm::io::safetensors_file golden(fixture("paris_tiny/expert_1.golden.safetensors"));
  const auto config = dit_test::paris_config_of(dit_test::config_of(golden));
  const auto model =
      dit::paris_expert<>::load(fixture("paris_tiny/expert_1/diffusion_pytorch_model.safetensors"), config);
  const auto x = golden.read<float>("input.x");
  const auto t = golden.read<float>("input.t");
  const auto text = golden.read<float>("input.text");
  const auto b = static_cast<ddm::index_t>(t.size());
  const auto n = model->input_values();
  const auto l = config.text_values();
  dit::workspace<ddm::host_space> ws;
  ddm::batch<float> all(b, model->output_values());
  model->forward({}, ddm::batch_view<const float>(x.data(), b, n), t, ddm::batch_view<const float>(text.data(), b, l),
                 all.view(), ws);
  double worst = 0;
  for (ddm::index_t r = b - 1; r >= 0; --r) {  // reversed, so the workspace shrinks and grows
    ddm::batch<float> one(1, model->output_values());
    model->forward({}, ddm::batch_view<const float>(x.data() + r * n, 1, n), std::span<const float>(&t[r], 1),
                   ddm::batch_view<const float>(text.data() + r * l, 1, l), one.view(), ws);
    for (ddm::index_t c = 0; c < one.cols(); ++c) worst = std::max(worst, double(std::abs(one(0, c) - all(r, c))));
  }
  std::printf("[ measured ] max |batched - one at a time| = %.2e\n", worst);
  EXPECT_LE(worst, 1e-5);
}

// LayerNorm epsilons of 1e-6 and 1e-5 are indistinguishable at the goldens' tolerance (rows of
// variance ~1), so the goldens alone cannot show that a configured epsilon is used. Setting each
// one to 1 must move the output far beyond that tolerance; the backend test
// LayerNormAddsEpsilonToTheVarianceInsideTheRoot checks where eps enters the formula.
TEST(DitForward, EveryConfiguredLayerNormEpsilonReachesTheForwardPass) {
  dit::workspace<ddm::host_space> ws;
  auto moved = [](const ddm::batch<float>& a, const ddm::batch<float>& b) {
    double worst = 0;
    for (ddm::index_t i = 0; i < a.size(); ++i) worst = std::max(worst, double(std::abs(a.data()[i] - b.data()[i])));
    return worst;
  };

  const ddm::io::safetensors_file dgold(fixture("dit_a.golden.safetensors"));
  const auto x = dgold.read<float>("input.x");
  const auto t = dgold.read<float>("input.t");
  std::vector<std::int32_t> y;
  for (const float v : dgold.read<float>("input.y")) y.push_back(static_cast<std::int32_t>(v));
  const auto b = static_cast<ddm::index_t>(t.size());
  auto dit_out = [&](const dit::dit_config& c) {
    const auto m = dit::dit_model<>::load(fixture("dit_a.safetensors"), c);
    ddm::batch<float> out(b, m->output_values());
    m->forward({}, ddm::batch_view<const float>(x.data(), b, m->input_values()), t, y, out.view(), ws);
    return out;
  };
  auto dc = dit_a_config();
  const auto dit_default = dit_out(dc);
  dc.layer_norm_eps = 1.0;
  const double dit_moved = moved(dit_default, dit_out(dc));

  const ddm::io::safetensors_file pgold(fixture("paris_tiny/expert_0.golden.safetensors"));
  const auto px = pgold.read<float>("input.x");
  const auto pt = pgold.read<float>("input.t");
  const auto text = pgold.read<float>("input.text");
  auto pc = dit_test::paris_config_of(dit_test::config_of(pgold));
  auto paris_out = [&](const dit::paris_expert_config& c) {
    const auto m = dit::paris_expert<>::load(fixture("paris_tiny/expert_0/diffusion_pytorch_model.safetensors"), c);
    const auto pb = static_cast<ddm::index_t>(pt.size());
    ddm::batch<float> out(pb, m->output_values());
    m->forward({}, ddm::batch_view<const float>(px.data(), pb, m->input_values()), pt,
               ddm::batch_view<const float>(text.data(), pb, c.text_values()), out.view(), ws);
    return out;
  };
  const auto paris_default = paris_out(pc);
  pc.layer_norm_eps = 1.0;
  const double paris_moved = moved(paris_default, paris_out(pc));

  const ddm::io::safetensors_file rgold(fixture("paris_tiny/router.golden.safetensors"));
  const auto rx = rgold.read<float>("input.x");
  const auto rt = rgold.read<float>("input.t");
  const auto rc0 = dit_test::router_config_of(dit_test::config_of(rgold));
  auto router_out = [&](const dit::router_config& c) {
    const auto m = dit::dit_router_model<>::load(fixture("paris_tiny/router/pytorch_model.safetensors"), c);
    const auto rb = static_cast<ddm::index_t>(rt.size());
    ddm::batch<float> out(rb, c.num_experts);
    m->forward({}, ddm::batch_view<const float>(rx.data(), rb, m->input_values()), rt, out.view(), ws);
    return out;
  };
  const auto router_default = router_out(rc0);
  auto rc = rc0;
  rc.layer_norm_eps = 1.0;
  const double router_blocks_moved = moved(router_default, router_out(rc));
  rc = rc0;
  rc.head_layer_norm_eps = 1.0;
  const double router_head_moved = moved(router_default, router_out(rc));

  std::printf("[ measured ] max |output(eps) - output(eps = 1)|: DiT %.3g, Paris expert %.3g, router blocks %.3g, "
              "router head %.3g\n",
              dit_moved, paris_moved, router_blocks_moved, router_head_moved);
  EXPECT_GT(dit_moved, 1e-2);
  EXPECT_GT(paris_moved, 1e-2);
  EXPECT_GT(router_blocks_moved, 1e-2);
  EXPECT_GT(router_head_moved, 1e-2);
}

TEST(DitForward, RejectsBadInputs) {
  const auto c = dit_a_config();
  const auto model = dit::dit_model<>::load(fixture("dit_a.safetensors"), c);
  dit::workspace<ddm::host_space> ws;
  ddm::batch<float> x(2, model->input_values());
  ddm::batch<float> out(2, model->output_values());
  const std::vector<float> t{1.0f, 2.0f};
  const std::vector<std::int32_t> good{0, -1};
  EXPECT_NO_THROW(model->forward({}, x.cview(), t, good, out.view(), ws));
  const std::vector<std::int32_t> bad{0, 11};
  EXPECT_THROW(model->forward({}, x.cview(), t, bad, out.view(), ws), ddm::argument_error);
  const std::vector<float> short_t{1.0f};
  EXPECT_THROW(model->forward({}, x.cview(), short_t, good, out.view(), ws), ddm::shape_error);
  ddm::batch<float> wrong(2, 5);
  EXPECT_THROW(model->forward({}, wrong.cview(), t, good, out.view(), ws), ddm::shape_error);
  ddm::batch<float> half(2, model->output_values() / 2);
  EXPECT_NO_THROW(model->forward({}, x.cview(), t, good, half.view(), ws, /*keep=*/4));  // eps channels only
}

}  // namespace
