#!/usr/bin/env python3
"""Writes the seed corpora of the fuzzers. Standard library only.

tests/fuzz/corpus/ (the safetensors reader): the valid shapes of the format (several dtypes,
metadata, rank-0 and empty tensors, unaligned data, whitespace around the header), a few
near-misses, so that mutations start close to every rule the reader checks, and the hostile
inputs of issue 13 (a byte-order mark, -0, reversed offsets, deep nesting, duplicate metadata,
the crafted empty tensors).

tests/fuzz/corpus_dit/ (the DiT loaders): a 4-byte length, a config.json text and a safetensors
file (dit_loaders_fuzz.cpp). Tiny valid Paris experts, routers and original DiTs, and the crafted
checkpoints of issue 13, each once a crash or a hang: an empty patch embedding of shape
(D, C, 0, 0) (division by zero), (D, 0, 2^32, 2^32) (overflow), an MLP weight (2^63 - 1, 0) (an
endless loop), and "text_length": 2^60 in config.json (an overflow into a null memcpy).
"""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus")
OUT_DIT = os.path.join(HERE, "corpus_dit")


def pack(header, data=b"", pad_to=8, declared=None, raw_header=None):
    text = raw_header if raw_header is not None else json.dumps(header, separators=(",", ":"))
    if pad_to:
        text += " " * ((pad_to - len(text) % pad_to) % pad_to)
    body = text.encode("utf-8")
    n = len(body) if declared is None else declared
    return struct.pack("<Q", n) + body + data


def entry(dtype, shape, begin, end):
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


def seeds():
    f32 = struct.pack("<4f", 1.0, -2.0, 0.5, 3.25)
    yield "f32_matrix", pack({"w": entry("F32", [2, 2], 0, 16)}, f32)
    yield "mixed_dtypes_metadata", pack(
        {
            "__metadata__": {"format": "pt"},
            "a": entry("F64", [1], 0, 8),
            "b": entry("F32", [2], 8, 16),
            "c": entry("BF16", [2], 16, 20),
            "d": entry("F16", [1, 2], 20, 24),
            "e": entry("I8", [2], 24, 26),
        },
        struct.pack("<d2f", 1.5, 2.0, -1.0) + bytes([0x80, 0x3F, 0x00, 0xC0, 0x00, 0x3C, 0x00, 0xBC, 7, 250]),
    )
    yield "scalar_and_empty", pack(
        {"s": entry("F32", [], 0, 4), "z": entry("F32", [0, 3], 4, 4), "y": entry("BF16", [5, 0], 4, 4)},
        struct.pack("<f", 4.5),
    )
    yield "empty_file", pack({})
    yield "unaligned", pack({"x": entry("F32", [2], 0, 8)}, struct.pack("<2f", 0.25, 8.0), pad_to=0)
    yield "whitespace", pack(None, struct.pack("<f", 1.0),
                             raw_header='\n\t {"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}  \r\n')
    yield "sub_byte", pack({"q": entry("F4", [4], 0, 2)}, b"\x12\x34")
    yield "out_of_order", pack({"b": entry("F32", [1], 4, 8), "a": entry("F32", [1], 0, 4)}, struct.pack("<2f", 1, 2))
    # near-misses, each breaking one rule
    yield "bad_gap", pack({"a": entry("F32", [1], 0, 4), "b": entry("F32", [1], 8, 12)}, bytes(12))
    yield "bad_length", pack({"a": entry("F32", [3], 0, 8)}, bytes(8))
    yield "bad_trailing", pack({"a": entry("F32", [1], 0, 4)}, bytes(6))
    yield "bad_duplicate", pack(None, bytes(8), raw_header='{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
                                                          '"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}')
    yield "bad_declared_length", pack({"a": entry("F32", [1], 0, 4)}, bytes(4), declared=1 << 40)
    # issue 13
    yield "hostile_bom", pack(None, raw_header="\ufeff{}")
    yield "hostile_negative_zero", pack(None, raw_header='{"w":{"dtype":"F32","shape":[-0],"data_offsets":[0,0]}}')
    yield "hostile_reversed_offsets", pack({"w": entry("F32", [1], 4, 0)}, bytes(4))
    yield "hostile_deep_extra", pack(None, bytes(4), raw_header='{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4],'
                                                                '"x":' + "[" * 126 + "]" * 126 + "}}")
    yield "hostile_duplicate_metadata", pack(None, raw_header='{"__metadata__":{"k":"a","k":"a"}}')
    yield "hostile_empty_patch", pack({"patch_embed.weight": entry("F32", [32, 4, 0, 0], 0, 0)})
    yield "hostile_huge_empty", pack({"patch_embed.weight": entry("F32", [32, 0, 1 << 32, 1 << 32], 0, 0)})
    yield "hostile_max_empty", pack({"layers.0.mlp.0.weight": entry("F32", [(1 << 63) - 1, 0], 0, 0)})


