"""`train.py --arch dit`: the DiT tier of the learned Fashion-MNIST DDM, in pixel space.

    python examples/03_fashion/train.py --arch dit --threads 1          # what was committed
    python examples/03_fashion/train.py --arch dit --smoke --out /tmp/s # a few steps, then load back

One seeded run writes models/fashion-dit: K = 8 small original-DiT experts, each trained alone on
its cluster of the fashion-kmeans partition, a monolith of the same architecture with the
experts' summed steps, a DiT router (Paris-port layout) on (x_t, t), the classifier of
fashion-kmeans (copied, the feature space of FD) and the partition in pixel space. Networks and
formats: fashion_dit_nets.py.

The partition is not re-drawn: it is the fashion-kmeans folder's own k-means, recomputed from
that folder's committed classifier with train.py's k-means and the generator state it had then
(the classifier's 1872 batch draws replayed), and checked against that folder's manifest (cluster
sizes, inertia) and centroids; a mismatch stops the run.
"""
import argparse
import json
import math
import os
import platform
import shutil
import sys
import time

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import fashion_dit_nets as fd  # noqa: E402
import fashion_nets as fn  # noqa: E402
import train as tr  # noqa: E402


def parse_args(argv):
    p = argparse.ArgumentParser(prog="train.py --arch dit", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=os.path.join(HERE, "models"), help="folder that receives fashion-dit/")
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--source", default=os.path.join(HERE, "models", "fashion-kmeans"),
                   help="the fashion-kmeans folder whose partition and classifier are reused")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--expert-steps", type=int, default=None, help="Adam steps per expert (default 1500)")
    p.add_argument("--router-steps", type=int, default=None, help="Adam steps of the router (default 3000)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--patch", type=int, default=7)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--router-hidden", type=int, default=64)
    p.add_argument("--router-depth", type=int, default=2)
    p.add_argument("--oracle-size", type=int, default=1024)
    p.add_argument("--eval-images", type=int, default=2000, help="test images for the flow-loss table")
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args(argv)
    defaults = {"expert_steps": 1500, "router_steps": 3000}
    if args.smoke:
        defaults = {"expert_steps": 3, "router_steps": 3}
        args.oracle_size = min(args.oracle_size, 128)
        args.eval_images = min(args.eval_images, 200)
    for k, v in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    ints = {"threads": (1, 1024), "expert_steps": (1, None), "router_steps": (1, None), "batch": (1, None),
            "patch": (1, 28), "hidden": (1, None), "depth": (1, None), "heads": (1, None),
            "router_hidden": (1, None), "router_depth": (1, None), "oracle_size": (16, 60000),
            "eval_images": (10, 10000)}
    for k, (lo, hi) in ints.items():
        v = getattr(args, k)
        if v < lo or (hi is not None and v > hi):
            p.error(f"--{k.replace('_', '-')} = {v}, expected an integer in [{lo}, {hi if hi else 'inf'}]")
    if 28 % args.patch != 0:
        p.error(f"--patch = {args.patch}, expected a divisor of 28 (the image is not padded)")
    for k in ("hidden", "router_hidden"):
        if getattr(args, k) % args.heads != 0 or getattr(args, k) % 4 != 0:
            p.error(f"--{k.replace('_', '-')} = {getattr(args, k)}, expected a multiple of 4 and of --heads")
    if not (args.lr > 0 and math.isfinite(args.lr)):
        p.error(f"--lr = {args.lr}, expected a finite value > 0")
    return args


