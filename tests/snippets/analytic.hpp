// The names that the analytic-DDM snippets of docs/*.md assume (tests/snippets/extract.py).
#pragma once
#include <cstdio>

#include <ddm/ddm.hpp>

namespace dd = ddm::diagnostics;
inline const ddm::synthetic::analytic_ddm model;
inline ddm::batch<double> x(256, model.dim());
