#pragma once
// measure_policy on the host, in one process or, under mpirun (config::ranks set, a build with
// MPI), with the experts spread over the ranks and each rank sampling its shard (distributed.hpp).

#include <string>

#include "measure.hpp"

#ifndef DDM_PARADOX_MPI
#define DDM_PARADOX_MPI 0
#endif
#if DDM_PARADOX_MPI
#include "distributed.hpp"
#endif

namespace paradox {

/// One policy's measurement on the host from a source of experts and router that offers
/// context(), experts(), router(tau) and routed_field<T>(tau, policy).
template <class T, class Source, class Integrator>
measurement measure_host_policy(const config& c, const system_geometry& geo, const Source& source,
                                const std::string& key, double tau, const Integrator& integ, const progress& prog,
                                const std::string& row_key = {}) {
#if DDM_PARADOX_MPI
  if (c.ranks != nullptr) {
    auto placement =
        choose_placement<T>(*c.ranks, c, source, geo.dim, tau, ddm::policy_by_name(key, c.t_switch), integ);
    auto described = placement.describe();
    prog.note(progress_tag(tau, row_key.empty() ? key : row_key) + "experts placed " + described);
    const distributed_source<Source> dist(source, *c.ranks, std::move(placement), c.samples);
    auto m = measure_policy<T, ddm::host_space>(c, geo, dist, key, tau, integ, prog, row_key);
    m.result.placement = std::move(described);
    return m;
  }
#endif
  return measure_policy<T, ddm::host_space>(c, geo, source, key, tau, integ, prog, row_key);
}

}  // namespace paradox
