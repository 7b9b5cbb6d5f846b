#!/usr/bin/env python3
"""Train the learned Fashion-MNIST DDMs and write them as folders (format: fashion_nets.py).

    python examples/03_fashion/train.py                       # the committed models (~10 min, 2 cores)
    python examples/03_fashion/train.py --quick --out /tmp/m  # a few hundred steps per net
    python examples/03_fashion/train.py --smoke --out /tmp/s  # a few steps of every stage, then
                                                              # check that the folders load back
    python examples/03_fashion/train.py --arch dit            # the DiT tier (train_dit.py)

One seeded run writes two DDMs under --out: fashion-classes (K = 10, one expert per label) and
fashion-kmeans (K = 8, k-means on the classifier's features of the training images). Both share
the whitened PCA latent space and the classifier; each folder holds its own copies.
Exit status: 0 done, 1 a check failed, 2 bad arguments or data, 77 torch is not importable.
"""
import argparse
import gzip
import hashlib
import json
import math
import os
import platform
import shutil
import struct
import sys
import time

try:
    import torch
    import torch.nn.functional as F
    from safetensors.torch import save_file
except ImportError as e:  # the CTest smoke skips where the interpreter has no torch
    print(f"train.py: skipped, PyTorch or safetensors is not importable ({e})")
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fashion_nets as fn  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DATA_FILES = {
    "train_images": ("train-images-idx3-ubyte.gz", 2051, 60000),
    "train_labels": ("train-labels-idx1-ubyte.gz", 2049, 60000),
    "test_images": ("t10k-images-idx3-ubyte.gz", 2051, 10000),
    "test_labels": ("t10k-labels-idx1-ubyte.gz", 2049, 10000),
}
# Times at which the router's accuracy and calibration are reported (held-out test latents).
EVAL_TIMES = [0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]


class DataError(Exception):
    pass


def read_idx(path, magic, count):
    """A gzipped IDX file as a uint8 tensor, (count, 784) for images or (count,) for labels."""
    if not os.path.isfile(path):
        raise DataError(f"data file '{path}' does not exist (install Debian's dataset-fashion-mnist or pass --data)")
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = 3 if magic == 2051 else 1
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"data file '{path}': {len(raw)} bytes, too short for an IDX header")
    got_magic = struct.unpack(">i", raw[:4])[0]
    if got_magic != magic:
        raise DataError(f"data file '{path}': magic number {got_magic}, expected {magic}")
    dims = struct.unpack(">" + "i" * ndim, raw[4:header])
    expected_dims = (count, 28, 28) if ndim == 3 else (count,)
    if dims != expected_dims:
        raise DataError(f"data file '{path}': dimensions {dims}, expected {expected_dims}")
    n = math.prod(dims)
    if len(raw) != header + n:
        raise DataError(f"data file '{path}': {len(raw) - header} data bytes, expected {n}")
    t = torch.frombuffer(bytearray(raw[header:]), dtype=torch.uint8)
    return t.reshape(count, 784) if ndim == 3 else t


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_data(folder):
    out, sums = {}, {}
    for key, (name, magic, count) in DATA_FILES.items():
        path = os.path.join(folder, name)
        out[key] = read_idx(path, magic, count)
        sums[name] = sha256(path)
    labels_ok = all(int(out[k].max()) <= 9 for k in ("train_labels", "test_labels"))
    if not labels_ok:
        raise DataError(f"data folder '{folder}': a label outside 0..9")
    return out, sums


def to_f16_and_back(state):
    """Round a state dict to F16 (what is committed) and back to f32 (what every reader computes with)."""
    return {k: v.detach().half().float() for k, v in state.items()}


def save_f16(state, path, metadata):
    save_file({k: v.detach().half().contiguous() for k, v in state.items()}, path,
              metadata={k: str(v) for k, v in metadata.items()})


class Stopwatch:
    def __init__(self):
        self.stages = {}

    def run(self, name, fn_, *a, **kw):
        t0 = time.perf_counter()
        result = fn_(*a, **kw)
        self.stages[name] = round(time.perf_counter() - t0, 2)
        print(f"  [{name}: {self.stages[name]:.1f} s]", flush=True)
        return result


