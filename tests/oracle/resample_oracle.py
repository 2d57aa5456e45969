"""tests/oracle/resample_oracle.py OUTDIR — torch's F.interpolate on position-embedding grids,
the convention vita's pos_resample must match when loading a checkpoint at another grid:
bicubic (align_corners=False, no antialias) for 2D up- and down-sampling, trilinear for 3D.
Writes resample.safetensors: in.<case> [d0,h0,w0,C] and out.<case> [d1,h1,w1,C] (channel-last)."""
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_io  # noqa: E402

CASES = [  # name, (d0,h0,w0), (d1,h1,w1), C
    ("bicubic_up", (1, 4, 4), (1, 6, 7), 5),
    ("bicubic_down", (1, 37, 37), (1, 32, 32), 3),     # DINOv2 518/14 -> ProViCNet 448/14
    ("bicubic_14to16", (1, 14, 14), (1, 16, 16), 4),   # timm 224/16 -> 256/16
    ("trilinear_up", (2, 4, 4), (4, 8, 8), 3),
    ("trilinear_mixed", (4, 8, 8), (3, 10, 6), 2),
]


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "build/oracle"
    os.makedirs(out, exist_ok=True)
    g = torch.Generator().manual_seed(7)
    tensors = {}
    for name, s0, s1, C in CASES:
        x = torch.randn((*s0, C), generator=g, dtype=torch.float64).float().double()
        if name.startswith("bicubic"):
            y = F.interpolate(x[0].permute(2, 0, 1)[None], size=s1[1:], mode="bicubic",
                              align_corners=False)[0].permute(1, 2, 0)[None]
        else:
            y = F.interpolate(x.permute(3, 0, 1, 2)[None], size=s1, mode="trilinear",
                              align_corners=False)[0].permute(1, 2, 3, 0)
        tensors["in." + name] = x.numpy()
        tensors["out." + name] = y.numpy()
    st_io.save(os.path.join(out, "resample.safetensors"), tensors)
    print(f"oracle resample: {len(CASES)} cases")


if __name__ == "__main__":
    main()
