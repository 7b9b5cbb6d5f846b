#!/usr/bin/env python3
"""PyTorch reference for the DiT's classifier-free guidance: writes dit_a.cfg.golden.safetensors.

    python3 tests/dit/golden/make_cfg_golden.py        # after make_golden.py (reads dit_a.*)

Loads tests/dit/golden/dit_a.safetensors into make_golden.py's DiT (strictly: every key) and
evaluates the guided prediction as facebookresearch/DiT's DiT.forward_with_cfg does: the batch
doubled with the null label, one forward, then guidance on the first `channels` output channels
only, the rest (the fourth eps channel and the learned-sigma channels) taken from the model's
output for each half. The official code guides 3 channels; the standard formula guides all eps
channels (4 here), so both are written:

    output.three  (B, 2C, H, W)  the first half of forward_with_cfg as released (3 channels)
    output.all    (B, 2C, H, W)  the same with every eps channel guided
    input.x, input.t, input.y    (B, C, H, W), (B,), (B,) labels as float; metadata: scale, null
"""
import json
import os
import sys

import torch
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_golden  # noqa: E402  (the reference DiT, written independently of the C++ code)


def forward_with_cfg(model, x, t, y, scale, channels):
    """The official method's arithmetic, on a batch whose second half repeats the first."""
    half = x[: len(x) // 2]
    combined = torch.cat([half, half], dim=0)
    out = model(combined, t, y, {})
    eps, rest = out[:, :channels], out[:, channels:]
    cond_eps, uncond_eps = torch.split(eps, len(eps) // 2, dim=0)
    half_eps = uncond_eps + scale * (cond_eps - uncond_eps)
    eps = torch.cat([half_eps, half_eps], dim=0)
    return torch.cat([eps, rest], dim=1)


def main():
    torch.set_num_threads(1)
    golden = os.path.join(HERE, "dit_a.golden.safetensors")
    from safetensors import safe_open
    with safe_open(golden, "pt") as f:
        cfg = json.loads(f.metadata()["config"])
    model = make_golden.DiT(cfg).eval()
    state = {k: v.float() for k, v in load_file(os.path.join(HERE, "dit_a.safetensors")).items()}
    model.load_state_dict(state, strict=True)

    gen = torch.Generator().manual_seed(11)
    c, s = cfg["in_channels"], cfg["input_size"]
    b = 3
    x = torch.randn(b, c, s, s, generator=gen)
    t = torch.tensor([999.0, 431.7, 12.0])
    labels = torch.tensor([3, 7, 0])
    null = cfg["num_classes"]
    scale = 4.0
    x2 = torch.cat([x, x], dim=0)
    t2 = torch.cat([t, t], dim=0)
    y2 = torch.cat([labels, torch.full_like(labels, null)], dim=0)
    with torch.no_grad():
        three = forward_with_cfg(model, x2, t2, y2, scale, 3)[:b]
        every = forward_with_cfg(model, x2, t2, y2, scale, c)[:b]
    save_file({"input.x": x.contiguous(), "input.t": t.contiguous(), "input.y": labels.float().contiguous(),
               "output.three": three.contiguous(), "output.all": every.contiguous()},
              os.path.join(HERE, "dit_a.cfg.golden.safetensors"),
              metadata={"scale": repr(scale), "null": str(null), "config": json.dumps(cfg, sort_keys=True),
                        "torch": torch.__version__})


if __name__ == "__main__":
    main()
