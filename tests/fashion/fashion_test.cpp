// The learned Fashion-MNIST DDMs on the C++ side (examples/03_fashion/fashion) against PyTorch:
// every network, both routers, the decoder, the classifier and the routed sampler agree with the
// golden outputs of the reference scripts; the loader refuses malformed folders with messages
// that name the file, the tensor and the expectation; the quality measures have their defining
// properties; the IDX reader checks every size.
//
// Golden sets: tests/fashion/golden/tiny (random weights, tests/fashion/make_forward_golden.py)
// always; <name>.safetensors of the trained folders examples/03_fashion/models/<name>
// (examples/03_fashion/reference.py golden) when both are in the tree, skipped otherwise.

#include <gtest/gtest.h>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <ddm/ddm.hpp>
#include <ddm/io/safetensors.hpp>
#include <ddm/io/safetensors_writer.hpp>
#include <nlohmann/json.hpp>

#include "fashion/dit_folder.hpp"
#include "fashion/fields.hpp"
#include "fashion/folder.hpp"
#include "fashion/idx.hpp"
#include "fashion/quality.hpp"

namespace {

namespace fs = std::filesystem;
using ddm::index_t;

const fs::path source_dir = DDM_SOURCE_DIR;

// Largest |a - b| over the tensor, and the scale it is judged against (max |b|, at least 1).
struct diff {
  double max_abs = 0, scale = 1;
};
diff compare(const std::vector<float>& a, const std::vector<float>& b) {
  diff d;
  EXPECT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    d.max_abs = std::max(d.max_abs, std::abs(static_cast<double>(a[i]) - b[i]));
    d.scale = std::max(d.scale, std::abs(static_cast<double>(b[i])));
  }
  return d;
}

std::vector<float> softmax_rows(std::vector<float> v, index_t cols) {
  for (std::size_t r = 0; r < v.size() / static_cast<std::size_t>(cols); ++r) {
    float* x = v.data() + r * static_cast<std::size_t>(cols);
    const float m = *std::max_element(x, x + cols);
    double s = 0;
    for (index_t c = 0; c < cols; ++c) s += std::exp(static_cast<double>(x[c] - m));
    for (index_t c = 0; c < cols; ++c) x[c] = static_cast<float>(std::exp(static_cast<double>(x[c] - m)) / s);
  }
  return v;
}

// Bounds. Both sides compute in float32 from the same F16-rounded weights; they differ in the
// order of the sums (sgemm's blocking against PyTorch's kernels) and in the transcendental
// functions, a few float ulps per layer: measured up to 7e-7 of the output's scale for one
// forward pass and 1e-6 for a whole sample on the trained folders (the test prints it); the DiT
// tier, with attention's softmax and the tanh GELU, 3.1e-6 and 1.2e-6. The bounds leave a factor
// of three to ten above that; a wrong formula (a missing bias, a transposed weight,
// a LayerNorm without its affine, a time embedding off by one frequency) moves outputs by 1e-2
// and more. A sample is 10 (Euler) or 19 (Heun) passes of the routed field; a routing decision
// that flipped between two experts of nearly equal probability would break the sampling bound,
// and the test would name the tensor.
constexpr double forward_bound = 1e-5;
constexpr double sample_bound = 1e-4;

