#!/usr/bin/env python3
"""Times examples/03_fashion/reference.py's PyTorch eager sampler on a committed Fashion-MNIST DDM
folder: the peer that ddm's learned-DDM sampler is compared with (same weights, noise, threads).

    python bench/peers/fashion_sampler.py --folder examples/03_fashion/models/fashion-classes

For each thread count and policy: B samples, Heun with `steps` steps on ddm's uniform schedule,
router temperature 1; one untimed warm-up run, then the median of `repeats` whole runs. Prints one
JSON object per line: folder, policy, threads, batch, steps, expert_evaluations (rows x experts
actually evaluated, summed over the run), ms_per_run (the whole batch), us_per_sample.
"""
import argparse
import json
import os
import statistics
import sys
import time

try:
    import torch
except ImportError as e:
    print(f"fashion_sampler.py: skipped, PyTorch is not importable ({e})")
    sys.exit(77)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "examples", "03_fashion"))
import fashion_nets as fn  # noqa: E402
import reference as ref  # noqa: E402


class CountingField(ref.RoutedField):
    """The reference's routed field, counting the expert rows it evaluates (not timed separately)."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.expert_rows = 0

    def __call__(self, z, t):
        w = ref.policy_weights(self.probabilities(z, t), self.policy)
        self.expert_rows += int((w != 0).sum())
        return super().__call__(z, t)


def main(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--folder", default=os.path.join(ROOT, "examples", "03_fashion", "models", "fashion-classes"))
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--steps", type=int, default=32)
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    p.add_argument("--policies", default="top2,full")
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args(argv)
    for name in ("batch", "steps", "repeats"):
        if getattr(a, name) < 1:
            p.error(f"--{name} = {getattr(a, name)}, expected an integer >= 1")
    threads = [int(x) for x in a.threads.split(",")]
    policies = a.policies.split(",")
    for pol in policies:
        if pol not in ref.POLICIES:
            p.error(f"--policies: '{pol}', expected names from {', '.join(ref.POLICIES)}")
    ddm = fn.load_folder(a.folder)
    d = ddm["config"]["latent_dim"]
    z = torch.randn(a.batch, d, generator=torch.Generator().manual_seed(0))
    for n in threads:
        torch.set_num_threads(n)
        for pol in policies:
            ref.sample(ref.RoutedField(ddm, pol), z, a.steps, "heun")  # warm-up
            times = []
            for _ in range(a.repeats):
                t0 = time.perf_counter()
                ref.sample(ref.RoutedField(ddm, pol), z, a.steps, "heun")
                times.append(time.perf_counter() - t0)
            counter = CountingField(ddm, pol)
            ref.sample(counter, z, a.steps, "heun")
            ms = 1e3 * statistics.median(times)
            print(json.dumps({"folder": ddm["config"]["name"], "policy": pol, "threads": n, "batch": a.batch,
                              "steps": a.steps, "integrator": "heun", "expert_evaluations": counter.expert_rows,
                              "ms_per_run": round(ms, 2), "us_per_sample": round(1e3 * ms / a.batch, 2),
                              "torch": torch.__version__, "load_average": [round(x, 2) for x in os.getloadavg()]}),
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