# --- the DiT loaders ----------------------------------------------------------------------------

def f32_file(tensors):
    """A safetensors file of F32 tensors (name -> shape), values 0.01, 0.02, ... per tensor."""
    header, blobs, offset = {}, [], 0
    for name, shape in tensors:
        n = 1
        for d in shape:
            n *= d
        raw = struct.pack("<%df" % n, *[0.01 * (i + 1) for i in range(n)]) if n else b""
        header[name] = entry("F32", shape, offset, offset + len(raw))
        blobs.append(raw)
        offset += len(raw)
    return pack(header, b"".join(blobs))


def dit_input(config, file):
    text = json.dumps(config).encode() if config is not None else b""
    return struct.pack("<I", len(text)) + text + file


FREQ = 256  # the frequency embedding width the loaders assume (not in the shapes)


def paris_expert(d=2, c=1, p=1, grid=2, text_dim=2, mlp=4, out=1, depth=1, replace=None):
    t = [("patch_embed.weight", [d, c, p, p]), ("patch_embed.bias", [d]), ("pos_embed", [1, grid * grid, d]),
         ("time_embed.mlp.0.weight", [d, FREQ]), ("time_embed.mlp.0.bias", [d]),
         ("time_embed.mlp.2.weight", [d, d]), ("time_embed.mlp.2.bias", [d]),
         ("text_proj.weight", [d, text_dim]), ("text_proj.bias", [d]), ("t_block.1.weight", [6 * d, d]),
         ("t_block.1.bias", [6 * d])]
    for i in range(depth):
        b = "layers.%d." % i
        t += [(b + "scale_shift_table", [6, d]), (b + "attn.in_proj_weight", [3 * d, d]),
              (b + "attn.in_proj_bias", [3 * d]), (b + "attn.out_proj.weight", [d, d]), (b + "attn.out_proj.bias", [d]),
              (b + "cross_attn.in_proj_weight", [3 * d, d]), (b + "cross_attn.in_proj_bias", [3 * d]),
              (b + "cross_attn.out_proj.weight", [d, d]), (b + "cross_attn.out_proj.bias", [d]),
              (b + "mlp.0.weight", [mlp, d]), (b + "mlp.0.bias", [mlp]), (b + "mlp.2.weight", [d, mlp]),
              (b + "mlp.2.bias", [d])]
    t += [("final_layer.scale_shift_table", [2, d]), ("final_layer.linear.weight", [p * p * out, d]),
          ("final_layer.linear.bias", [p * p * out])]
    if replace:
        t = [(n, replace.get(n, s)) for n, s in t]
    return f32_file(t)


def dit_router(d=2, c=1, p=1, grid=2, mlp=4, experts=2, depth=1):
    t = [("patch_embed.weight", [d, c, p, p]), ("patch_embed.bias", [d]), ("pos_embed", [1, grid * grid, d]),
         ("time_embed.mlp.0.weight", [d, FREQ]), ("time_embed.mlp.0.bias", [d]),
         ("time_embed.mlp.2.weight", [d, d]), ("time_embed.mlp.2.bias", [d]), ("cls_token", [1, 1, d])]
    for i in range(depth):
        b = "layers.%d." % i
        t += [(b + "adaLN_modulation.1.weight", [6 * d, d]), (b + "adaLN_modulation.1.bias", [6 * d]),
              (b + "attn.in_proj_weight", [3 * d, d]), (b + "attn.in_proj_bias", [3 * d]),
              (b + "attn.out_proj.weight", [d, d]), (b + "attn.out_proj.bias", [d]),
              (b + "mlp.0.weight", [mlp, d]), (b + "mlp.0.bias", [mlp]), (b + "mlp.2.weight", [d, mlp]),
              (b + "mlp.2.bias", [d])]
    t += [("head.0.weight", [d, d]), ("head.0.bias", [d]), ("head.2.weight", [d]), ("head.2.bias", [d]),
          ("head.4.weight", [experts, d]), ("head.4.bias", [experts])]
    return f32_file(t)


