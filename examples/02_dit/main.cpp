// Sampling DiT networks: an original DiT checkpoint (one facebookresearch/DiT-layout safetensors
// file), or a DDM of DiT experts: a Paris-layout folder (expert_k/diffusion_pytorch_model.safetensors
// and router/pytorch_model.safetensors) becomes one ddm velocity field -- the experts, the DiT
// router and a routing policy combined by ddm::routed_field -- and is integrated from noise
// (t = 1) to data (t = 0) on the CPU or a CUDA device, while observers report which experts the
// router picked and ddm's routing diagnostics (expert disagreement, angular deviation).
//
//   ddm-dit [--checkpoint PATH] [--device cpu|cuda] [--storage f32|bf16|f16] [--policy SPEC]
//           [--steps N] [--solver euler|heun|dpm++2m] [--batch B] [--cfg S] [--seed N] [--text FILE]
//           [--diagnostics N] [--threads N] [--out FILE] [--heads N] [--class N] [--guided-channels N]
//
// Without --checkpoint it runs the tiny random-weight fixture of the tests (three experts and a
// router of width 32), which exercises every piece but makes no images. With real Paris weights,
// pass CLIP ViT-L/14 text states in a safetensors file (--text) holding "text" (N, 77, 768) and
// optionally "uncond" (1, 77, 768) (the empty prompt), computed with the Python text encoder; the
// sampled latents (--out) decode with the sd-vae-ft-mse VAE after division by 0.18215.
// --device cuda needs a build with the CUDA toolkit (run_cuda.cu) and a GPU; --storage bf16 / f16
// (device only) keeps the Linear weights in 16 bits.

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <exception>
#include <limits>
#include <new>
#include <string>

#include "dit/backend_host.hpp"
#include "driver.hpp"
#if DDM_DIT_FASHION
#include "fashion_ddm.hpp"
#endif

