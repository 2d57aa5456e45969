"""tests/oracle/st_io.py — minimal safetensors writer/reader (json + struct, no extra
packages), used by the oracle scripts. Writes F32 only, as vita reads it."""
import json
import struct

import numpy as np


def save(path, tensors, metadata=None):
    """tensors: dict name -> array (written as float32, C order), in insertion order."""
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for name, arr in tensors.items():
        a = np.ascontiguousarray(np.asarray(arr, dtype=np.float32))
        b = a.tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def load(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        assert e["dtype"] == "F32", name
        b, en = e["data_offsets"]
        out[name] = np.frombuffer(data[b:en], dtype=np.float32).reshape(e["shape"])
    return out, header.get("__metadata__", {})
