"""tests/oracle/st_io.py — safetensors I/O for the oracle scripts: tools/checkpoint_io.py's
writer (F32, atomic) and reader (F32/F16/BF16 -> float32), under the names the oracles use."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
from checkpoint_io import read_safetensors, write_safetensors  # noqa: E402


def save(path, tensors, metadata=None):
    """tensors: dict name -> array (written as float32, C order), in insertion order."""
    write_safetensors(path, tensors, metadata)


def load(path):
    """-> (dict name -> float32 array, metadata dict)"""
    tensors, meta = read_safetensors(path)
    return dict(tensors), meta