void check_golden(const fs::path& folder_dir, const fs::path& golden_path) {
  const auto folder = fashion::load_folder(folder_dir);
  const ddm::io::safetensors_file g(golden_path);
  const index_t d = folder->cfg.latent_dim, k = folder->cfg.num_experts;
  const auto z = g.read<float>("z");
  const index_t b = static_cast<index_t>(z.size()) / d;
  ASSERT_EQ(g.info("z").shape, (std::vector<std::uint64_t>{static_cast<std::uint64_t>(b), static_cast<std::uint64_t>(d)}));
  const ddm::batch_view<const float> zv(z.data(), b, d);
  double worst_forward = 0, worst_sample = 0;
  auto check = [&](const std::string& name, const std::vector<float>& ours, double bound) {
    const auto ref = g.read<float>(name);
    const auto r = compare(ours, ref);
    (bound == sample_bound ? worst_sample : worst_forward) =
        std::max(bound == sample_bound ? worst_sample : worst_forward, r.max_abs / r.scale);
    EXPECT_LE(r.max_abs, bound * r.scale) << golden_path << ": " << name << " differs by " << r.max_abs << " (scale "
                                          << r.scale << ", bound " << bound << " x scale)";
  };
  auto experts = fashion::make_experts(folder);
  auto mono = fashion::make_monolith(folder);
  fashion::learned_router router(folder, 1.0);
  fashion::oracle_router oracle(folder, 1.0);
  for (const char* tt : {"1.0", "0.5", "0.05"}) {
    const double t = std::stod(tt);
    std::vector<float> v(static_cast<std::size_t>(b * d)), lg(static_cast<std::size_t>(b * k));
    for (index_t e = 0; e < k; ++e) {
      experts.evaluate(static_cast<std::size_t>(e), zv, t, ddm::batch_view<float>(v.data(), b, d));
      check("expert." + std::to_string(e) + ".t" + tt, v, forward_bound);
    }
    mono(zv, t, ddm::batch_view<float>(v.data(), b, d));
    check(std::string("monolith.t") + tt, v, forward_bound);
    router(zv, t, ddm::batch_view<float>(lg.data(), b, k));
    check(std::string("router.t") + tt, lg, forward_bound);
    oracle(zv, t, ddm::batch_view<float>(lg.data(), b, k));
    check(std::string("oracle.t") + tt, softmax_rows(lg, k), forward_bound);
  }
  std::vector<float> images(static_cast<std::size_t>(b * 784));
  folder->latent.decode(zv, ddm::batch_view<float>(images.data(), b, 784));
  check("images", images, forward_bound);
  const index_t nf = folder->clf.features_dim();
  std::vector<float> feats(static_cast<std::size_t>(b * nf)), logits(static_cast<std::size_t>(b * 10));
  // Features of the golden images, so that the classifier is judged alone.
  const auto gimages = g.read<float>("images");
  folder->clf.forward(ddm::batch_view<const float>(gimages.data(), b, 784), ddm::batch_view<float>(feats.data(), b, nf),
                      ddm::batch_view<float>(logits.data(), b, 10));
  check("features", feats, forward_bound);
  check("class_logits", logits, forward_bound);

  for (const char* policy : {"top1", "top2", "full"})
    for (const char* integ : {"euler", "heun"}) {
      std::vector<float> x(z);
      const ddm::batch_view<float> xv(x.data(), b, d);
      const auto schedule = ddm::schedules::uniform(10);
      auto run = [&](auto pol) {
        auto field = ddm::make_routed_field<float>(fashion::make_experts(folder), fashion::learned_router(folder, 1.0), pol);
        if (std::string(integ) == "euler") {
          ddm::sample(field, xv, schedule, ddm::euler{});
        } else {
          ddm::sample(field, xv, schedule, ddm::heun{});
        }
      };
      const std::string p = policy;
      if (p == "full") {
        run(ddm::full_ensemble{});
      } else {
        run(p == "top1" ? ddm::top_1() : ddm::top_2());
      }
      check("sample." + p + "." + integ, x, sample_bound);
    }
  std::printf("[ measured ] %s: largest |C++ - PyTorch| / scale: forward %.2e (bound %.0e), samples %.2e (bound %.0e)\n",
              golden_path.filename().string().c_str(), worst_forward, forward_bound, worst_sample, sample_bound);
}

TEST(FashionGolden, TinyRandomFolderAgreesWithPyTorch) {
  check_golden(source_dir / "tests/fashion/golden/tiny", source_dir / "tests/fashion/golden/tiny.safetensors");
}

class FashionTrainedGolden : public ::testing::TestWithParam<const char*> {};

TEST_P(FashionTrainedGolden, AgreesWithPyTorch) {
  const fs::path folder = source_dir / "examples/03_fashion/models" / GetParam();
  const fs::path golden = source_dir / "tests/fashion/golden" / (std::string(GetParam()) + ".safetensors");
  if (!fs::exists(folder / "config.json") || !fs::exists(golden))
    GTEST_SKIP() << "no trained folder " << folder << " with its golden " << golden << " in this tree";
  check_golden(folder, golden);
}

INSTANTIATE_TEST_SUITE_P(Folders, FashionTrainedGolden, ::testing::Values("fashion-classes", "fashion-kmeans"));