namespace {

// Whole-string numbers only: "3x", "abc", "nan" or an out-of-range value is a usage error (exit 2),
// never a partial parse, a wrapped unsigned or an uncaught std::invalid_argument.
long long integer_of(const std::string& flag, const std::string& v, long long min, long long max) {
  long long i = 0;
  std::size_t n = 0;
  try {
    i = std::stoll(v, &n);
  } catch (const std::exception&) {
    n = 0;
  }
  if (v.empty() || n != v.size() || i < min || i > max)
    ddm_dit::usage((flag + " expects an integer in [" + std::to_string(min) + ", " + std::to_string(max) +
                    "], got '" + v + "'").c_str());
  return i;
}

double number_of(const std::string& flag, const std::string& v) {
  double d = 0;
  std::size_t n = 0;
  try {
    d = std::stod(v, &n);
  } catch (const std::exception&) {
    n = 0;
  }
  if (v.empty() || n != v.size() || !std::isfinite(d))
    ddm_dit::usage((flag + " expects a finite number, got '" + v + "'").c_str());
  return d;
}

// What --help adds to the usage line: every flag, what it does and its default (check_cli.py
// checks that each flag of the usage line is described here with its default).
const char* const help_text = R"(
Samples a diffusion model of DiT networks and prints its trajectory. --checkpoint names either
  - a Paris-layout folder (expert_k/ and router/ safetensors files, docs/dit.md): the experts and
    the router combined by a routing policy; prints the routing and, with --diagnostics, the
    experts' disagreement and alignment; or
  - one original DiT checkpoint (facebookresearch/DiT's state_dict saved as safetensors): class-
    conditional, guided with the null class, its DDPM eps turned into a rectified-flow velocity.

  --checkpoint PATH  a Paris-layout folder or an original DiT .safetensors file (default:
                     tests/dit/golden/paris_tiny, three random width-32 experts that exercise the
                     pipeline but generate nothing)
  --device cpu|cuda  where the models run (default cpu; cuda needs a build with CUDA and a GPU)
  --storage f32|bf16|f16
                     how the Linear weights are kept on the GPU (default f32; bf16/f16 need --device cuda)
  --policy SPEC       folders: the routing policy by ddm's name (ddm::policy_by_name): top1, top2,
                     topk:K, full, threshold:P, confidence:C, ratio:R, A_then_B@S, ... (default top2)
  --steps N          uniform sampling steps from t = 1 to 0, 1 <= N <= 1,000,000 (default 20)
  --solver euler|heun|dpm++2m
                     the integrator, by ddm's name (default euler)
  --batch B          samples, 1 <= B <= 2^20 (default 4); with --text, the file's number of prompts instead
  --cfg S            classifier-free guidance scale (default 4; 1 = the conditional model alone)
  --seed N           seed of the starting noise and of the stand-in text states (default 2026)
  --text FILE        folders: text states, a safetensors file with 'text' (N, length, width) and
                     optionally 'uncond' (1, length, width) (default: random stand-ins, one per sample)
  --diagnostics N    folders: attach the routing observer every N-th step; 0 = off (default 5)
  --threads N        CPU threads of the host backend; 0 = OMP_NUM_THREADS or OpenMP's default (default 0)
  --out FILE         write the final latents as a safetensors file ('latents', (B, C*H*W); default: none)
  --heads N          DiT file: attention heads, which its shapes cannot reveal (default: the file's
                     metadata 'num_heads'; an error when neither gives it. DiT-S 6, B 12, L 16, XL 16)
  --class N          DiT file: the class label of every sample (default: sample i gets class
                     i mod num_classes)
  --guided-channels N
                     DiT file: guide the first N eps channels and take the conditional prediction
                     on the rest; 3 reproduces the official forward_with_cfg (default 0: every channel,
                     the standard formula)
  --png FILE         a fashion-dit folder (examples/03_fashion/models/fashion-dit: original-DiT
                     experts in pixel space and a DiT router): write the samples as a PNG grid, 8 per
                     row (default: none)
  --placement SPEC   a fashion-dit folder under mpirun -np N: sample with the experts spread over the
                     N ranks, each rank sampling its shard of the batch and reaching the experts over
                     MPI (docs/distributed.md): round-robin, balanced (from a 4-step profiling run,
                     a spare slot per rank for replicas of hot experts) or owners per expert
                     '0|1|2,3|...'; prints what one process prints (default: none, one process)
  --help, -h         this message (default: off)
)";

// Size flags have bounds that no run comes near, so that a mistyped value is refused with the
// flag's name at once, instead of failing as bad_alloc or "vector::reserve" after the load.
constexpr long long max_steps = 1'000'000;
constexpr long long max_batch = 1 << 20;

ddm_dit::options parse(int argc, char** argv) {
  constexpr long long int_max = std::numeric_limits<int>::max();
  ddm_dit::options o;
  bool policy_set = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) ddm_dit::usage(("missing value after " + a).c_str());
      return argv[++i];
    };
    if (a == "--checkpoint") o.checkpoint = value();
    else if (a == "--device") o.device = value();
    else if (a == "--policy") {
      o.policy = value();
      policy_set = true;
    }
    else if (a == "--storage") o.storage = value();
    else if (a == "--solver") o.solver = value();
    else if (a == "--steps") o.steps = integer_of(a, value(), 1, max_steps);
    else if (a == "--batch") o.batch = integer_of(a, value(), 1, max_batch);
    else if (a == "--cfg") o.cfg = number_of(a, value());
    else if (a == "--seed") o.seed = static_cast<unsigned long long>(integer_of(a, value(), 0, std::numeric_limits<long long>::max()));
    else if (a == "--text") o.text_file = value();
    else if (a == "--diagnostics") {
      o.diagnostics = integer_of(a, value(), 0, int_max);
      o.diagnostics_set = true;
    }
    else if (a == "--threads") o.threads = static_cast<int>(integer_of(a, value(), 0, 4096));
    else if (a == "--out") o.out = value();
    else if (a == "--png") o.png = value();
    else if (a == "--placement") o.placement = value();
    else if (a == "--heads") o.heads = integer_of(a, value(), 1, int_max);
    else if (a == "--class") o.class_label = integer_of(a, value(), 0, int_max);
    else if (a == "--guided-channels") o.guided_channels = integer_of(a, value(), 0, int_max);
    else if (a == "--help" || a == "-h") {
      std::printf("%s%s", ddm_dit::usage_text, help_text);
      std::exit(0);
    } else {
      ddm_dit::usage(("unknown argument " + a).c_str());
    }
  }
  if (o.device != "cpu" && o.device != "cuda") ddm_dit::usage("--device must be cpu or cuda");
  // Checked here rather than after the (possibly minutes-long) checkpoint load.
  try {
    (void)ddm::policy_by_name(o.policy);
  } catch (const ddm::argument_error& e) {
    ddm_dit::usage(("--policy: " + std::string(e.what())).c_str());
  }
  const auto solver_names = ddm::integrator_names(ddm_dit::solvers{});
  if (std::find(solver_names.begin(), solver_names.end(), o.solver) == solver_names.end())
    ddm_dit::usage(("--solver must be one of " + ddm::integrator_names_joined(ddm_dit::solvers{})).c_str());
  // Flags of the other kind of checkpoint would be ignored without a word: refused instead.
  const bool fashion = ddm_dit::is_fashion_dit_folder(o);
  if (!o.placement.empty() && !fashion)
    ddm_dit::usage(("--placement is for a fashion-dit folder; '" + o.checkpoint + "' is not one").c_str());
  if (!o.png.empty() && !fashion)
    ddm_dit::usage(("--png is for a fashion-dit folder (pixel-space samples); '" + o.checkpoint + "' is not one").c_str());
  if (fashion && (!o.text_file.empty() || o.device != "cpu" || o.storage != "f32"))
    ddm_dit::usage("--text, --device and --storage are not for a fashion-dit folder (unconditional, CPU)");
  if (ddm_dit::is_dit_file(o)) {
    if (policy_set || !o.text_file.empty())
      ddm_dit::usage(("--policy and --text are for Paris-layout folders; '" + o.checkpoint +
                      "' is one original DiT checkpoint").c_str());
  } else if (o.heads != 0 || o.class_label != -1 || o.guided_channels != 0) {
    ddm_dit::usage(("--heads, --class and --guided-channels are for an original DiT checkpoint (one .safetensors "
                    "file); '" + o.checkpoint + "' is not a file").c_str());
  }
  if (ddm_dit::storage_of(o.storage) != dit::weight_storage::f32 && o.device != "cuda")
    ddm_dit::usage("--storage bf16 / f16 needs --device cuda (the CPU backend keeps float weights)");
  return o;
}

}  // namespace

