#!/usr/bin/env python3
"""Writes the seed corpus of the safetensors fuzzer (tests/fuzz/corpus/). Standard library only.

Seeds cover the valid shapes of the format (several dtypes, metadata, rank-0 and empty tensors,
unaligned data, whitespace around the header) and a few near-misses, so that mutations start
close to every rule the reader checks.
"""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus")


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


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, blob in seeds():
        with open(os.path.join(OUT, name + ".safetensors"), "wb") as f:
            f.write(blob)


if __name__ == "__main__":
    main()