// The DiT tier (models/fashion-dit): examples/02_dit's DiT and router, loaded from the folder,
// against PyTorch (tests/fashion/make_dit_golden.py) at the same bounds as the latent tier.
TEST(FashionDitGolden, AgreesWithPyTorch) {
  const fs::path dir = source_dir / "examples/03_fashion/models/fashion-dit";
  const fs::path golden = source_dir / "tests/fashion/golden/fashion-dit.safetensors";
  if (!fs::exists(dir / "config.json") || !fs::exists(golden))
    GTEST_SKIP() << "no trained folder " << dir << " with its golden " << golden << " in this tree";
  const auto folder = fashion::load_dit_folder(dir);
  const ddm::io::safetensors_file g(golden);
  const index_t d = fashion::image_values, k = folder->num_experts;
  double worst_forward = 0, worst_sample = 0;
  auto check = [&](const std::string& name, const std::vector<float>& ours, double bound) {
    const auto r = compare(ours, g.read<float>(name));
    double& worst = bound == sample_bound ? worst_sample : worst_forward;
    worst = std::max(worst, r.max_abs / r.scale);
    EXPECT_LE(r.max_abs, bound * r.scale) << golden << ": " << name << " differs by " << r.max_abs << " (scale " << r.scale
                                          << ", bound " << bound << " x scale)";
  };
  auto experts = fashion::make_dit_experts(folder);
  auto mono = fashion::make_dit_monolith(folder);
  fashion::dit_learned_router router(folder, 1.0);
  fashion::oracle_router oracle(folder->part, 1.0);
  index_t b = 0;
  for (const char* tt : {"1.0", "0.5", "0.05"}) {
    const double t = std::stod(tt);
    const auto x = g.read<float>(std::string("x.t") + tt);
    b = static_cast<index_t>(x.size()) / d;
    ASSERT_EQ(static_cast<index_t>(x.size()), b * d);
    const ddm::batch_view<const float> xv(x.data(), b, d);
    std::vector<float> v(static_cast<std::size_t>(b * d)), lg(static_cast<std::size_t>(b * k));
    for (index_t e : {index_t{0}, k - 1}) {
      experts.evaluate(static_cast<std::size_t>(e), xv, t, ddm::batch_view<float>(v.data(), b, d));
      check("expert." + std::to_string(e) + ".t" + tt, v, forward_bound);
    }
    // Double states reach the same float network: the inputs convert exactly, so do the outputs.
    std::vector<double> xd(x.begin(), x.end()), vd(static_cast<std::size_t>(b * d));
    experts.evaluate(0, ddm::batch_view<const double>(xd.data(), b, d), t, ddm::batch_view<double>(vd.data(), b, d));
    experts.evaluate(0, xv, t, ddm::batch_view<float>(v.data(), b, d));
    for (std::size_t i = 0; i < v.size(); ++i) ASSERT_EQ(vd[i], static_cast<double>(v[i])) << "value " << i << " at t = " << tt;
    mono(xv, t, ddm::batch_view<float>(v.data(), b, d));
    check(std::string("monolith.t") + tt, v, forward_bound);
    router(xv, t, ddm::batch_view<float>(lg.data(), b, k));
    check(std::string("router.t") + tt, lg, forward_bound);
    oracle(xv, t, ddm::batch_view<float>(lg.data(), b, k));
    check(std::string("oracle.t") + tt, softmax_rows(lg, k), forward_bound);
  }
  const auto z = g.read<float>("x.t1.0");
  const auto schedule = ddm::schedules::uniform(6);
  for (const std::string p : {"top1", "top2", "full", "monolith"}) {
    std::vector<float> x(z);
    const ddm::batch_view<float> xv(x.data(), b, d);
    auto run = [&](auto pol) {
      auto field = ddm::make_routed_field<float>(fashion::make_dit_experts(folder), fashion::dit_learned_router(folder, 1.0), pol);
      ddm::sample(field, xv, schedule, ddm::euler{});
    };
    if (p == "monolith") {
      auto field = fashion::make_dit_monolith(folder);
      ddm::sample(field, xv, schedule, ddm::euler{});
    } else if (p == "full") {
      run(ddm::full_ensemble{});
    } else {
      run(p == "top1" ? ddm::top_1() : ddm::top_2());
    }
    check("sample." + p + ".euler", x, sample_bound);
  }
  std::printf("[ measured ] fashion-dit: largest |C++ - PyTorch| / scale: forward %.2e (bound %.0e), samples %.2e (bound %.0e)\n",
              worst_forward, forward_bound, worst_sample, sample_bound);
}

