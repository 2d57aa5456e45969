#!/usr/bin/env python3
"""tests/oracle/safetensors_check.py FILE [NAME=D0,D1,... ...] [meta:KEY ...]

Independent check (json + struct only) that FILE has the layout the reference safetensors
implementation writes and accepts: u64 LE header length N with N % 8 == 0, a UTF-8 JSON object
padded with spaces, no duplicate keys, "__metadata__" of str -> str, every tensor F32 with integer
shape and data_offsets that tile the data buffer exactly. If NAME=SHAPE arguments are given,
the tensors must be exactly those, in that header order ("NAME=" is a 0-d scalar); meta:KEY
arguments must be present in __metadata__. Exit 0 when everything holds, 1 with a message if not.
"""
import json
import struct
import sys


def fail(msg):
    print(f"safetensors_check: {sys.argv[1]}: {msg}")
    sys.exit(1)


def no_dups(pairs):
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        fail(f"duplicate keys in {keys}")
    return dict(pairs)


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        sys.exit(2)
    raw = open(sys.argv[1], "rb").read()
    if len(raw) < 8:
        fail("shorter than 8 bytes")
    (n,) = struct.unpack("<Q", raw[:8])
    if n % 8:
        fail(f"header length {n} is not a multiple of 8")
    if 8 + n > len(raw):
        fail(f"header length {n} past the end of a {len(raw)}-byte file")
    text = raw[8:8 + n].decode("utf-8")
    body = text.rstrip(" ")
    if not body.startswith("{") or not body.endswith("}"):
        fail("header is not a JSON object padded with spaces")
    hdr = json.loads(body, object_pairs_hook=no_dups)
    data_len = len(raw) - 8 - n
    meta = hdr.pop("__metadata__", None)
    if meta is not None:
        if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                 for k, v in meta.items()):
            fail("__metadata__ is not an object of strings")
    ranges = []
    for name, e in hdr.items():
        if set(e) != {"dtype", "shape", "data_offsets"}:
            fail(f"tensor {name!r}: fields {sorted(e)}")
        if e["dtype"] != "F32":
            fail(f"tensor {name!r}: dtype {e['dtype']!r}, expected 'F32'")
        shape, off = e["shape"], e["data_offsets"]
        if not isinstance(shape, list) or not all(is_int(d) and d >= 0 for d in shape):
            fail(f"tensor {name!r}: shape {shape!r}")
        if not isinstance(off, list) or len(off) != 2 or not all(is_int(o) for o in off):
            fail(f"tensor {name!r}: data_offsets {off!r} are not two integers")
        numel = 1
        for d in shape:
            numel *= d
        if off[1] - off[0] != 4 * numel or off[0] < 0:
            fail(f"tensor {name!r}: data_offsets {off} for shape {shape}")
        ranges.append((off[0], off[1], name))
    at = 0
    for b, e, name in sorted(ranges):
        if b != at:
            fail(f"tensor {name!r}: begins at {b}, expected {at} (hole or overlap)")
        at = e
    if at != data_len:
        fail(f"tensors end at {at} but the data buffer is {data_len} bytes")
    want = [a for a in sys.argv[2:] if not a.startswith("meta:")]
    if want:
        got = [f"{k}={','.join(str(d) for d in e['shape'])}" for k, e in hdr.items()]
        if got != want:
            fail(f"tensors {got}, expected {want}")
    for a in sys.argv[2:]:
        if a.startswith("meta:") and (meta is None or a[5:] not in meta):
            fail(f"__metadata__ lacks {a[5:]!r}")
    print(f"safetensors_check: {sys.argv[1]}: ok ({len(hdr)} tensors, header {n} bytes, "
          f"{len(meta or {})} metadata)")


if __name__ == "__main__":
    main()
