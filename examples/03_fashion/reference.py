#!/usr/bin/env python3
"""A PyTorch eager sampler of a learned Fashion-MNIST DDM folder: the independent reference the
C++ side is checked against, written from ddm's rules, not from its code paths.

    reference.py golden --folder examples/03_fashion/models/fashion-classes \\
                        --out tests/fashion/golden/fashion-classes.safetensors
    reference.py sample --folder ... --policy top2 --integrator heun --steps 32 --batch 16 --out s.safetensors

Rules (ddm's, float32 state and velocities, times in double):
  router      p = softmax(logits / tau), each row accumulated in double (include/ddm/routing/softmax.hpp)
  top1, top2  the k most probable experts and every expert tied with the k-th, w = p / sum of the selected p
  full        every expert, w = p, not renormalized (include/ddm/routing/policy.hpp)
  oracle      p = the empirical posterior over the folder's oracle subsample (fashion_nets.py)
  v           sum over the selected experts, in increasing expert index, of w_k v_k(z, t)
  schedule    uniform(n): t_i = 1 - i / n, i = 0..n (include/ddm/flow/schedule.hpp)
  euler       z += (t' - t) v(z, t)
  heun        z' = z + dt v(z, t); z += dt/2 (v(z, t) + v(z', t')); the step into t' = 0 is an Euler step
              (include/ddm/integrators/heun.hpp)
"""
import argparse
import os
import sys

try:
    import torch
    from safetensors.torch import save_file
except ImportError as e:
    print(f"reference.py: skipped, PyTorch or safetensors is not importable ({e})")
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fashion_nets as fn  # noqa: E402

POLICIES = ("top1", "top2", "full")
INTEGRATORS = ("euler", "heun")
GOLDEN_TIMES = ("1.0", "0.5", "0.05")


def uniform_schedule(steps):
    return [1.0 + (0.0 - 1.0) * i / steps for i in range(steps + 1)]


def softmax_tau(logits, tau):
    """ddm::softmax_row: (l - max) / tau, exponentiated and normalized in double, stored as float."""
    l = logits.double()
    e = torch.exp((l - l.max(dim=1, keepdim=True).values) / tau)
    return (e / e.sum(dim=1, keepdim=True)).to(logits.dtype)


def policy_weights(p, policy):
    """(B, K) router probabilities -> (B, K) weights, zero where an expert is not selected."""
    if policy == "full":
        return p.clone()
    k = {"top1": 1, "top2": 2}[policy]
    if k > p.shape[1]:
        raise ValueError(f"policy '{policy}' needs at least {k} experts, the folder has {p.shape[1]}")
    # ddm's tie rule: every expert exactly as probable as the k-th is kept too (unless that
    # probability is 0), and the tied experts share its mass through the renormalization.
    order = torch.sort(p, dim=1, descending=True, stable=True).indices[:, :k]
    selected = torch.zeros_like(p, dtype=torch.bool).scatter_(1, order, True)
    boundary = p.gather(1, order[:, k - 1 :])
    selected |= (p == boundary) & (boundary > 0)
    pd = p.double()
    total = torch.where(selected, pd, torch.zeros_like(pd)).sum(dim=1, keepdim=True)
    if not bool((total > 0).all()):
        raise ValueError(f"policy '{policy}': a row whose selected probabilities sum to 0")
    return torch.where(selected, pd / total, torch.zeros_like(pd)).to(p.dtype)


class RoutedField:
    """v(z, t) of a DDM folder under a policy; router = "learned" (tau applies) or "oracle".
    Experts run only on the rows that select them (gather, evaluate, scatter), as a DDM does."""

    def __init__(self, ddm, policy, tau=1.0, router="learned"):
        if policy not in POLICIES:
            raise ValueError(f"policy '{policy}', expected one of {', '.join(POLICIES)}")
        if not (tau > 0):
            raise ValueError(f"tau = {tau}, expected a value > 0")
        if router not in ("learned", "oracle"):
            raise ValueError(f"router '{router}', expected 'learned' or 'oracle'")
        self.ddm, self.policy, self.tau, self.router = ddm, policy, tau, router
        self.K = ddm["config"]["num_experts"]

    def probabilities(self, z, t):
        if self.router == "oracle":
            part = self.ddm["partition"]
            return fn.oracle_probabilities(z, t, part["oracle_latents"], part["oracle_clusters"], self.K)
        return softmax_tau(self.ddm["router"](z, torch.full((z.shape[0],), float(t))), self.tau)

    @torch.no_grad()
    def __call__(self, z, t):
        w = policy_weights(self.probabilities(z, t), self.policy)
        v = torch.zeros_like(z)
        for k in range(self.K):
            rows = (w[:, k] != 0).nonzero().flatten()
            if rows.numel() == 0:
                continue
            vk = self.ddm["experts"][k](z[rows], torch.full((rows.numel(),), float(t)))
            v[rows] += w[rows, k:k + 1] * vk
        return v


class NetField:
    """One TimeMLP (the monolith, or a single expert) as a velocity field."""

    def __init__(self, net):
        self.net = net

    @torch.no_grad()
    def __call__(self, z, t):
        return self.net(z, torch.full((z.shape[0],), float(t)))


