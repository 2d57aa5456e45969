"""tools/checkpoint_io.py — reading PyTorch / safetensors checkpoints without running pickled
code, and writing safetensors atomically. Shared by convert_checkpoint.py, export_checkpoint.py
and their tests.

Safetensors (SPEC.md §3): u64 little-endian header length, JSON header {name: {dtype, shape,
data_offsets}} plus optional "__metadata__" of strings, then the data buffer. read_safetensors
accepts F32, F16, BF16 (returned as float32 numpy arrays; BF16 widened bit-exactly) and F64
(kept float64); write_safetensors writes F32 in the given order, temp file + fsync + rename.

PyTorch pickles: torch.load(..., weights_only=True) where the installed torch has it (1.13 on);
when that refuses the file, or torch is older, a restricted reader of the zip format whose
find_class only returns stand-ins for the tensor/storage rebuild functions, dtypes,
OrderedDict and plain containers: any other global (os.system, builtins.eval, subprocess.*,
...) aborts the load before anything is called. Harmless metadata classes that training
scripts pickle next to the weights (argparse.Namespace) come back as inert placeholders.
"""
import collections
import json
import os
import pickle
import struct
import sys
import tempfile

import numpy as np

ST_MAX_HEADER = 100 * 1000 * 1000   # vita's reader rejects larger headers (SPEC.md §3)


class CheckpointError(Exception):
    """a user-facing one-line error (bad file, unsafe pickle, unsupported layout)"""


# ---- safetensors --------------------------------------------------------------------------
def _bf16_to_f32(raw):
    u = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
    return u.view(np.float32)


def read_safetensors(path):
    """-> (OrderedDict name -> numpy array, metadata dict). Validates offsets and dtypes."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) != 8:
                raise CheckpointError(f"{path}: shorter than a safetensors header")
            n = struct.unpack("<Q", head)[0]
            if n > ST_MAX_HEADER:
                raise CheckpointError(f"{path}: safetensors header of {n} bytes (limit 100 MB): "
                                      "not a safetensors file?")
            header = json.loads(f.read(n))
            data = f.read()
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}: cannot read as safetensors ({e})")
    meta = header.pop("__metadata__", {}) or {}
    dtypes = {"F32": "<f4", "F16": "<f2", "F64": "<f8"}
    out = collections.OrderedDict()
    for name, e in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        b, en = e["data_offsets"]
        shape = [int(s) for s in e["shape"]]
        count = int(np.prod(shape)) if shape else 1
        if e["dtype"] == "BF16":
            if en - b != 2 * count or en > len(data):
                raise CheckpointError(f"{path}: tensor '{name}': byte range does not match its shape")
            out[name] = _bf16_to_f32(data[b:en]).reshape(shape)
            continue
        if e["dtype"] not in dtypes:
            raise CheckpointError(f"{path}: tensor '{name}' has dtype {e['dtype']}; "
                                  "only F32, F16, BF16 and F64 weights can be converted")
        dt = np.dtype(dtypes[e["dtype"]])
        if en - b != dt.itemsize * count or en > len(data):
            raise CheckpointError(f"{path}: tensor '{name}': byte range does not match its shape")
        a = np.frombuffer(data[b:en], dtype=dt).reshape(shape)
        out[name] = a.astype(np.float32) if dt.itemsize == 2 else a
    return out, dict(meta)


def write_safetensors(path, tensors, metadata=None):
    """tensors: ordered name -> array (written F32, C order); metadata: str -> str.
    Atomic: a temporary file in the target's directory, fsync, rename."""
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
    _atomic_write(path, lambda f: [f.write(struct.pack("<Q", len(h))), f.write(h)] +
                  [f.write(b) for b in blobs])


def _atomic_write(path, write):
    d = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=d)
    except OSError as e:
        raise CheckpointError(f"cannot create a file next to {path}: {e.strerror}; "
                              "check that the directory exists and is writable")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        os.unlink(tmp)
        raise CheckpointError(f"cannot write {path}: {e.strerror}")


def atomic_torch_save(obj, path):
    import torch
    _atomic_write(path, lambda f: torch.save(obj, f))


# ---- PyTorch pickles -------------------------------------------------------------------------
# A zip-format checkpoint (torch.save since 1.6) is archive/data.pkl + archive/data/<key> raw
# storages. The restricted reader unpickles data.pkl itself: find_class hands out stand-ins
# that build numpy arrays from the raw storages, the plain containers pickles use, and inert
# placeholders for metadata classes; any other global aborts the load before it is called.
# (torch.load(pickle_module=...) cannot be used for this: torch 1.13 replaces any pickle_module
# by the standard pickle unless weights_only is set.)
_STORAGE_DTYPES = {"FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2",
                   "BFloat16Storage": "bf16", "LongStorage": "<i8", "IntStorage": "<i4",
                   "ShortStorage": "<i2", "CharStorage": "i1", "ByteStorage": "u1",
                   "BoolStorage": "?"}
_DTYPE_NAMES = {"float32", "float64", "float16", "bfloat16", "int64", "int32", "int16", "int8",
                "uint8", "bool"}


class _StorageType:
    def __init__(self, name):
        self.name = name


class _Placeholder:
    """stands in for a pickled metadata object; records its state, runs nothing"""

    def __init__(self, *args, **kwargs):
        self.args = args

    def __setstate__(self, state):
        self.state = state


def _rebuild_tensor(storage, offset, size, stride, *rest):
    a = np.lib.stride_tricks.as_strided(storage[offset:], shape=tuple(size),
                                        strides=tuple(s * storage.itemsize for s in stride))
    return np.array(a)


def _rebuild_parameter(data, *rest):
    return data


def _rebuild_from_type(func, new_type, args, state):
    return func(*args)


