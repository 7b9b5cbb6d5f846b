#!/usr/bin/env python3
"""Golden outputs of the committed DiT tier (examples/03_fashion/models/fashion-dit) for the C++
agreement test (tests/fashion/fashion_test.cpp, FashionDitGolden): PyTorch eager forwards of
expert 0, the last expert, the monolith and the DiT router, the oracle's probabilities, and short
routed samples under ddm's rules (reference.py's RoutedField and sampler).

    python3 tests/fashion/make_dit_golden.py    # needs PyTorch; writes tests/fashion/golden/fashion-dit.safetensors

Inputs: x_t = (1 - t) x0 + t eps for the first 4 Fashion-MNIST test images x0 (model space
2 * pixel - 1) and seeded noise, at t = 1, 0.5, 0.05 (keys x.t<tt>); samples start from the
t = 1 input (pure noise) and take 6 uniform steps.
"""
import argparse
import os
import sys

import torch
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
EX = os.path.join(HERE, "..", "..", "examples", "03_fashion")
sys.path.insert(0, EX)
import fashion_nets as fn  # noqa: E402
import reference  # noqa: E402
import train  # noqa: E402
import train_dit  # noqa: E402

TIMES = ("1.0", "0.5", "0.05")
ROWS, STEPS = 4, 6


@torch.no_grad()
def main(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--folder", default=os.path.join(EX, "models", "fashion-dit"))
    p.add_argument("--out", default=os.path.join(HERE, "golden", "fashion-dit.safetensors"))
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    folder = a.folder
    ddm = train_dit.load_folder(folder)
    K = ddm["config"]["num_experts"]
    x0 = train.read_idx("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz", 2051, 10000)[:ROWS]
    x0 = 2.0 * (x0.float() / 255.0) - 1.0
    eps = torch.randn(ROWS, 784, generator=torch.Generator().manual_seed(7))
    part = ddm["partition"]
    out = {}
    for tt in TIMES:
        t = float(tt)
        x = (1.0 - t) * x0 + t * eps
        times = torch.full((ROWS,), t)
        out[f"x.t{tt}"] = x
        out[f"expert.0.t{tt}"] = ddm["experts"][0](x, times)
        out[f"expert.{K - 1}.t{tt}"] = ddm["experts"][K - 1](x, times)
        out[f"monolith.t{tt}"] = ddm["monolith"](x, times)
        out[f"router.t{tt}"] = ddm["router"](x, times)
        out[f"oracle.t{tt}"] = fn.oracle_probabilities(x, t, part["oracle_latents"], part["oracle_clusters"], K)
    z = out["x.t1.0"]
    for policy in reference.POLICIES:
        out[f"sample.{policy}.euler"] = reference.sample(reference.RoutedField(ddm, policy), z, STEPS, "euler")
    out["sample.monolith.euler"] = reference.sample(reference.NetField(ddm["monolith"]), z, STEPS, "euler")
    for name, v in out.items():
        if not torch.isfinite(v).all():
            raise RuntimeError(f"golden tensor '{name}' has a non-finite value")
    path = a.out
    save_file({k: v.float().contiguous() for k, v in out.items()}, path,
              metadata={"steps": str(STEPS), "rows": str(ROWS), "times": ",".join(TIMES), "torch": torch.__version__,
                        "made_by": "tests/fashion/make_dit_golden.py"})
    print(f"make_dit_golden.py: wrote {path}")


if __name__ == "__main__":
    main(sys.argv[1:])