def original_dit(d=2, c=1, p=1, input_size=2, classes=2, mlp_ratio=2.0, depth=1, learn_sigma=False):
    h = int(d * mlp_ratio)
    out = 2 * c if learn_sigma else c
    tokens = (input_size // p) ** 2
    t = [("x_embedder.proj.weight", [d, c, p, p]), ("x_embedder.proj.bias", [d]), ("pos_embed", [1, tokens, d]),
         ("t_embedder.mlp.0.weight", [d, FREQ]), ("t_embedder.mlp.0.bias", [d]),
         ("t_embedder.mlp.2.weight", [d, d]), ("t_embedder.mlp.2.bias", [d]),
         ("y_embedder.embedding_table.weight", [classes + 1, d])]
    for i in range(depth):
        b = "blocks.%d." % i
        t += [(b + "adaLN_modulation.1.weight", [6 * d, d]), (b + "adaLN_modulation.1.bias", [6 * d]),
              (b + "attn.qkv.weight", [3 * d, d]), (b + "attn.qkv.bias", [3 * d]), (b + "attn.proj.weight", [d, d]),
              (b + "attn.proj.bias", [d]), (b + "mlp.fc1.weight", [h, d]), (b + "mlp.fc1.bias", [h]),
              (b + "mlp.fc2.weight", [d, h]), (b + "mlp.fc2.bias", [d])]
    t += [("final_layer.adaLN_modulation.1.weight", [2 * d, d]), ("final_layer.adaLN_modulation.1.bias", [2 * d]),
          ("final_layer.linear.weight", [p * p * out, d]), ("final_layer.linear.bias", [p * p * out])]
    config = {"input_size": input_size, "patch_size": p, "in_channels": c, "hidden_size": d, "depth": depth,
              "num_heads": 1, "num_classes": classes, "mlp_ratio": mlp_ratio, "learn_sigma": learn_sigma,
              "null_class": True}
    return config, f32_file(t)


def dit_seeds():
    paris_config = {"num_heads": 1, "text_length": 3}
    yield "paris_expert", dit_input(paris_config, paris_expert())
    yield "paris_expert_no_config", dit_input(None, paris_expert(d=16, depth=2))  # 16 heads by default
    yield "paris_router", dit_input({"num_heads": 2, "layer_norm_eps": 1e-6}, dit_router())
    config, file = original_dit()
    yield "original_dit", dit_input(config, file)
    config, file = original_dit(d=4, c=2, p=2, input_size=4, learn_sigma=True)
    yield "original_dit_sigma", dit_input(config, file)
    # issue 13's crafted checkpoints
    yield "hostile_empty_patch", dit_input(paris_config, paris_expert(replace={"patch_embed.weight": [2, 1, 0, 0]}))
    yield "hostile_huge_empty_patch", dit_input(
        paris_config, paris_expert(replace={"patch_embed.weight": [2, 0, 1 << 32, 1 << 32]}))
    yield "hostile_mlp_width", dit_input(paris_config, paris_expert(replace={"layers.0.mlp.0.weight": [(1 << 63) - 1, 0]}))
    yield "hostile_text_length", dit_input({"num_heads": 1, "text_length": 1 << 60}, paris_expert())
    yield "hostile_config_not_object", dit_input([1, 2], paris_expert())


def main():
    for out, generate, suffix in ((OUT, seeds, ".safetensors"), (OUT_DIT, dit_seeds, ".bin")):
        os.makedirs(out, exist_ok=True)
        for name, blob in generate():
            with open(os.path.join(out, name + suffix), "wb") as f:
                f.write(blob)


if __name__ == "__main__":
    main()
