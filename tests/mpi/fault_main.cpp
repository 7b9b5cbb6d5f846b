// The faults that no exchange can report, run by CTest under mpirun: they must end the job within
// a bounded time, never hang it.
//   ddm_test_mpi_fault stop   rank 1 stops calling the experts (it leaves the sampler, as a rank
//                             whose router threw would): the others abort after their 2 s timeout
//                             with a message naming rank, call and exchange.
//   ddm_test_mpi_fault die    rank 1 exits in the middle of sampling: mpirun ends the others.
// CTest checks the output (and the time limit) of each.

#include <cstdio>
#include <cstdlib>
#include <string>

#include <ddm/ddm.hpp>
#include <ddm/mpi.hpp>

int main(int argc, char** argv) {
  ddm::mpi::environment env(argc, argv);
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode != "stop" && mode != "die") {
    std::fprintf(stderr, "usage: ddm_test_mpi_fault stop|die\n");
    return 2;
  }
  const auto comm = ddm::mpi::communicator::world();
  const auto sys = ddm::synthetic::analytic_ddm(ddm::synthetic::analytic_ddm_options{.clusters = 4, .dim = 4});
  const auto mine = ddm::mpi::shard_of(8 * comm.size(), comm);
  auto experts = ddm::mpi::make_distributed_experts<double>(
      comm, ddm::mpi::placement::round_robin(4, comm.size()), sys.experts(), mine.first, {.timeout_seconds = 2.0});
  auto field = ddm::make_routed_field<double>(std::move(experts), sys.router(), ddm::top_1());
  ddm::batch<double> x(mine.rows, 4);
  ddm::fill_normal(ddm::host_context{}, x.view(), 3);
  ddm::batch<double> v(mine.rows, 4);
  for (int call = 0; call < 5; ++call) {
    if (comm.rank() == 1 && call == 3) {
      if (mode == "die") std::_Exit(3);
      std::fprintf(stderr, "rank 1 stops calling at call 3\n");
      break;
    }
    field(x.cview(), 1.0 - 0.1 * call, v.view());
  }
  // Rank 1 ("stop") waits here for the others, which never come: their timeout ends the job.
  MPI_Barrier(comm.get());
  return 0;
}
