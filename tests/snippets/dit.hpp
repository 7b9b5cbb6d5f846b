// The names that docs/dit.md's host snippet assumes (tests/snippets/extract.py); linked with the
// DiT example's models (ddm_dit).
#pragma once
#include <memory>

#include <ddm/ddm.hpp>

inline const ddm::index_t n = 4;
