// libFuzzer target over the safetensors reader: any input must either parse into a file whose
// every float tensor can be read, or be rejected with ddm::io_error. Anything else (a crash, a
// sanitizer report, another exception) is a bug.
#include <cstddef>
#include <cstdint>
#include <vector>

#include <ddm/io/safetensors.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::vector<std::byte> bytes(size);
  for (std::size_t i = 0; i < size; ++i) bytes[i] = static_cast<std::byte>(data[i]);
  try {
    const auto file = ddm::io::safetensors_file::from_bytes(std::move(bytes), "fuzz-input");
    std::size_t touched = 0;
    for (const auto& t : file.tensors()) {
      touched += file.raw(t.name).size();
      if (ddm::io::is_readable_as_float(t.dtype)) {
        touched += file.read<float>(t.name).size();
        touched += file.read<double>(t.name).size();
      }
      if (!file.contains(t.name)) __builtin_trap();
    }
    for (const auto& [key, value] : file.metadata()) touched += key.size() + value.size();
    static volatile std::size_t sink;
    sink = touched;
  } catch (const ddm::io_error&) {
    // a rejected input: the expected outcome for most mutations
  }
  return 0;
}