@torch.no_grad()
def sample(field, z, steps, integrator):
    """Integrate z (a copy) from t = 1 to 0 on ddm's uniform schedule."""
    if integrator not in INTEGRATORS:
        raise ValueError(f"integrator '{integrator}', expected one of {', '.join(INTEGRATORS)}")
    if steps < 1:
        raise ValueError(f"steps = {steps}, expected >= 1")
    ts = uniform_schedule(steps)
    x = z.clone()
    for t, t_next in zip(ts[:-1], ts[1:]):
        dt = t_next - t
        v0 = field(x, t)
        if integrator == "euler" or t_next == 0.0:
            x = x + dt * v0
            continue
        xp = x + dt * v0
        v1 = field(xp, t_next)
        x = x + (0.5 * dt) * v0 + (0.5 * dt) * v1
    return x


@torch.no_grad()
def golden(folder, out, steps=10, tau=1.0, batch=16, seed=0):
    ddm = fn.load_folder(folder)
    cfg = ddm["config"]
    d, K = cfg["latent_dim"], cfg["num_experts"]
    z = torch.randn(batch, d, generator=torch.Generator().manual_seed(seed))
    part = ddm["partition"]
    tensors = {"z": z}
    for tt in GOLDEN_TIMES:
        t = float(tt)
        times = torch.full((batch,), t)
        for k, e in enumerate(ddm["experts"]):
            tensors[f"expert.{k}.t{tt}"] = e(z, times)
        tensors[f"monolith.t{tt}"] = ddm["monolith"](z, times)
        tensors[f"router.t{tt}"] = ddm["router"](z, times)
        tensors[f"oracle.t{tt}"] = fn.oracle_probabilities(z, t, part["oracle_latents"], part["oracle_clusters"], K)
    images = fn.decode(z, ddm["pca"]).clamp(0.0, 1.0)
    tensors["images"] = images
    tensors["features"] = ddm["classifier"].features(images)
    tensors["class_logits"] = ddm["classifier"](images)
    for policy in POLICIES:
        field = RoutedField(ddm, policy, tau)
        for integ in INTEGRATORS:
            tensors[f"sample.{policy}.{integ}"] = sample(field, z, steps, integ)
    for integ in INTEGRATORS:
        tensors[f"sample.monolith.{integ}"] = sample(NetField(ddm["monolith"]), z, steps, integ)
    for name, v in tensors.items():
        if not torch.isfinite(v).all():
            raise RuntimeError(f"golden tensor '{name}' of '{folder}' has a non-finite value")
    meta = {"steps": str(steps), "tau": repr(float(tau)), "seed": str(seed), "torch": torch.__version__,
            "folder": cfg["name"], "times": ",".join(GOLDEN_TIMES), "batch": str(batch),
            "schedule": f"ddm::schedules::uniform({steps})",
            "made_by": f"examples/03_fashion/reference.py golden --folder {folder} --out {out}"}
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    save_file({k: v.float().contiguous() for k, v in tensors.items()}, out, metadata=meta)
    return tensors


def main(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    g = sub.add_parser("golden", help="write the golden file of the C++ agreement test")
    g.add_argument("--folder", required=True)
    g.add_argument("--out", required=True)
    g.add_argument("--steps", type=int, default=10)
    g.add_argument("--tau", type=float, default=1.0)
    s = sub.add_parser("sample", help="sample a batch and save z and the images")
    s.add_argument("--folder", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--policy", default="top2", help="top1, top2, full or monolith")
    s.add_argument("--router", default="learned", choices=("learned", "oracle"))
    s.add_argument("--integrator", default="heun", choices=INTEGRATORS)
    s.add_argument("--steps", type=int, default=32)
    s.add_argument("--batch", type=int, default=16)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--tau", type=float, default=1.0)
    s.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)
    if a.steps < 1:
        p.error(f"--steps = {a.steps}, expected an integer >= 1")
    if not (a.tau > 0):
        p.error(f"--tau = {a.tau}, expected a value > 0")
    if not os.path.isfile(os.path.join(a.folder, "config.json")):
        p.error(f"--folder = '{a.folder}' holds no config.json, expected a DDM folder written by train.py")
    if a.command == "golden":
        golden(a.folder, a.out, a.steps, a.tau)
        print(f"reference.py: wrote {a.out}")
        return 0
    if a.batch < 1:
        p.error(f"--batch = {a.batch}, expected an integer >= 1")
    if a.policy not in POLICIES + ("monolith",):
        p.error(f"--policy = '{a.policy}', expected one of top1, top2, full, monolith")
    torch.set_num_threads(a.threads)
    ddm = fn.load_folder(a.folder)
    d = ddm["config"]["latent_dim"]
    z = torch.randn(a.batch, d, generator=torch.Generator().manual_seed(a.seed))
    field = NetField(ddm["monolith"]) if a.policy == "monolith" else RoutedField(ddm, a.policy, a.tau, a.router)
    x = sample(field, z, a.steps, a.integrator)
    save_file({"z": z, "sample": x, "images": fn.decode(x, ddm["pca"]).clamp(0, 1).contiguous()}, a.out)
    print(f"reference.py: wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
