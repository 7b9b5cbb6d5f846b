// Must not compile: a host view where a device view is required.
#include <ddm/ddm.hpp>

void needs_device_memory(ddm::batch_view<float, ddm::cuda_space> /*x*/) {}

int main() {
  ddm::batch<float> host(2, 3);
  needs_device_memory(host.view());
}
