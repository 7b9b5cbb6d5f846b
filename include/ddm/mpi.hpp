#pragma once
// Expert-parallel sampling over MPI (link ddm::mpi): experts placed on ranks, rows exchanged
// per routed-field call. See docs/distributed.md.

#include "ddm/mpi/communicator.hpp"
#include "ddm/mpi/distributed_experts.hpp"
#include "ddm/mpi/placement.hpp"
