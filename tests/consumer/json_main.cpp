// Uses ddm::json (the safetensors reader and writer) the way a consumer would: built whenever
// the ddm found or added provides that target.
#include <cstdio>
#include <vector>

#include <ddm/io/safetensors.hpp>
#include <ddm/io/safetensors_writer.hpp>

int main() {
  ddm::io::safetensors_writer w;
  w.add("w", {2}, std::vector<float>{1.5f, -2.0f}, ddm::io::dtype::bf16);
  const auto f = ddm::io::safetensors_file::from_bytes(w.to_bytes());
  const auto v = f.read<float>("w");
  std::printf("w = [%g, %g]\n", v[0], v[1]);
  return v[0] == 1.5f && v[1] == -2.0f ? 0 : 1;
}
