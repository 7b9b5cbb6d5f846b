// The names that the MPI snippets of docs/distributed.md assume (tests/snippets/extract.py);
// compiled with ddm::mpi, skipped where MPI is absent.
#pragma once
#include <cstdio>

#include <ddm/ddm.hpp>
#include <ddm/mpi.hpp>

inline const ddm::synthetic::analytic_ddm model;
