// The DiT networks as ddm components: time scale, output conventions, per-sample conditioning
// through row indices, the router adapter, and the Paris folder loader.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <numeric>
#include <utility>
#include <string>
#include <vector>

#include <ddm/core/field.hpp>
#include <ddm/io/safetensors.hpp>
#include <ddm/io/safetensors_writer.hpp>

#include "dit/backend_host.hpp"
#include "dit/checkpoint.hpp"
#include "dit/fields.hpp"
#include "dit/paris_loader.hpp"
#include "golden_support.hpp"

namespace {

using dit_test::fixture;
namespace fs = std::filesystem;

struct paris_golden {
  ddm::io::safetensors_file file;
  dit::paris_expert_config config;
  std::vector<float> x, t, text, output;
  explicit paris_golden(int k)
      : file(fixture("paris_tiny/expert_" + std::to_string(k) + ".golden.safetensors")),
        config(dit_test::paris_config_of(dit_test::config_of(file))),
        x(file.read<float>("input.x")),
        t(file.read<float>("input.t")),
        text(file.read<float>("input.text")),
        output(file.read<float>("stage.output")) {}
  [[nodiscard]] ddm::index_t rows() const { return static_cast<ddm::index_t>(t.size()); }
  [[nodiscard]] std::shared_ptr<const ddm::batch<float>> text_table() const {
    auto b = std::make_shared<ddm::batch<float>>(rows(), config.text_values());
    std::copy(text.begin(), text.end(), b->data());
    return b;
  }
};

TEST(DitFields, ParisExpertFieldScalesTimeAndFollowsRowIndices) {
  const paris_golden g(0);
  const auto model = dit::paris_expert<>::load(fixture("paris_tiny/expert_0/diffusion_pytorch_model.safetensors"),
                                               g.config);
  dit::paris_expert_field<> field(model, g.text_table());
  static_assert(ddm::velocity_field<dit::paris_expert_field<>, float>);
  static_assert(dit::paris_expert_field<>::output() == dit::output_kind::velocity);
  EXPECT_EQ(field.time_scale(), 1000.0);
  const auto n = model->input_values();
  // Row r of the golden batch, alone, as a sub-batch whose original row is r, at t = t_r / 1000.
  double worst = 0;
  for (ddm::index_t r = 0; r < g.rows(); ++r) {
    const std::int32_t idx = static_cast<std::int32_t>(r);
    ddm::batch<float> v(1, n);
    field(ddm::batch_view<const float>(g.x.data() + r * n, 1, n), g.t[static_cast<std::size_t>(r)] / 1000.0, v.view(),
          dit::row_indices<ddm::host_space>(&idx, 1, 1));
    for (ddm::index_t c = 0; c < n; ++c)
      worst = std::max(worst, double(std::abs(v(0, c) - g.output[static_cast<std::size_t>(r * n + c)])));
  }
  std::printf("[ measured ] paris_expert_field vs PyTorch, one row at a time: max abs %.2e\n", worst);
  EXPECT_LE(worst, 1e-4);
}

TEST(DitFields, PermutedSubBatchesGetTheirOwnConditioning) {
  const paris_golden g(2);
  const auto model = dit::paris_expert<>::load(fixture("paris_tiny/expert_2/diffusion_pytorch_model.safetensors"),
                                               g.config);
  dit::paris_expert_field<> field(model, g.text_table());
  const auto n = model->input_values();
  const double t = 0.7;
  ddm::batch<float> plain(g.rows(), n);
  field(ddm::batch_view<const float>(g.x.data(), g.rows(), n), t, plain.view());
  // Rows 2 and 0, in that order.
  const std::int32_t idx[2] = {2, 0};
  ddm::batch<float> xs(2, n);
  for (int i = 0; i < 2; ++i) std::copy_n(g.x.data() + idx[i] * n, n, xs.data() + i * n);
  ddm::batch<float> v(2, n);
  field(xs.cview(), t, v.view(), dit::row_indices<ddm::host_space>(idx, 2, 1));
  double worst = 0;
  for (int i = 0; i < 2; ++i)
    for (ddm::index_t c = 0; c < n; ++c) worst = std::max(worst, double(std::abs(v(i, c) - plain(idx[i], c))));
  EXPECT_LE(worst, 1e-5);
  // Conditioning on the wrong prompt changes the result: the indices are really used.
  const std::int32_t wrong[2] = {0, 2};
  field(xs.cview(), t, v.view(), dit::row_indices<ddm::host_space>(wrong, 2, 1));
  double moved = 0;
  for (ddm::index_t c = 0; c < n; ++c) moved = std::max(moved, double(std::abs(v(0, c) - plain(2, c))));
  EXPECT_GT(moved, 1e-3);
  // Indices outside the table are an error, and so is a plain call whose batch does not line up
  // with the table.
  const std::int32_t outside[2] = {3, 0};
  EXPECT_THROW(field(xs.cview(), t, v.view(), dit::row_indices<ddm::host_space>(outside, 2, 1)), ddm::argument_error);
  EXPECT_THROW(field(xs.cview(), t, v.view()), ddm::shape_error);
}

TEST(DitFields, RouterAdapterIsADdmRouterAtTheScaledTime) {
  const ddm::io::safetensors_file golden(fixture("paris_tiny/router.golden.safetensors"));
  const auto config = dit_test::router_config_of(dit_test::config_of(golden));
  dit::dit_router<> router(dit::dit_router_model<>::load(fixture("paris_tiny/router/pytorch_model.safetensors"), config));
  EXPECT_EQ(router.num_experts(), 3u);
  EXPECT_STREQ(router.name(), "dit_router");
  const auto x = golden.read<float>("input.x");
  const auto t = golden.read<float>("input.t");
  const auto want = golden.read<float>("stage.logits");
  const ddm::index_t n = config.in_channels * config.input_size * config.input_size;
  double worst = 0;
  for (std::size_t r = 0; r < t.size(); ++r) {
    ddm::batch<float> logits(1, 3);
    router(ddm::batch_view<const float>(x.data() + r * static_cast<std::size_t>(n), 1, n), t[r] / 1000.0,
           logits.view());
    for (int k = 0; k < 3; ++k) worst = std::max(worst, double(std::abs(logits(0, k) - want[r * 3 + k])));
  }
  EXPECT_LE(worst, 1e-4);
}

// facebookresearch/DiT's forward_with_cfg, evaluated in PyTorch (make_cfg_golden.py), against
// dit_guided_field with the official three guided channels and with every channel guided. Each
// row at its own timestep through the row-index path (labels picked by original row).
TEST(DitFields, GuidedFieldMatchesTheOfficialForwardWithCfgOnThreeOrAllChannels) {
  const ddm::io::safetensors_file golden(fixture("dit_a.cfg.golden.safetensors"));
  const auto model = dit::load_dit(fixture("dit_a.safetensors"), {.num_heads = 1});
  const auto& c = model->config();
  const double scale = std::stod(golden.metadata().at("scale"));
  const auto x = golden.read<float>("input.x");
  const auto t = golden.read<float>("input.t");
  const auto y = golden.read<float>("input.y");
  std::vector<std::int32_t> labels;
  for (const float l : y) labels.push_back(static_cast<std::int32_t>(l));
  const ddm::index_t n = model->input_values();
  const ddm::index_t out_row = model->output_values();  // the golden keeps all 2C channels
  for (const auto& [name, channels] : {std::pair<std::string, ddm::index_t>{"output.three", 3}, {"output.all", 0}}) {
    const auto want = golden.read<float>(name);
    dit::dit_guided_field<> field(model, labels, scale, channels);
    EXPECT_EQ(field.guided_channels(), channels == 0 ? c.in_channels : channels);
    double worst = 0, largest = 0;
    for (std::size_t r = 0; r < t.size(); ++r) {
      ddm::batch<float> v(1, n);
      const std::int32_t idx[1] = {static_cast<std::int32_t>(r)};
      field(ddm::batch_view<const float>(x.data() + r * static_cast<std::size_t>(n), 1, n), t[r], v.view(),
            dit::row_indices<ddm::host_space>(idx, 1, 1));
      for (ddm::index_t i = 0; i < n; ++i) {
        const double w = want[r * static_cast<std::size_t>(out_row) + static_cast<std::size_t>(i)];
        worst = std::max(worst, std::abs(double(v(0, i)) - w));
        largest = std::max(largest, std::abs(w));
      }
    }
    std::printf("[ measured ] guided DiT vs forward_with_cfg (%s): max abs error %.2e (values up to %.2f)\n",
                name.c_str(), worst, largest);
    EXPECT_LE(worst, 1e-4) << name;
  }
  // The two references differ (in the fourth channel), so the comparison above tells them apart.
  const auto three = golden.read<float>("output.three");
  const auto all = golden.read<float>("output.all");
  double differ = 0;
  for (std::size_t i = 0; i < three.size(); ++i) differ = std::max(differ, double(std::abs(three[i] - all[i])));
  EXPECT_GT(differ, 1e-2);
}

TEST(DitFields, GuidedFieldRefusesAModelWithoutNullClassAndBadChannelCounts) {
  const auto a = dit::load_dit(fixture("dit_a.safetensors"), {.num_heads = 1});
  EXPECT_THROW(dit::dit_guided_field<>(a, {1}, 4.0, 5), ddm::argument_error);
  EXPECT_THROW(dit::dit_guided_field<>(a, {1}, 4.0, -1), ddm::argument_error);
  EXPECT_THROW(dit::dit_guided_field<>(a, {1}, std::nan(""), 0), ddm::argument_error);
  const auto b = dit::load_dit(fixture("dit_b.safetensors"), {.num_heads = 4, .input_size = 16, .num_classes = 5});
  try {
    dit::dit_guided_field<> f(b, {1}, 4.0);
    ADD_FAILURE() << "a model without the null class was guided";
  } catch (const ddm::argument_error& e) {
    EXPECT_NE(std::string(e.message()).find("has no null class"), std::string::npos) << e.message();
  }
}

TEST(DitFields, DdpmDitBecomesARectifiedFlowVelocity) {
  const ddm::io::safetensors_file golden(fixture("dit_a.golden.safetensors"));
  const auto config = dit_test::dit_config_of(dit_test::config_of(golden));
  const auto model = dit::dit_model<>::load(fixture("dit_a.safetensors"), config);
  const auto x = golden.read<float>("input.x");
  const std::vector<std::int32_t> labels{3, -1, 7};
  static_assert(dit::dit_expert_field<>::output() == dit::output_kind::eps);
  auto field = dit::ddpm_velocity(dit::dit_expert_field<>(model, labels));
  const ddm::index_t n = model->input_values();
  const double t = 0.6;
  ddm::batch<float> v(3, n);
  const std::int32_t idx[3] = {1, 2, 0};  // the rows in a different order, with their labels
  ddm::batch<float> xs(3, n);
  for (int i = 0; i < 3; ++i) std::copy_n(x.data() + idx[i] * n, n, xs.data() + i * n);
  field(xs.cview(), t, v.view(), dit::row_indices<ddm::host_space>(idx, 3, 1));
  // By hand: x_vp = x / c, DDPM timestep from alpha_bar = ((1 - t) / c)^2, eps = the first four
  // output channels, v = (eps - x) / (1 - t).
  const double c = std::hypot(1 - t, t);
  const double step = ddm::flow::linear_beta_timesteps{}(((1 - t) / c) * ((1 - t) / c));
  ddm::batch<float> xvp(3, n);
  for (ddm::index_t i = 0; i < xvp.size(); ++i) xvp.data()[i] = static_cast<float>(xs.data()[i] / c);
  ddm::batch<float> eps(3, n);
  dit::workspace<ddm::host_space> ws;
  const std::vector<float> steps(3, static_cast<float>(step));
  const std::vector<std::int32_t> y{labels[1], labels[2], labels[0]};
  model->forward({}, xvp.cview(), steps, y, eps.view(), ws, config.in_channels);
  double worst = 0;
  for (ddm::index_t i = 0; i < v.size(); ++i) {
    const double want = (eps.data()[i] - xs.data()[i]) / (1 - t);
    worst = std::max(worst, std::abs(v.data()[i] - want));
  }
  EXPECT_LE(worst, 1e-5);
  // eps / x0 output conventions through the generic adapter.
  auto as_eps = dit::as_velocity<dit::output_kind::eps>(dit::dit_expert_field<>(model, labels, 1000.0));
  static_assert(ddm::velocity_field<decltype(as_eps), float>);
  auto as_v = dit::as_velocity<dit::output_kind::velocity>(dit::dit_expert_field<>(model, labels, 1000.0));
  static_assert(std::is_same_v<decltype(as_v), dit::dit_expert_field<>>);
}

TEST(ParisLoader, LoadsTheFolderInExpertOrder) {
  dit::paris_options options;
  options.expert_heads = 0;  // must come from the folders' config.json
  options.router_heads = 0;
  // So must the epsilons (1e-5 there): 1 would move every output far beyond the golden tolerance
  // (DitForward.EveryConfiguredLayerNormEpsilonReachesTheForwardPass).
  options.expert_layer_norm_eps = 1.0;
  options.router_layer_norm_eps = 1.0;
  const auto ckpt = dit::load_paris(fixture("paris_tiny"), options);
  EXPECT_EQ(ckpt.expert_config.layer_norm_eps, 1e-5);
  EXPECT_EQ(ckpt.router_config.layer_norm_eps, 1e-5);
  ASSERT_EQ(ckpt.experts.size(), 3u);
  EXPECT_EQ(ckpt.router_config.num_experts, 3);
  EXPECT_EQ(ckpt.expert_config.num_heads, 2);
  EXPECT_EQ(ckpt.expert_config.text_length, 5);
  EXPECT_EQ(ckpt.router_config.num_heads, 2);
  for (int k = 0; k < 3; ++k) {
    const paris_golden g(k);
    dit::workspace<ddm::host_space> ws;
    ddm::batch<float> out(g.rows(), ckpt.experts[static_cast<std::size_t>(k)]->output_values());
    const auto n = ckpt.experts[0]->input_values();
    ckpt.experts[static_cast<std::size_t>(k)]->forward(
        {}, ddm::batch_view<const float>(g.x.data(), g.rows(), n), g.t,
        ddm::batch_view<const float>(g.text.data(), g.rows(), g.config.text_values()), out.view(), ws);
    const auto a = dit_test::compare(std::vector<float>(out.data(), out.data() + out.size()), g.output);
    EXPECT_LE(a.max_abs, 1e-4) << "expert_" << k;
  }
}

// A scratch copy of the fixture folder to break in one way per test.
struct scratch_folder {
  fs::path dir;
  explicit scratch_folder(const std::string& name) : dir(fs::temp_directory_path() / ("ddm_paris_" + name)) {
    fs::remove_all(dir);
    fs::copy(fixture("paris_tiny"), dir, fs::copy_options::recursive);
  }
  ~scratch_folder() { fs::remove_all(dir); }
};

std::string load_error(const fs::path& dir) {
  try {
    (void)dit::load_paris(dir);
  } catch (const ddm::error& e) {
    return e.message();
  }
  return "no error";
}

TEST(ParisLoader, RejectsFoldersThatDoNotFit) {
  {
    scratch_folder s("extra_expert");
    fs::copy(s.dir / "expert_0", s.dir / "expert_3", fs::copy_options::recursive);
    const auto msg = load_error(s.dir);
    EXPECT_NE(msg.find("scores 3 experts but"), std::string::npos) << msg;
    EXPECT_NE(msg.find("holds 4"), std::string::npos) << msg;
  }
  {
    scratch_folder s("no_router");
    fs::remove_all(s.dir / "router");
    EXPECT_NE(load_error(s.dir).find("router/pytorch_model.safetensors' is missing"), std::string::npos);
  }
  {
    scratch_folder s("no_experts");
    for (int k = 0; k < 3; ++k) fs::remove_all(s.dir / ("expert_" + std::to_string(k)));
    EXPECT_NE(load_error(s.dir).find("has no expert_0 folder"), std::string::npos);
  }
  {
    // expert_1 with its second layer removed: a shallower architecture than expert_0.
    scratch_folder s("mismatched");
    const fs::path f = s.dir / "expert_1" / "diffusion_pytorch_model.safetensors";
    const ddm::io::safetensors_file full(f);
    ddm::io::safetensors_writer w;
    for (const auto& t : full.tensors())
      if (t.name.rfind("layers.1.", 0) != 0) w.add_raw(t.name, t.dtype, t.shape, full.raw(t.name));
    const auto bytes = w.to_bytes();
    w.write(f.string() + ".tmp");
    fs::rename(f.string() + ".tmp", f);
    const auto msg = load_error(s.dir);
    EXPECT_NE(msg.find("expert_1"), std::string::npos) << msg;
    EXPECT_NE(msg.find("does not have the configuration of expert_0"), std::string::npos) << msg;
  }
  EXPECT_NE(load_error(fixture("nonexistent")).find("is not a directory"), std::string::npos);
}

}  // namespace