// A fashion-dit folder whose config.json disagrees with its weights is refused, naming the file.
TEST(FashionDitLoader, RefusesAConfigThatDisagreesWithTheWeights) {
  const fs::path src = source_dir / "examples/03_fashion/models/fashion-dit";
  if (!fs::exists(src / "config.json")) GTEST_SKIP() << "no trained folder " << src << " in this tree";
  const fs::path dir = fs::temp_directory_path() / ("ddm-fashion-dit-loader-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::copy(src, dir);
  auto spoil = [&](const std::string& key, const nlohmann::json& value) {
    std::ifstream in(src / "config.json");
    nlohmann::json j;
    in >> j;
    j["dit"][key] = value;
    std::ofstream(dir / "config.json") << j.dump(1);
  };
  auto error = [&]() -> std::string {
    try {
      (void)fashion::load_dit_folder(dir);
    } catch (const std::exception& e) {
      return e.what();
    }
    return "";
  };
  spoil("hidden_size", 96);
  auto msg = error();
  EXPECT_NE(msg.find("expert_0.safetensors"), std::string::npos) << msg;
  spoil("input_size", 32);
  msg = error();
  EXPECT_NE(msg.find("dit.input_size = 32"), std::string::npos) << msg;
  spoil("label", 1);
  msg = error();
  EXPECT_NE(msg.find("'dit.label' = 1"), std::string::npos) << msg;
  fs::remove_all(dir);
}

// ---------------------------------------------------------------------------------------------
// Loader rejections: a copy of the tiny folder, spoiled in one way each time.

class FashionLoader : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("ddm-fashion-loader-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::copy(source_dir / "tests/fashion/golden/tiny", dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string load_error() {
    try {
      (void)fashion::load_folder(dir_);
    } catch (const ddm::io_error& e) {
      return e.what();
    }
    ADD_FAILURE() << "the spoiled folder loaded";
    return "";
  }
  // Rewrites `file` with tensor `name` replaced by `values` of `shape` (dropped when shape is empty).
  void rewrite(const std::string& file, const std::string& name, std::vector<std::uint64_t> shape) {
    const ddm::io::safetensors_file in(dir_ / file);
    ddm::io::safetensors_writer out;
    for (const auto& t : in.tensors()) {
      if (t.name != name) {
        out.add(t.name, t.shape, in.read<float>(t.name), ddm::io::dtype::f16);
      } else if (!shape.empty()) {
        std::uint64_t n = 1;
        for (auto s : shape) n *= s;
        out.add(t.name, shape, std::vector<float>(n, 0.5f), ddm::io::dtype::f16);
      }
    }
    fs::remove(dir_ / file);
    out.write(dir_ / file);
  }
  void edit_config(const std::string& from, const std::string& to) {
    std::ifstream in(dir_ / "config.json");
    std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const auto at = s.find(from);
    ASSERT_NE(at, std::string::npos) << from;
    s.replace(at, from.size(), to);
    std::ofstream(dir_ / "config.json") << s;
  }
  fs::path dir_;
};

TEST_F(FashionLoader, TheUntouchedCopyLoads) { EXPECT_NO_THROW((void)fashion::load_folder(dir_)); }

