// A replacement for libFuzzer's main() where the compiler has no -fsanitize=fuzzer (GCC): it
// replays every file of the corpus directories, then runs seeded random mutations of them
// (byte flips, insertions, deletions, splices and length-field edits), so the CTest smoke run
// exercises the reader with the same bounded number of inputs either way.
//
//     ddm_fuzz_safetensors [-runs=N] [-seed=S] [-max_len=L] corpus_dir...
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

int main(int argc, char** argv) {
  long runs = 1000;
  std::uint64_t seed = 1;
  std::size_t max_len = 4096;
  std::vector<std::vector<std::uint8_t>> corpus;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.rfind("-runs=", 0) == 0) {
      runs = std::stol(arg.substr(6));
    } else if (arg.rfind("-seed=", 0) == 0) {
      seed = std::stoull(arg.substr(6));
    } else if (arg.rfind("-max_len=", 0) == 0) {
      max_len = std::stoul(arg.substr(9));
    } else if (arg.rfind('-', 0) == 0) {
      continue;  // other libFuzzer flags mean nothing here
    } else if (std::filesystem::is_directory(arg)) {
      for (const auto& entry : std::filesystem::directory_iterator(arg)) {
        std::ifstream in(entry.path(), std::ios::binary);
        corpus.emplace_back(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
      }
    }
  }
  for (const auto& input : corpus) LLVMFuzzerTestOneInput(input.data(), input.size());
  if (corpus.empty()) corpus.emplace_back();
  std::mt19937_64 gen(seed);
  auto pick = [&](std::size_t n) { return n == 0 ? std::size_t{0} : static_cast<std::size_t>(gen() % n); };
  for (long r = 0; r < runs; ++r) {
    auto input = corpus[pick(corpus.size())];
    const int edits = 1 + static_cast<int>(gen() % 4);
    for (int e = 0; e < edits; ++e) {
      switch (gen() % 6) {
        case 0:
          if (!input.empty()) input[pick(input.size())] ^= static_cast<std::uint8_t>(1u << (gen() % 8));
          break;
        case 1:
          if (!input.empty()) input[pick(input.size())] = static_cast<std::uint8_t>(gen());
          break;
        case 2:
          input.insert(input.begin() + static_cast<std::ptrdiff_t>(pick(input.size() + 1)),
                       static_cast<std::uint8_t>("{}[]\",:0123456789 "[gen() % 18]));
          break;
        case 3:
          if (!input.empty()) input.erase(input.begin() + static_cast<std::ptrdiff_t>(pick(input.size())));
          break;
        case 4: {  // splice in a piece of another input
          const auto& other = corpus[pick(corpus.size())];
          if (other.empty()) break;
          const std::size_t from = pick(other.size());
          const std::size_t len = 1 + pick(std::min<std::size_t>(32, other.size() - from));
          input.insert(input.begin() + static_cast<std::ptrdiff_t>(pick(input.size() + 1)),
                       other.begin() + static_cast<std::ptrdiff_t>(from),
                       other.begin() + static_cast<std::ptrdiff_t>(from + len));
          break;
        }
        default:  // rewrite the header length
          if (input.size() >= 8) {
            const std::uint64_t n = gen() % 2 ? gen() : gen() % (input.size() + 8);
            std::memcpy(input.data(), &n, 8);
          }
          break;
      }
    }
    if (input.size() > max_len) input.resize(max_len);
    LLVMFuzzerTestOneInput(input.data(), input.size());
  }
  std::printf("ddm_fuzz_safetensors (standalone driver): %zu corpus inputs replayed, %ld mutated inputs run\n",
              corpus.size(), runs);
  return 0;
}
