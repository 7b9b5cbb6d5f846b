// The names that the host snippets of docs/*.md assume (tests/snippets/extract.py): a float
// velocity field, a batch, a context, noise, a schedule, observers. Each snippet is compiled in a
// function after this header; its own declarations shadow these.
#pragma once
#include <cstdio>
#include <vector>

#include <ddm/ddm.hpp>

inline float my_model(float x, double t) { return x - static_cast<float>(t); }
inline auto field = [](ddm::batch_view<const float> x, double t, ddm::batch_view<float> v) {
  for (ddm::index_t r = 0; r < x.rows(); ++r)
    for (ddm::index_t c = 0; c < x.cols(); ++c) v(r, c) = my_model(x(r, c), t);
};
inline const ddm::host_context ctx{};
inline const ddm::index_t rows = 64, cols = 16;
inline ddm::batch<float> x(rows, cols);
inline ddm::batch<float> noise(rows, cols);
inline std::vector<ddm::batch<float>> batches;
inline const ddm::time_schedule schedule = ddm::schedules::uniform(20);
inline auto observer = [](const ddm::step_event<float>&) {};
inline auto other_observer = observer;