def replay_kmeans(source, x_train, x_test, smoke):
    """The fashion-kmeans partition, recomputed exactly (see the module docstring) and checked."""
    with open(os.path.join(source, "manifest.json")) as f:
        manifest = json.load(f)
    classifier = fn._load_net(fn.Classifier(), os.path.join(source, "classifier.safetensors"))
    feats = tr.batched(classifier.features, x_train)
    a = manifest["arguments"]
    gen = torch.Generator().manual_seed(manifest["seed"])
    for _ in range(a["classifier_epochs"] * (60000 // a["batch"])):  # train_classifier's draws
        torch.randint(0, 60000, (a["batch"],), generator=gen)
    K = manifest["num_experts"]
    assign, fcent, inertia = tr.kmeans(feats, K, gen, a["kmeans_restarts"])
    sizes = torch.bincount(assign, minlength=K).tolist()
    if not smoke and (sizes != manifest["cluster_sizes"] or
                      abs(inertia - manifest["kmeans"]["inertia"]) > 1e-6 * manifest["kmeans"]["inertia"]):
        # The inertia is a float32 sum whose last digit depends on the thread count.
        raise RuntimeError(f"the replayed k-means of '{source}' differs from its manifest: sizes {sizes} vs "
                           f"{manifest['cluster_sizes']}, inertia {inertia} vs {manifest['kmeans']['inertia']}")
    pca = fn._read_f32(os.path.join(source, "pca.safetensors"))
    z = fn.encode(x_train, pca)
    cent = torch.stack([z[assign == k].mean(0) for k in range(K)])
    ref = fn._read_f32(os.path.join(source, "partition.safetensors"))["centroids"]
    dev = float((cent - ref).abs().max())
    if not smoke and dev > 1e-4:
        raise RuntimeError(f"the replayed k-means of '{source}': latent centroids differ by {dev}")
    test_assign = torch.cdist(tr.batched(classifier.features, x_test), fcent).argmin(1)
    return assign, test_assign, classifier, {"sizes": sizes, "inertia": round(inertia, 2),
                                             "centroid_max_deviation": dev}


def train_net(net, data, target_fn, steps, args, gen, loss_fn):
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=args.lr)
    losses = []
    n = data.shape[0]
    t0 = time.perf_counter()
    for s in range(steps):
        for g in opt.param_groups:
            g["lr"] = tr.lr_at(s, steps, args.lr)
        idx = torch.randint(0, n, (args.batch,), generator=gen)
        x0 = data[idx]
        eps = torch.randn(x0.shape, generator=gen)
        t = torch.rand(args.batch, generator=gen)
        xt = (1.0 - t[:, None]) * x0 + t[:, None] * eps
        loss = loss_fn(net(xt, t), target_fn(idx, x0, eps))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        if s == 49:
            print(f"    {(time.perf_counter() - t0) / 50:.3f} s per step over the first 50", flush=True)
    net.eval()
    net.load_state_dict(tr.to_f16_and_back(net.state_dict()))
    return net, {"steps": steps, "final_loss": tr.tail_mean(losses),
                 "seconds_per_step": round((time.perf_counter() - t0) / steps, 4)}


def make_dit(args, seed):
    torch.manual_seed(seed)
    return fd.DiT(input_size=28, patch=args.patch, channels=1, hidden=args.hidden, depth=args.depth,
                  heads=args.heads)


def make_router(args, K, seed):
    torch.manual_seed(seed)
    return fd.DiTRouter(K, input_size=28, patch=args.patch, channels=1, hidden=args.router_hidden,
                        depth=args.router_depth, heads=args.heads)


@torch.no_grad()
def sample_euler(net, n, steps, seed):
    """x from t = 1 to 0 with Euler on the uniform schedule (the manifest's sanity samples)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 784, generator=g)
    for i in range(steps):
        t, t_next = 1.0 - i / steps, 1.0 - (i + 1) / steps
        x = x + (t_next - t) * net(x, torch.full((n,), t))
    return x


def config_json(args, K):
    return {
        "format": "ddm-fashion-dit/1",
        "name": "fashion-dit",
        "partition": "kmeans",
        "partition_source": "fashion-kmeans (the same k-means clusters, recomputed and checked)",
        "num_experts": K,
        "image": {"height": 28, "width": 28, "channels": 1, "range": [0.0, 1.0]},
        "data": "x = 2 * pixel - 1, (1 * 28 * 28) row-major; pixel = clip((x + 1) / 2, 0, 1)",
        "flow": "rectified: x_t = (1 - t) x0 + t eps, v = eps - x0; experts predict v",
        "dit": {"arch": "original DiT (facebookresearch/DiT), unconditional, velocity output",
                "input_size": 28, "patch_size": args.patch, "in_channels": 1, "hidden_size": args.hidden,
                "depth": args.depth, "num_heads": args.heads, "mlp_ratio": 4.0, "num_classes": 1,
                "null_class": False, "learn_sigma": False, "layer_norm_eps": 1e-6, "frequency_size": 256,
                "time_scale": 1000.0, "label": 0},
        "router": {"arch": "DiT router (Paris port: CLS token, MLP head)", "input_size": 28,
                   "patch_size": args.patch, "in_channels": 1, "hidden_size": args.router_hidden,
                   "depth": args.router_depth, "num_heads": args.heads, "mlp_ratio": 4.0,
                   "layer_norm_eps": 1e-5, "head_layer_norm_eps": 1e-5, "frequency_size": 256,
                   "time_scale": 1000.0},
        "classifier": {"arch": "mlp_classifier", "hidden": 512, "features": 128, "classes": 10,
                       "pixel_mean": fn.PIXEL_MEAN, "pixel_std": fn.PIXEL_STD},
        "files": {"partition": "partition.safetensors",
                  "experts": [f"expert_{k}.safetensors" for k in range(K)],
                  "monolith": "monolith.safetensors", "router": "router.safetensors",
                  "classifier": "classifier.safetensors"},
    }


def load_folder(folder):
    """Read a fashion-dit folder (F16 -> f32): dict(config, partition, experts, monolith, router, classifier)."""
    with open(os.path.join(folder, "config.json")) as f:
        cfg = json.load(f)
    if cfg.get("format") != "ddm-fashion-dit/1":
        raise ValueError(f"'{folder}/config.json': format {cfg.get('format')!r}, expected 'ddm-fashion-dit/1'")
    d, r, files = cfg["dit"], cfg["router"], cfg["files"]
    path = lambda name: os.path.join(folder, name)
    dit = lambda: fd.DiT(input_size=d["input_size"], patch=d["patch_size"], channels=d["in_channels"],
                         hidden=d["hidden_size"], depth=d["depth"], heads=d["num_heads"], mlp_ratio=d["mlp_ratio"])
    router = fd.DiTRouter(cfg["num_experts"], input_size=r["input_size"], patch=r["patch_size"],
                          channels=r["in_channels"], hidden=r["hidden_size"], depth=r["depth"],
                          heads=r["num_heads"], mlp_ratio=r["mlp_ratio"])
    c = cfg["classifier"]
    return {"config": cfg, "partition": fn._read_f32(path(files["partition"])),
            "experts": [fn._load_net(dit(), path(f)) for f in files["experts"]],
            "monolith": fn._load_net(dit(), path(files["monolith"])),
            "router": fn._load_net(router, path(files["router"])),
            "classifier": fn._load_net(fn.Classifier(hidden=c["hidden"], features=c["features"]),
                                       path(files["classifier"]))}


def main(argv):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    load_start = tr.load_average()
    loads = {"start": load_start}
    t_all = time.perf_counter()
    sw = tr.Stopwatch()
    print(f"train.py --arch dit: seed {args.seed}, {args.threads} threads, nproc {os.cpu_count()}, "
          f"load average {load_start}", flush=True)
    try:
        data, checksums = sw.run("data", tr.load_data, args.data)
    except tr.DataError as e:
        print(f"train.py: {e}", file=sys.stderr)
        return 77 if args.smoke and not os.path.isdir(args.data) else 2
    x_train = data["train_images"].float() / 255.0
    x_test = data["test_images"].float() / 255.0
    y_train, y_test = data["train_labels"].long(), data["test_labels"].long()
    assign, assign_test, classifier, km = sw.run("partition", replay_kmeans, args.source, x_train, x_test,
                                                 args.smoke)
    if args.smoke:
        x_train, y_train, assign = x_train[:3000], y_train[:3000], assign[:3000]
        x_test, y_test, assign_test = x_test[:500], y_test[:500], assign_test[:500]
    K = len(km["sizes"])
    m_train, m_test = 2.0 * x_train - 1.0, 2.0 * x_test - 1.0  # model space
    sizes = torch.bincount(assign, minlength=K)
    if int(sizes.min()) == 0:
        raise RuntimeError(f"a cluster is empty (sizes {sizes.tolist()})")
    gen = torch.Generator().manual_seed(args.seed * 1000 + 900)
    base = args.seed * 1000 + 900
    flow_target = lambda idx, x0, eps: eps - x0

    experts, stats = [], []
    t0 = time.perf_counter()
    for k in range(K):
        net, st = train_net(make_dit(args, base + 10 + k), m_train[assign == k], flow_target, args.expert_steps,
                            args, gen, F.mse_loss)
        experts.append(net)
        stats.append(st)
        print(f"  expert {k}: {int(sizes[k])} images, final loss {st['final_loss']}, "
              f"{st['seconds_per_step']} s/step, load {tr.load_average()}", flush=True)
    sw.stages["experts"] = round(time.perf_counter() - t0, 2)
    loads["after_experts"] = tr.load_average()
    mono_steps = K * args.expert_steps
    monolith, mono = sw.run("monolith", train_net, make_dit(args, base + 1), m_train, flow_target, mono_steps,
                            args, gen, F.mse_loss)
    print(f"  monolith: final loss {mono['final_loss']}, {mono['seconds_per_step']} s/step", flush=True)
    loads["after_monolith"] = tr.load_average()
    # The router's target is the cluster of x0; train_net hands the target function the batch indices.
    router, rst = sw.run("router", train_net, make_router(args, K, base + 2), m_train,
                         lambda idx, x0, eps: assign[idx], args.router_steps, args, gen, F.cross_entropy)
    print(f"  router: final loss {rst['final_loss']}, {rst['seconds_per_step']} s/step", flush=True)
    loads["after_router"] = tr.load_average()

    # Partition data in model space: centroids (alignment ranks), priors, the oracle's subsample.
    centroids = torch.stack([m_train[assign == k].mean(0) for k in range(K)])
    priors = sizes.double() / sizes.sum()
    oracle = tr.oracle_subsample(m_train, assign, K, args.oracle_size, gen)

    t0 = time.perf_counter()
    router_eval = tr.evaluate_router(router, m_test, assign_test, K, oracle, base)
    ev = torch.arange(0, m_test.shape[0], max(1, m_test.shape[0] // args.eval_images))[: args.eval_images]
    losses = tr.flow_test_losses(experts + [monolith], m_test[ev], assign_test[ev], K, base)
    # Sanity samples: 64 per expert and the monolith, 20 Euler steps, labelled by the classifier.
    sample_report = {}
    with torch.no_grad():
        for name, net in [(f"expert_{k}", e) for k, e in enumerate(experts)] + [("monolith", monolith)]:
            x = sample_euler(net, 16 if args.smoke else 64, 20, base + 7)
            pred = classifier(fd.to_pixels(x)).argmax(1)
            sample_report[name] = {"class_counts": torch.bincount(pred, minlength=10).tolist(),
                                   "finite": bool(torch.isfinite(x).all())}
    sw.stages["evaluation"] = round(time.perf_counter() - t0, 2)
    for row in router_eval:
        print(f"  t={row['t']:.2f} router acc {row['router']['accuracy']:.3f} ece {row['router']['ece']:.3f}"
              f" | oracle acc {row['oracle']['accuracy']:.3f}", flush=True)

    folder = os.path.join(args.out, "fashion-dit")
    if os.path.isdir(folder):
        shutil.rmtree(folder)
    os.makedirs(folder)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config_json(args, K), f, indent=2)
        f.write("\n")
    meta = {"ddm": "fashion-dit", "seed": args.seed, "torch": torch.__version__}
    for k, net in enumerate(experts):
        tr.save_f16(net.state_dict(), os.path.join(folder, f"expert_{k}.safetensors"),
                    {**meta, "net": "expert", "cluster": k, "arch": "dit", "steps": args.expert_steps,
                     "final_loss": stats[k]["final_loss"]})
    tr.save_f16(monolith.state_dict(), os.path.join(folder, "monolith.safetensors"),
                {**meta, "net": "monolith", "arch": "dit", "steps": mono_steps, "final_loss": mono["final_loss"]})
    tr.save_f16(router.state_dict(), os.path.join(folder, "router.safetensors"),
                {**meta, "net": "router", "arch": "dit_router", "steps": args.router_steps,
                 "final_loss": rst["final_loss"]})
    shutil.copyfile(os.path.join(args.source, "classifier.safetensors"), os.path.join(folder, "classifier.safetensors"))
    save_file({"centroids": centroids.float().contiguous(), "priors": priors.float(),
               "oracle_latents": oracle[0].float().contiguous(), "oracle_clusters": oracle[1].float()},
              os.path.join(folder, "partition.safetensors"),
              metadata={**{k: str(v) for k, v in meta.items()}, "partition": "kmeans",
                        "space": "model space x = 2 * pixel - 1 (784 values)",
                        "oracle": "stratified subsample, round(N * prior_k) per cluster"})
    total = round(time.perf_counter() - t_all, 1)
    loads["end"] = tr.load_average()
    with open(os.path.join(args.source, "manifest.json")) as f:
        src_manifest = json.load(f)
    table = torch.zeros(K, 10, dtype=torch.long)
    table.index_put_((assign, y_train), torch.ones_like(assign), accumulate=True)
    manifest = {
        "command": " ".join(["python", "examples/03_fashion/train.py", "--arch", "dit"] + argv),
        "seed": args.seed, "mode": "smoke" if args.smoke else "default",
        "arguments": {k: v for k, v in vars(args).items() if k not in ("out",)},
        "torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine(),
        "nproc": os.cpu_count(), "threads": args.threads,
        "data": {"folder": args.data, "sha256": checksums, "train_images": int(x_train.shape[0]),
                 "test_images": int(x_test.shape[0])},
        "partition": {"kind": "kmeans", "source": "fashion-kmeans", **km,
                      "classifier_test_accuracy": src_manifest["classifier"]["test_accuracy"]},
        "ddm": "fashion-dit", "num_experts": K,
        "architecture": {"expert": config_json(args, K)["dit"], "router": config_json(args, K)["router"],
                         "parameters": {"expert": sum(p.numel() for p in experts[0].parameters()),
                                        "router": sum(p.numel() for p in router.parameters())},
                         "optimizer": f"Adam, peak lr {args.lr}, warm-up then cosine decay to 0, grad-norm "
                                      f"clip 1, batch {args.batch}, t ~ U(0, 1)"},
        "cluster_sizes": sizes.tolist(),
        "test_cluster_sizes": torch.bincount(assign_test, minlength=K).tolist(),
        "cluster_by_class": {"rows": "cluster k", "columns": "class 0..9", "counts": table.tolist()},
        "final_losses": {**{f"expert_{k}": stats[k]["final_loss"] for k in range(K)},
                         "monolith": mono["final_loss"], "router": rst["final_loss"]},
        "seconds_per_step": {**{f"expert_{k}": stats[k]["seconds_per_step"] for k in range(K)},
                             "monolith": mono["seconds_per_step"], "router": rst["seconds_per_step"]},
        "steps": {"expert_each": args.expert_steps, "monolith": mono_steps, "router": args.router_steps,
                  "batch": args.batch},
        "test_flow_loss": {"rows": [f"expert_{k}" for k in range(K)] + ["monolith"],
                           "columns": "test images of cluster 0..K-1",
                           "note": f"rectified-flow MSE in model space on {len(ev)} evenly spaced test images, "
                                   "2 seeded (eps, t ~ U(0,1)) draws each", "values": losses},
        "router_by_t": {"note": "test images at x_t = (1 - t) x0 + t eps, one seeded eps per t; ece: 15 "
                                "equal-width bins; oracle: empirical posterior over the committed subsample",
                        "rows": router_eval},
        "oracle_size": args.oracle_size,
        "sanity_samples": {"note": "64 samples of each net alone, 20 Euler steps, seeded; the classes the "
                                   "classifier gives them", **sample_report},
        "wall_seconds": {"stages": sw.stages, "total": total},
        "load_average": loads,
    }
    with open(os.path.join(folder, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    print(f"train.py --arch dit: wrote {folder} in {total} s (load average {loads})", flush=True)

    # Load back and check: names, shapes, F16, finite outputs.
    problems = []
    try:
        back = load_folder(folder)
        z = torch.randn(4, 784, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            for t in (1.0, 0.5, 0.05):
                tt = torch.full((4,), t)
                for name, net in [("expert_0", back["experts"][0]), ("monolith", back["monolith"])]:
                    if not torch.isfinite(net(z, tt)).all():
                        problems.append(f"{name} at t = {t}: non-finite output")
                if tuple(back["router"](z, tt).shape) != (4, K):
                    problems.append("router: wrong output shape")
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        problems.append(str(e))
    for p in problems:
        print(f"train.py --arch dit: check failed: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