# ----------------------------------------------------------------------------------------------
# PCA, classifier, partitions


def fit_pca(x, d):
    """Whitened PCA of the rows of x (N, 784) in float64; signs fixed so that each component's
    largest-magnitude entry is positive (the result does not depend on the eigensolver's signs)."""
    x64 = x.double()
    mean = x64.mean(0)
    xc = x64 - mean
    cov = xc.T @ xc / (x64.shape[0] - 1)
    evals, evecs = torch.linalg.eigh(cov)
    order = torch.argsort(evals, descending=True)[:d]
    comps = evecs[:, order].T.contiguous()                 # (d, 784), orthonormal rows
    signs = torch.sign(comps.gather(1, comps.abs().argmax(1, keepdim=True)))
    comps = comps * signs
    explained = float(evals[order].sum() / evals.sum())
    return {"mean": mean.float(), "components": comps.float(), "scale": evals[order].sqrt().float()}, explained


def lr_at(step, steps, base):
    """Linear warm-up over the first min(100, steps / 10) steps, then cosine decay to 0."""
    warm = max(1, min(100, steps // 10))
    if step < warm:
        return base * (step + 1) / warm
    return base * 0.5 * (1.0 + math.cos(math.pi * (step - warm) / max(1, steps - warm)))


def train_classifier(x, y, args, gen):
    torch.manual_seed(args.seed * 7919 + 1)
    net = fn.Classifier(hidden=args.classifier_hidden, features=args.classifier_features)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    n = x.shape[0]
    steps = args.classifier_epochs * (n // args.batch) if args.classifier_steps is None else args.classifier_steps
    net.train()
    losses = []
    for s in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(s, steps, 1e-3)
        idx = torch.randint(0, n, (args.batch,), generator=gen)
        loss = F.cross_entropy(net(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    net.eval()
    net.load_state_dict(to_f16_and_back(net.state_dict()))
    return net, {"steps": steps, "final_loss": tail_mean(losses)}


def tail_mean(losses):
    """Mean of the last 10% of the training losses (at least one): the 'final loss' reported."""
    k = max(1, len(losses) // 10)
    return round(sum(losses[-k:]) / k, 5)


@torch.no_grad()
def batched(f, x, size=4096):
    return torch.cat([f(x[i:i + size]) for i in range(0, x.shape[0], size)])


def kmeans(feats, k, gen, restarts, iters=100):
    """Lloyd's algorithm from k-means++ seeds, `restarts` times; the run with the lowest inertia.
    Clusters are then numbered by decreasing size (ties: lower first-member index)."""
    x = feats.float()
    best = None
    for _ in range(restarts):
        first = torch.randint(0, x.shape[0], (1,), generator=gen)
        centers = [x[first[0]]]
        d2 = ((x - centers[0]) ** 2).sum(1)
        for _ in range(1, k):
            nxt = torch.multinomial((d2 / d2.sum()).float(), 1, generator=gen)[0]
            centers.append(x[nxt])
            d2 = torch.minimum(d2, ((x - x[nxt]) ** 2).sum(1))
        c = torch.stack(centers)
        assign = None
        xx = (x * x).sum(1, keepdim=True)
        for _ in range(iters):
            new = (xx - 2.0 * x @ c.T + (c * c).sum(1)[None, :]).argmin(1)
            if assign is not None and torch.equal(new, assign):
                break
            assign = new
            counts = torch.bincount(assign, minlength=k)
            sums = F.one_hot(assign, k).float().T @ x
            keep = counts > 0  # an emptied cluster keeps its centre
            c[keep] = sums[keep] / counts[keep, None].float()
        inertia = float(((x - c[assign]) ** 2).sum())
        if best is None or inertia < best[0]:
            best = (inertia, c.clone(), assign.clone())
    inertia, c, assign = best
    sizes = torch.bincount(assign, minlength=k)
    order = sorted(range(k), key=lambda j: (-int(sizes[j]), int((assign == j).nonzero()[0]) if sizes[j] else 0))
    remap = torch.empty(k, dtype=torch.long)
    remap[torch.tensor(order)] = torch.arange(k)
    return remap[assign], c[torch.tensor(order)].float(), inertia


# ----------------------------------------------------------------------------------------------
# Flow nets and router


def make_time_mlp(args, out_dim, seed):
    torch.manual_seed(seed)
    return fn.TimeMLP(args.latent_dim, out_dim, args.width, args.depth, args.hidden, args.frequencies)


def train_flow(z0, steps, args, seed, gen):
    """Rectified flow on the latents z0: z_t = (1 - t) z0 + t eps, target eps - z0, t ~ U(0, 1)."""
    net = make_time_mlp(args, args.latent_dim, seed)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    losses = []
    n = z0.shape[0]
    for s in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(s, steps, args.lr)
        x0 = z0[torch.randint(0, n, (args.batch,), generator=gen)]
        eps = torch.randn(x0.shape, generator=gen)
        t = torch.rand(args.batch, generator=gen)
        zt = (1.0 - t[:, None]) * x0 + t[:, None] * eps
        loss = F.mse_loss(net(zt, t), eps - x0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
    net.eval()
    net.load_state_dict(to_f16_and_back(net.state_dict()))
    return net, {"steps": steps, "final_loss": tail_mean(losses)}


def train_router(z0, clusters, K, steps, args, seed, gen):
    net = make_time_mlp(args, K, seed)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    losses = []
    n = z0.shape[0]
    for s in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(s, steps, args.lr)
        idx = torch.randint(0, n, (args.batch,), generator=gen)
        x0 = z0[idx]
        eps = torch.randn(x0.shape, generator=gen)
        t = torch.rand(args.batch, generator=gen)
        zt = (1.0 - t[:, None]) * x0 + t[:, None] * eps
        loss = F.cross_entropy(net(zt, t), clusters[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
    net.eval()
    net.load_state_dict(to_f16_and_back(net.state_dict()))
    return net, {"steps": steps, "final_loss": tail_mean(losses)}


def calibration(probs, labels, bins=15):
    """Accuracy, expected calibration error (equal-width confidence bins) and mean NLL."""
    conf, pred = probs.max(1)
    correct = (pred == labels).double()
    ece = 0.0
    edges = torch.linspace(0, 1, bins + 1, dtype=torch.float64)
    for b in range(bins):
        lo, hi = edges[b], edges[b + 1]
        sel = (conf > lo) & (conf <= hi) if b > 0 else (conf >= lo) & (conf <= hi)
        if sel.any():
            ece += float(sel.double().mean()) * abs(float(correct[sel].mean()) - float(conf[sel].double().mean()))
    nll = float(-torch.log(probs.gather(1, labels[:, None]).clamp_min(1e-12)).mean())
    return {"accuracy": round(float(correct.mean()), 4), "ece": round(ece, 4), "nll": round(nll, 4)}


@torch.no_grad()
def evaluate_router(router, z_test, c_test, K, oracle, seed):
    """Per t: the learned router and the oracle (empirical posterior over the committed
    subsample) on the test latents, with one seeded noise draw per t."""
    rows = []
    for i, t in enumerate(EVAL_TIMES):
        g = torch.Generator().manual_seed(seed + 100 + i)
        eps = torch.randn(z_test.shape, generator=g)
        zt = (1.0 - t) * z_test + t * eps
        p = torch.softmax(batched(lambda z: router(z, torch.full((z.shape[0],), t)), zt), dim=1)
        po = batched(lambda z: fn.oracle_probabilities(z, t, oracle[0], oracle[1], K), zt, size=1024)
        rows.append({"t": t, "router": calibration(p, c_test), "oracle": calibration(po, c_test)})
    return rows


@torch.no_grad()
def flow_test_losses(nets, z_test, c_test, K, seed, draws=2):
    """Rectified-flow loss of each net on each cluster's test latents (fixed noise and times):
    row = net, column = cluster. An expert's loss off its own cluster is what the study is about."""
    g = torch.Generator().manual_seed(seed + 50)
    eps = torch.randn((draws,) + tuple(z_test.shape), generator=g)
    t = torch.rand((draws, z_test.shape[0]), generator=g)
    table = []
    for net in nets:
        per = torch.zeros(z_test.shape[0])
        for r in range(draws):
            zt = (1.0 - t[r][:, None]) * z_test + t[r][:, None] * eps[r]
            pred = batched(lambda a: net(a[:, :-1], a[:, -1]), torch.cat([zt, t[r][:, None]], 1))
            per += ((pred - (eps[r] - z_test)) ** 2).mean(1) / draws
        table.append([round(float(per[c_test == k].mean()), 4) for k in range(K)])
    return table


def oracle_subsample(z_train, clusters, K, size, gen):
    """round(size * prior_k) training latents of each cluster k (largest remainders fix the sum)."""
    n = z_train.shape[0]
    counts = torch.bincount(clusters, minlength=K).double()
    exact = counts / n * size
    take = exact.floor().long()
    for j in torch.argsort(exact - take, descending=True)[: size - int(take.sum())]:
        take[j] += 1
    idx = []
    for k in range(K):
        members = (clusters == k).nonzero().flatten()
        pick = members[torch.randperm(members.shape[0], generator=gen)[: int(take[k])]]
        idx.append(pick.sort().values)
    idx = torch.cat(idx)
    return z_train[idx].clone(), clusters[idx].float()


# ----------------------------------------------------------------------------------------------


def build_ddm(name, partition, K, clusters_train, clusters_test, shared, args, seed, sw, gen):
    """Train the experts, the monolith and the router of one partition; returns what to write."""
    z_train, z_test, labels_train = shared["z_train"], shared["z_test"], shared["y_train"]
    sizes = torch.bincount(clusters_train, minlength=K)
    if int(sizes.min()) == 0:
        raise RuntimeError(f"{name}: a cluster is empty (sizes {sizes.tolist()})")
    experts, expert_stats = [], []
    t0 = time.perf_counter()
    for k in range(K):
        net, st = train_flow(z_train[clusters_train == k], args.expert_steps, args, seed + 10 + k, gen)
        experts.append(net)
        expert_stats.append(st)
        print(f"  {name} expert {k}: {int(sizes[k])} images, final loss {st['final_loss']}", flush=True)
    sw.stages[f"{name}.experts"] = round(time.perf_counter() - t0, 2)
    mono_steps = K * args.expert_steps  # the same total compute: same batch, sum of the experts' steps
    monolith, mono_stats = sw.run(f"{name}.monolith", train_flow, z_train, mono_steps, args, seed + 1, gen)
    print(f"  {name} monolith: final loss {mono_stats['final_loss']}", flush=True)
    router, router_stats = sw.run(f"{name}.router", train_router, z_train, clusters_train, K,
                                  args.router_steps, args, seed + 2, gen)
    print(f"  {name} router: final loss {router_stats['final_loss']}", flush=True)
    centroids = torch.stack([z_train[clusters_train == k].mean(0) for k in range(K)])
    priors = sizes.double() / sizes.sum()
    oracle = oracle_subsample(z_train, clusters_train, K, args.oracle_size, gen)
    t0 = time.perf_counter()
    router_eval = evaluate_router(router, z_test, clusters_test, K, oracle, seed)
    losses = flow_test_losses(experts + [monolith], z_test, clusters_test, K, seed)
    sw.stages[f"{name}.evaluation"] = round(time.perf_counter() - t0, 2)
    for row in router_eval:
        print(f"  {name} t={row['t']:.2f} router acc {row['router']['accuracy']:.3f} ece {row['router']['ece']:.3f}"
              f" | oracle acc {row['oracle']['accuracy']:.3f}", flush=True)
    table = torch.zeros(K, 10, dtype=torch.long)
    table.index_put_((clusters_train, labels_train.long()), torch.ones_like(clusters_train), accumulate=True)
    return {
        "name": name, "partition": partition, "K": K,
        "experts": experts, "monolith": monolith, "router": router,
        "partition_tensors": {"centroids": centroids.float(), "priors": priors.float(),
                              "oracle_latents": oracle[0].float(), "oracle_clusters": oracle[1].float()},
        "report": {
            "cluster_sizes": sizes.tolist(),
            "test_cluster_sizes": torch.bincount(clusters_test, minlength=K).tolist(),
            "cluster_by_class": {"rows": "cluster k", "columns": "class 0..9 (training images)",
                                 "counts": table.tolist()},
            "final_losses": {**{f"expert_{k}": expert_stats[k]["final_loss"] for k in range(K)},
                             "monolith": mono_stats["final_loss"], "router": router_stats["final_loss"]},
            "steps": {"expert_each": args.expert_steps, "monolith": mono_steps, "router": args.router_steps,
                      "batch": args.batch},
            "test_flow_loss": {"rows": [f"expert_{k}" for k in range(K)] + ["monolith"],
                               "columns": "test latents of cluster 0..K-1",
                               "note": "rectified-flow MSE, 2 seeded (eps, t ~ U(0,1)) draws per test latent",
                               "values": losses},
            "router_by_t": {"note": "test latents at z_t = (1 - t) z0 + t eps, one seeded eps per t; "
                                    "ece: 15 equal-width confidence bins; oracle: empirical posterior "
                                    "over the committed oracle subsample", "rows": router_eval},
            "oracle_size": args.oracle_size,
        },
    }


def write_folder(ddm, shared, out, args, manifest_common):
    folder = os.path.join(out, ddm["name"])
    if os.path.isdir(folder):
        shutil.rmtree(folder)
    os.makedirs(folder)
    K = ddm["K"]
    net_cfg = dict(width=args.width, depth=args.depth, hidden=args.hidden, frequencies=args.frequencies)
    cls_cfg = dict(hidden=args.classifier_hidden, features=args.classifier_features)
    cfg = fn.make_config(ddm["name"], ddm["partition"], args.latent_dim, K, net_cfg, cls_cfg)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    meta = {"ddm": ddm["name"], "seed": args.seed, "torch": torch.__version__}
    save_f16(shared["pca"], os.path.join(folder, "pca.safetensors"),
             {**meta, "net": "pca", "latent_dim": args.latent_dim})
    save_f16(shared["classifier"].state_dict(), os.path.join(folder, "classifier.safetensors"),
             {**meta, "net": "classifier", "arch": "mlp_classifier",
              "test_accuracy": manifest_common["classifier"]["test_accuracy"]})
    losses = ddm["report"]["final_losses"]
    for k, net in enumerate(ddm["experts"]):
        save_f16(net.state_dict(), os.path.join(folder, f"expert_{k}.safetensors"),
                 {**meta, "net": "expert", "cluster": k, "arch": "time_mlp", "steps": args.expert_steps,
                  "final_loss": losses[f"expert_{k}"]})
    save_f16(ddm["monolith"].state_dict(), os.path.join(folder, "monolith.safetensors"),
             {**meta, "net": "monolith", "arch": "time_mlp", "steps": ddm["report"]["steps"]["monolith"],
              "final_loss": losses["monolith"]})
    save_f16(ddm["router"].state_dict(), os.path.join(folder, "router.safetensors"),
             {**meta, "net": "router", "arch": "time_mlp", "out": "logits of the cluster of z0",
              "steps": args.router_steps, "final_loss": losses["router"]})
    save_file({k: v.contiguous() for k, v in ddm["partition_tensors"].items()},
              os.path.join(folder, "partition.safetensors"),
              metadata={**{k: str(v) for k, v in meta.items()}, "partition": ddm["partition"],
                        "oracle": "stratified subsample, round(N * prior_k) per cluster"})
    return folder


def check_folder(folder, args, K):
    """Load the folder back with fashion_nets.load_folder and check shapes, dtypes and finiteness."""
    from safetensors import safe_open
    ddm = fn.load_folder(folder)
    d = args.latent_dim
    cfg = ddm["config"]
    problems = []
    if cfg["num_experts"] != K or len(ddm["experts"]) != K:
        problems.append(f"{K} experts expected, config says {cfg['num_experts']}, loaded {len(ddm['experts'])}")
    for name in [*cfg["files"]["experts"], cfg["files"]["monolith"], cfg["files"]["router"],
                 cfg["files"]["classifier"], cfg["files"]["pca"]]:
        with safe_open(os.path.join(folder, name), "pt") as f:
            for key in f.keys():
                if f.get_slice(key).get_dtype() != "F16":
                    problems.append(f"{name}:{key} is {f.get_slice(key).get_dtype()}, expected F16")
    pca, part = ddm["pca"], ddm["partition"]
    shapes = {"pca.mean": (pca["mean"].shape, (784,)), "pca.components": (pca["components"].shape, (d, 784)),
              "pca.scale": (pca["scale"].shape, (d,)), "centroids": (part["centroids"].shape, (K, d)),
              "priors": (part["priors"].shape, (K,)),
              "oracle_latents": (part["oracle_latents"].shape, (args.oracle_size, d)),
              "oracle_clusters": (part["oracle_clusters"].shape, (args.oracle_size,))}
    for key, (got, want) in shapes.items():
        if tuple(got) != want:
            problems.append(f"{key} has shape {tuple(got)}, expected {want}")
    for key, v in {**pca, **part}.items():
        if not torch.isfinite(v).all():
            problems.append(f"{key} has a non-finite value")
    if abs(float(part["priors"].sum()) - 1.0) > 1e-5:
        problems.append(f"priors sum to {float(part['priors'].sum())}, expected 1")
    g = torch.Generator().manual_seed(0)
    z = torch.randn(8, d, generator=g)
    with torch.no_grad():
        for t in (1.0, 0.5, 0.05):
            tt = torch.full((8,), t)
            outs = {f"expert_{k}": e(z, tt) for k, e in enumerate(ddm["experts"])}
            outs["monolith"] = ddm["monolith"](z, tt)
            outs["router"] = ddm["router"](z, tt)
            outs["oracle"] = fn.oracle_probabilities(z, t, part["oracle_latents"], part["oracle_clusters"], K)
            for key, v in outs.items():
                want = (8, K) if key in ("router", "oracle") else (8, d)
                if tuple(v.shape) != want or not torch.isfinite(v).all():
                    problems.append(f"{key} at t = {t}: shape {tuple(v.shape)} (expected {want}) or non-finite")
        img = fn.decode(z, pca).clamp(0, 1)
        logits = ddm["classifier"](img)
        if tuple(logits.shape) != (8, 10) or not torch.isfinite(logits).all():
            problems.append("classifier logits: wrong shape or non-finite")
    return problems


def load_average():
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--latent-dim", type=int, default=32, help="PCA latent size d (default 32)")
    p.add_argument("--out", default=os.path.join(HERE, "models"), help="folder that receives the DDM folders")
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist", help="folder of the gzipped IDX files")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    p.add_argument("--expert-steps", type=int, default=None, help="Adam steps per expert (default 1000)")
    p.add_argument("--router-steps", type=int, default=None, help="Adam steps of each router (default 3000)")
    p.add_argument("--classifier-epochs", type=int, default=None, help="classifier epochs (default 8)")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3, help="Adam's peak learning rate for the TimeMLPs")
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--frequencies", type=int, default=64)
    p.add_argument("--classifier-hidden", type=int, default=512)
    p.add_argument("--classifier-features", type=int, default=128)
    p.add_argument("--clusters", type=int, default=8, help="K of the k-means partition (default 8)")
    p.add_argument("--kmeans-restarts", type=int, default=4)
    p.add_argument("--oracle-size", type=int, default=2048, help="training latents kept for the oracle router")
    p.add_argument("--quick", action="store_true", help="a few hundred steps per net (a format check, not a model)")
    p.add_argument("--smoke", action="store_true", help="a few steps of every stage on a subset, then load the "
                                                        "folders back and check them; for the CTest")
    args = p.parse_args(argv)
    args.classifier_steps = None
    if args.quick and args.smoke:
        p.error("--quick and --smoke exclude each other")
    defaults = {"expert_steps": 1000, "router_steps": 3000, "classifier_epochs": 8}
    if args.quick:
        defaults = {"expert_steps": 200, "router_steps": 400, "classifier_epochs": 2}
    if args.smoke:
        defaults = {"expert_steps": 5, "router_steps": 5, "classifier_epochs": 1}
        args.classifier_steps = 5
        args.oracle_size = min(args.oracle_size, 256)
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    checks = {"latent_dim": (args.latent_dim, 1, 784), "threads": (args.threads, 1, 1024),
              "expert_steps": (args.expert_steps, 1, None), "router_steps": (args.router_steps, 1, None),
              "classifier_epochs": (args.classifier_epochs, 1, None), "batch": (args.batch, 1, None),
              "width": (args.width, 1, None), "hidden": (args.hidden, 1, None), "depth": (args.depth, 0, None),
              "frequencies": (args.frequencies, 1, None), "clusters": (args.clusters, 2, 1000),
              "kmeans_restarts": (args.kmeans_restarts, 1, None), "oracle_size": (args.oracle_size, 16, 60000),
              "classifier_hidden": (args.classifier_hidden, 1, None),
              "classifier_features": (args.classifier_features, 1, None)}
    for key, (value, lo, hi) in checks.items():
        if value < lo or (hi is not None and value > hi):
            p.error(f"--{key.replace('_', '-')} = {value}, expected an integer in [{lo}, {hi if hi else 'inf'}]")
    if not (args.lr > 0 and math.isfinite(args.lr)):
        p.error(f"--lr = {args.lr}, expected a finite value > 0")
    return args


def main(argv):
    # --arch dit is the pixel-space DiT tier (train_dit.py); --arch mlp (the default) the latent tier.
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--arch", choices=["mlp", "dit"], default="mlp")
    known, rest = pre.parse_known_args(argv)
    if known.arch == "dit":
        import train_dit
        return train_dit.main(rest)
    argv = rest
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    load_start = load_average()
    t_all = time.perf_counter()
    sw = Stopwatch()
    gen = torch.Generator().manual_seed(args.seed)
    print(f"train.py: seed {args.seed}, d = {args.latent_dim}, {args.threads} threads, nproc {os.cpu_count()}, "
          f"load average {load_start}", flush=True)
    try:
        data, checksums = sw.run("data", load_data, args.data)
    except DataError as e:
        print(f"train.py: {e}", file=sys.stderr)
        return 77 if args.smoke and not os.path.isdir(args.data) else 2
    x_train = data["train_images"].float() / 255.0
    x_test = data["test_images"].float() / 255.0
    y_train, y_test = data["train_labels"].long(), data["test_labels"].long()
    if args.smoke:  # a subset: the smoke checks the pipeline, not the model
        x_train, y_train, x_test, y_test = x_train[:3000], y_train[:3000], x_test[:500], y_test[:500]

    pca, explained = sw.run("pca", fit_pca, x_train, args.latent_dim)
    pca = to_f16_and_back(pca)  # train on exactly the committed (F16) encoder
    z_train, z_test = fn.encode(x_train, pca), fn.encode(x_test, pca)
    recon = float(((fn.decode(z_test, pca).clamp(0, 1) - x_test) ** 2).mean())
    print(f"  PCA: d = {args.latent_dim} keeps {explained:.3f} of the variance; test reconstruction MSE {recon:.5f}")

    classifier, cls_stats = sw.run("classifier", train_classifier, x_train, y_train, args, gen)
    with torch.no_grad():
        test_acc = float((batched(classifier, x_test).argmax(1) == y_test).double().mean())
        f_train, f_test = batched(classifier.features, x_train), batched(classifier.features, x_test)
    print(f"  classifier: test accuracy {test_acc:.4f}")

    assign, fcent, inertia = sw.run("kmeans", kmeans, f_train, args.clusters, gen, args.kmeans_restarts)
    assign_test = torch.cdist(f_test, fcent).argmin(1)
    shared = {"pca": pca, "classifier": classifier, "z_train": z_train, "z_test": z_test, "y_train": y_train}

    ddms = []
    ddms.append(build_ddm("fashion-classes", "classes", 10, y_train, y_test, shared, args, args.seed * 1000 + 100,
                          sw, gen))
    ddms.append(build_ddm("fashion-kmeans", "kmeans", args.clusters, assign, assign_test, shared, args,
                          args.seed * 1000 + 500, sw, gen))

    common = {
        "command": " ".join(["python", "examples/03_fashion/train.py"] + argv),
        "seed": args.seed,
        "mode": "smoke" if args.smoke else "quick" if args.quick else "default",
        "arguments": {k: v for k, v in vars(args).items() if k not in ("out",)},
        "torch": torch.__version__, "python": platform.python_version(),
        "machine": platform.machine(), "nproc": os.cpu_count(), "threads": args.threads,
        "load_average_start": load_start,
        "data": {"folder": args.data, "sha256": checksums, "train_images": int(x_train.shape[0]),
                 "test_images": int(x_test.shape[0])},
        "pca": {"latent_dim": args.latent_dim, "explained_variance": round(explained, 4),
                "test_reconstruction_mse": round(recon, 6)},
        "classifier": {"test_accuracy": round(test_acc, 4), **cls_stats},
        "kmeans": {"K": args.clusters, "space": "classifier features of the training images",
                   "init": f"k-means++ (seeded), Lloyd to convergence, best inertia of {args.kmeans_restarts}",
                   "inertia": round(inertia, 2),
                   "test_assignment": "nearest feature-space centroid of each test image"},
        "architecture": {"time_mlp": dict(width=args.width, depth=args.depth, hidden=args.hidden,
                                          frequencies=args.frequencies),
                         "why": "the largest TimeMLP whose two folders (10 + 8 experts, 2 monoliths, 2 routers, "
                                "2 classifiers, F16) stay under the 20 MB weight budget; at its default "
                                "step counts the whole run fits 15 minutes on 2 cores",
                         "optimizer": f"Adam, peak lr {args.lr}, warm-up then cosine decay to 0, grad-norm "
                                      f"clip 1, batch {args.batch}, t ~ U(0, 1)"},
    }
    t0 = time.perf_counter()
    folders = [write_folder(ddm, shared, args.out, args, common) for ddm in ddms]
    sw.stages["write"] = round(time.perf_counter() - t0, 2)
    total = round(time.perf_counter() - t_all, 1)
    load_end = load_average()
    for ddm, folder in zip(ddms, folders):
        manifest = {**common, "ddm": ddm["name"], "partition": ddm["partition"], "num_experts": ddm["K"],
                    **ddm["report"], "wall_seconds": {"stages": sw.stages, "total": total},
                    "load_average_end": load_end}
        with open(os.path.join(folder, "manifest.json"), "w") as f:
            json.dump(manifest, f, indent=1)
            f.write("\n")
    print(f"train.py: wrote {', '.join(folders)} in {total} s (load average at end {load_end})")

    failures = []
    for ddm, folder in zip(ddms, folders):
        failures += [f"{folder}: {p}" for p in check_folder(folder, args, ddm["K"])]
    if args.smoke and not failures:
        # The reference sampler reads what was written: every policy x integrator, finite.
        import reference
        for folder in folders:
            try:
                reference.golden(folder, os.path.join(args.out, os.path.basename(folder) + "-golden.safetensors"))
            except (RuntimeError, ValueError) as e:
                failures.append(f"{folder}: reference.py golden: {e}")
    for f in failures:
        print(f"train.py: check failed: {f}", file=sys.stderr)
    if failures:
        return 1
    print("train.py: every folder loads back with the expected shapes, F16 weights and finite values" +
          (", and reference.py samples it" if args.smoke else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