TEST_F(FashionLoader, WrongShapeNamesFileTensorShapeAndExpectation) {
  rewrite("expert_1.safetensors", "blocks.1.fc1.weight", {24, 17});
  const auto msg = load_error();
  EXPECT_NE(msg.find("expert_1.safetensors"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'blocks.1.fc1.weight' has shape [24, 17], expected [24, 16] from config.json"), std::string::npos) << msg;
  EXPECT_NE(msg.find("width = 16"), std::string::npos) << msg;
}

TEST_F(FashionLoader, MissingTensorIsNamed) {
  rewrite("router.safetensors", "out.bias", {});
  const auto msg = load_error();
  EXPECT_NE(msg.find("router.safetensors"), std::string::npos) << msg;
  EXPECT_NE(msg.find("tensor 'out.bias' is missing (expected shape [3] from config.json"), std::string::npos) << msg;
}

TEST_F(FashionLoader, ConfigThatDisagreesWithTheFilesIsRefused) {
  edit_config("\"width\": 16", "\"width\": 32");
  const auto msg = load_error();
  EXPECT_NE(msg.find("'inp.weight' has shape [16, 8], expected [32, 8] from config.json"), std::string::npos) << msg;
}

TEST_F(FashionLoader, ConfigWithTooFewDepthFindsUnexpectedTensors) {
  edit_config("\"depth\": 2", "\"depth\": 1");
  const auto msg = load_error();
  EXPECT_NE(msg.find("has tensor 'blocks.1."), std::string::npos) << msg;
  EXPECT_NE(msg.find("which config.json's architecture does not have"), std::string::npos) << msg;
}

TEST_F(FashionLoader, ExpertCountMustMatchTheFileList) {
  edit_config("\"num_experts\": 3", "\"num_experts\": 4");
  const auto msg = load_error();
  EXPECT_NE(msg.find("files.experts names 3 files, but num_experts = 4"), std::string::npos) << msg;
}

TEST_F(FashionLoader, OracleClusterOutOfRange) {
  const ddm::io::safetensors_file in(dir_ / "partition.safetensors");
  ddm::io::safetensors_writer out;
  for (const auto& t : in.tensors()) {
    auto v = in.read<float>(t.name);
    if (t.name == "oracle_clusters") v[5] = 3.0f;
    out.add(t.name, t.shape, v, ddm::io::dtype::f16);
  }
  fs::remove(dir_ / "partition.safetensors");
  out.write(dir_ / "partition.safetensors");
  const auto msg = load_error();
  EXPECT_NE(msg.find("'oracle_clusters' has 3 at index 5, expected a cluster index in [0, 3)"), std::string::npos) << msg;
}

// ---------------------------------------------------------------------------------------------
// Quality measures: their defining properties.

std::vector<float> gaussian_set(index_t n, index_t d, unsigned seed, float shift = 0.0f) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> nd;
  std::vector<float> v(static_cast<std::size_t>(n * d));
  for (auto& x : v) x = nd(gen) + shift;
  return v;
}

TEST(FashionQuality, FrechetOfASetWithItselfIsZeroAndGrowsWithAShift) {
  const index_t n = 400, d = 6;
  const auto a = gaussian_set(n, d, 1);
  const auto b = gaussian_set(n, d, 1, 0.5f);
  const auto fa = fashion::fit_gaussian(ddm::batch_view<const float>(a.data(), n, d));
  const auto fb = fashion::fit_gaussian(ddm::batch_view<const float>(b.data(), n, d));
  EXPECT_NEAR(fashion::frechet_distance(fa, fa), 0.0, 1e-9);
  // A shift by s in every coordinate moves only the means: FD = d s^2 exactly for these sets.
  EXPECT_NEAR(fashion::frechet_distance(fa, fb), d * 0.25, 1e-4);
}

TEST(FashionQuality, PrecisionAndRecallOfIdenticalSetsAreOne) {
  const index_t n = 300, d = 5, k = 3;
  const auto a = gaussian_set(n, d, 2);
  const ddm::batch_view<const float> av(a.data(), n, d);
  const auto radii = fashion::knn_radii_squared(av, k);
  const auto pr = fashion::improved_precision_recall(av, radii, av, k);
  EXPECT_EQ(pr.precision, 1.0);
  EXPECT_EQ(pr.recall, 1.0);
}

TEST(FashionQuality, AShiftedSetLowersPrecisionAndRecall) {
  const index_t n = 300, d = 5, k = 3;
  const auto a = gaussian_set(n, d, 3);
  const auto near = gaussian_set(n, d, 4);
  const auto far = gaussian_set(n, d, 4, 1.5f);
  const ddm::batch_view<const float> av(a.data(), n, d);
  const auto radii = fashion::knn_radii_squared(av, k);
  const auto p_near = fashion::improved_precision_recall(av, radii, ddm::batch_view<const float>(near.data(), n, d), k);
  const auto p_far = fashion::improved_precision_recall(av, radii, ddm::batch_view<const float>(far.data(), n, d), k);
  EXPECT_GT(p_near.precision, p_far.precision + 0.2);
  EXPECT_GT(p_near.recall, p_far.recall + 0.2);
}

TEST(FashionQuality, KnnDistancesMatchABruteForceCount) {
  const index_t n = 50, m = 70, d = 4, k = 3;
  const auto q = gaussian_set(n, d, 5), r = gaussian_set(m, d, 6);
  const auto got = fashion::knn_squared(ddm::batch_view<const float>(q.data(), n, d), ddm::batch_view<const float>(r.data(), m, d), k);
  for (index_t i = 0; i < n; ++i) {
    std::vector<double> all;
    for (index_t j = 0; j < m; ++j) {
      double s = 0;
      for (index_t c = 0; c < d; ++c) s += std::pow(q[static_cast<std::size_t>(i * d + c)] - r[static_cast<std::size_t>(j * d + c)], 2);
      all.push_back(s);
    }
    std::sort(all.begin(), all.end());
    for (index_t j = 0; j < k; ++j) EXPECT_NEAR(got[static_cast<std::size_t>(i * k + j)], all[static_cast<std::size_t>(j)], 1e-4);
  }
}

TEST(FashionQuality, CoverageCountsClassesAndTotalVariation) {
  const std::vector<double> ref(4, 0.25);
  const std::vector<int> predicted{0, 0, 0, 1, 1, 2, 0, 0};  // shares 5/8, 2/8, 1/8, 0
  const auto c = fashion::coverage_of(predicted, ref);
  EXPECT_EQ(c.covered, 3);  // 1/8 reaches half of 1/4; class 3 is missed
  EXPECT_NEAR(c.tv_distance, 0.5 * (0.375 + 0.0 + 0.125 + 0.25), 1e-12);
}

// ---------------------------------------------------------------------------------------------
// IDX reader.

fs::path write_gz(const std::string& name, const std::vector<unsigned char>& bytes) {
  const fs::path p = fs::temp_directory_path() / (name + "-" + std::to_string(::getpid()) + ".gz");
  gzFile f = gzopen(p.string().c_str(), "wb");
  gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size()));
  gzclose(f);
  return p;
}