_SAFE = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set, ("builtins", "frozenset"): frozenset, ("builtins", "slice"): slice,
    ("builtins", "complex"): complex,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type,
    ("torch", "Size"): tuple, ("torch", "device"): str,
    ("torch.nn.parameter", "Parameter"): _Placeholder, ("torch", "Tensor"): _Placeholder,
    ("argparse", "Namespace"): _Placeholder,
}
# numpy's own reconstructors only rebuild arrays and scalars from bytes
_NUMPY = {("numpy.core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
          ("numpy", "ndarray"), ("numpy", "dtype")}


class RestrictedUnpickler(pickle.Unpickler):
    storages = None     # key -> raw bytes reader (zip archives)

    def find_class(self, module, name):
        if (module, name) in _SAFE:
            return _SAFE[(module, name)]
        if (module, name) in _NUMPY:
            return super().find_class(module, name)
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        if module == "torch" and name in _DTYPE_NAMES:
            return name
        raise pickle.UnpicklingError(
            f"refusing to load: the pickle references {module}.{name}, which is not a tensor, "
            "storage or container (a checkpoint that runs code when loaded)")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage" and self.storages):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r:.60}")
        stype, key = pid[1], str(pid[2])
        name = stype.name if isinstance(stype, _StorageType) else None
        if name is None:   # torch >= 2 pickles a dtype here (UntypedStorage + dtype)
            raise pickle.UnpicklingError(f"unsupported storage type {stype!r:.60}")
        raw = self.storages(key)
        if _STORAGE_DTYPES[name] == "bf16":
            return _bf16_to_f32(raw)
        return np.frombuffer(raw, dtype=np.dtype(_STORAGE_DTYPES[name]))


def _load_zip_restricted(path):
    import zipfile
    with zipfile.ZipFile(path) as z:
        pkl = [n for n in z.namelist() if n == "data.pkl" or n.endswith("/data.pkl")]
        if not pkl:
            raise CheckpointError(f"{path}: a zip file without data.pkl: not a torch.save file")
        prefix = pkl[0][:-len("data.pkl")]
        cache = {}

        def storage(key):
            if key not in cache:
                cache[key] = z.read(f"{prefix}data/{key}")
            return cache[key]
        import io
        u = RestrictedUnpickler(io.BytesIO(z.read(pkl[0])), encoding="utf-8")
        u.storages = storage
        return u.load()


def torch_has_weights_only():
    import inspect
    import torch
    return "weights_only" in inspect.signature(torch.load).parameters


def load_torch(path):
    """-> the unpickled object (torch tensors or numpy arrays). Never executes pickled code:
    torch.load(weights_only=True) where torch has it, else (or when it refuses the file, e.g.
    for an argparse.Namespace saved beside the weights) the restricted zip reader above."""
    import zipfile
    try:
        if torch_has_weights_only():
            import torch
            try:
                return torch.load(path, map_location="cpu", weights_only=True)
            except pickle.UnpicklingError:
                pass
        if not zipfile.is_zipfile(path):
            raise CheckpointError(f"{path}: a legacy (pre-1.6) or plain pickle that this torch "
                                  "cannot load safely; re-save it with torch.save from torch >= "
                                  "1.6 (zip format) or convert it to safetensors")
        return _load_zip_restricted(path)
    except pickle.UnpicklingError as e:
        raise CheckpointError(f"{path}: {e}")
    except (OSError, RuntimeError, EOFError, ValueError, KeyError) as e:
        raise CheckpointError(f"{path}: cannot read as a PyTorch checkpoint ({e})")


def _is_array(v):
    if isinstance(v, np.ndarray):
        return True
    t = sys.modules.get("torch")
    return t is not None and isinstance(v, t.Tensor)


def _to_numpy(v):
    if isinstance(v, np.ndarray):
        return v
    t = v.detach().cpu()
    if str(t.dtype) in ("torch.float16", "torch.bfloat16"):
        t = t.float()   # both widen to float32 exactly
    return t.numpy()


def _is_state_dict(d):
    return isinstance(d, dict) and d and all(isinstance(k, str) for k in d) and \
        sum(_is_array(v) for v in d.values()) >= max(1, len(d) // 2)


def load_state_dict(path):
    """-> (OrderedDict name -> numpy array, notes [str], metadata dict).
    Safetensors by content, else a PyTorch pickle; the weights are found at the top level or
    under 'model' / 'state_dict' / 'model_state' / 'module' / 'teacher' / 'student'; a common
    'module.' (DataParallel) prefix is removed."""
    notes, meta = [], {}
    with open(path, "rb") as f:
        head = f.read(9)
    is_st = path.endswith(".safetensors") or (len(head) == 9 and head[8:9] == b"{")
    if is_st:
        sd, meta = read_safetensors(path)
    else:
        obj = load_torch(path)
        sd = obj
        for key in ("model", "state_dict", "model_state", "module", "teacher", "student", "net"):
            if _is_state_dict(sd):
                break
            if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
                notes.append(f"weights found under '{key}'")
                sd = sd[key]
        if not _is_state_dict(sd):
            keys = list(obj)[:8] if isinstance(obj, dict) else type(obj).__name__
            raise CheckpointError(f"{path}: no state dict of tensors found (top-level keys: "
                                  f"{keys}); pass a checkpoint that holds the model's weights")
        sd = collections.OrderedDict((k, _to_numpy(v)) for k, v in sd.items() if _is_array(v))
    for prefix in ("module.", "_orig_mod."):
        if sd and all(k.startswith(prefix) for k in sd):
            sd = collections.OrderedDict((k[len(prefix):], v) for k, v in sd.items())
            notes.append(f"removed the '{prefix}' prefix")
    return sd, notes, meta


def fail(msg):
    """prints one line and exits 1 (the tools' user-error convention)"""
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(1)
