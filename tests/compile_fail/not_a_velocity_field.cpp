// Must not compile: the callable takes a single argument, so it is not a velocity field.
// The test checks that the user sees ddm's explanation of the concept.
#include <ddm/ddm.hpp>

int main() {
  ddm::batch<float> x(2, 3);
  auto not_a_field = [](float value) { return value; };
  ddm::sample(not_a_field, x, ddm::schedules::uniform(4), ddm::euler{});
}