std::string idx_error(const fs::path& p, std::size_t rank) {
  try {
    (void)fashion::read_idx(p, rank);
  } catch (const ddm::io_error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(FashionIdx, ReadsAWellFormedFileAndRefusesBrokenOnes) {
  std::vector<unsigned char> ok{0, 0, 8, 1, 0, 0, 0, 3, 7, 8, 9};
  const auto good = write_gz("idx-good", ok);
  const auto d = fashion::read_idx(good, 1);
  EXPECT_EQ(d.dims, (std::vector<std::uint32_t>{3}));
  EXPECT_EQ(d.values, (std::vector<std::uint8_t>{7, 8, 9}));
  EXPECT_NE(idx_error(good, 3).find("has 1 dimensions, expected 3"), std::string::npos);
  auto truncated = ok;
  truncated.pop_back();
  EXPECT_NE(idx_error(write_gz("idx-short", truncated), 1).find("(truncated)"), std::string::npos);
  auto longer = ok;
  longer.push_back(1);
  EXPECT_NE(idx_error(write_gz("idx-long", longer), 1).find("has bytes after the 3 values"), std::string::npos);
  auto magic = ok;
  magic[2] = 0x0D;  // float data
  EXPECT_NE(idx_error(write_gz("idx-magic", magic), 1).find("is not that of an IDX file of unsigned bytes"), std::string::npos);
  for (const char* n : {"idx-good", "idx-short", "idx-long", "idx-magic"})
    fs::remove(fs::temp_directory_path() / (std::string(n) + "-" + std::to_string(::getpid()) + ".gz"));
}

TEST(FashionIdx, TheInstalledTestSetHasTenThousandImagesOfTenClasses) {
  const fs::path dir = DDM_FASHION_DATA;
  if (!fs::exists(dir / "t10k-images-idx3-ubyte.gz")) GTEST_SKIP() << "no Fashion-MNIST in " << dir << " (dataset-fashion-mnist)";
  std::size_t n = 0;
  const auto images = fashion::read_idx_images(dir / "t10k-images-idx3-ubyte.gz", &n);
  EXPECT_EQ(n, 10000u);
  EXPECT_EQ(images.size(), 10000u * 784u);
  const auto labels = fashion::read_idx_labels(dir / "t10k-labels-idx1-ubyte.gz", 10);
  std::vector<int> count(10, 0);
  for (int l : labels) ++count[static_cast<std::size_t>(l)];
  for (int c : count) EXPECT_EQ(c, 1000);
}

}  // namespace
