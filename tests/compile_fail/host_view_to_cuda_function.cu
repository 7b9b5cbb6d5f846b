// Must not compile: host memory handed to a CUDA function of ddm. fill_normal with a CUDA
// context takes a batch_view<T, ddm::cuda_space>; a host view does not convert to one.
#include <ddm/cuda.hpp>

int main() {
  const ddm::cuda_context ctx;
  ddm::batch<float> host(2, 3);
  ddm::fill_normal(ctx, host.view(), 1);
}