#if !defined(DDM_DIT_CUDA)
int ddm_dit::run_cuda(const options& /*o*/) {
  std::fprintf(stderr,
               "ddm-dit: --device cuda: this build has no CUDA backend (configure with a CUDA toolkit, "
               "-DDDM_ENABLE_CUDA=ON, to build examples/02_dit/run_cuda.cu)\n");
  return 1;
}
#endif

int main(int argc, char** argv) {
  const ddm_dit::options o = parse(argc, argv);
  try {
    if (o.device == "cuda") return ddm_dit::run_cuda(o);
    if (o.threads > 0) dit::set_host_threads(o.threads);
    if (ddm_dit::is_fashion_dit_folder(o)) {
#if DDM_DIT_FASHION
      if (!o.placement.empty()) {
#if DDM_DIT_MPI
        const ddm::mpi::environment mpi(argc, argv);
        return ddm_dit::run_fashion_dit_distributed(o);
#else
        std::fprintf(stderr, "ddm-dit: --placement: this build has no MPI (Debian packages openmpi-bin "
                     "libopenmpi-dev; tools/setup.sh installs them)\n");
        return 1;
#endif
      }
      return ddm_dit::run_fashion_dit(o);
#else
      std::fprintf(stderr, "ddm-dit: '%s' is a fashion-dit folder, and this build has no fashion sub-library "
                   "(examples/03_fashion: zlib1g-dev, libeigen3-dev)\n", o.checkpoint.c_str());
      return 1;
#endif
    }
    const std::string backend = "CPU (" + std::to_string(dit::host_threads()) + " threads, " + dit::host_blas_name() + ")";
    return ddm_dit::run_checkpoint<ddm::host_space>(o, ddm::host_context{}, backend.c_str());
  } catch (const ddm::error& e) {
    std::fprintf(stderr, "ddm-dit: %s\n", e.message());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "ddm-dit: out of memory: --batch %ld samples of this model (latents, text states and "
                 "activations) do not fit; lower --batch\n", o.batch);
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ddm-dit: %s\n", e.what());
    return 1;
  }
}
