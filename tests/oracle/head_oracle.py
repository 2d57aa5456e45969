"""tests/oracle/head_oracle.py OUTDIR — the PyTorch oracle for vita's task heads (models/head.h).

Builds each head in plain torch modules (nn.Linear / BatchNorm1d / Conv3d / ConvTranspose3d /
InstanceNorm3d(affine=True) / LeakyReLU / Upsample / F.interpolate, 2D variants for 2D
encoders) with vita's parameter names, feeds it random encoder features (final tokens
[B, T, dim] and every block output) and a random input image, and runs float64 forward and
backward of the scalar loss L = sum(out * G) (G fixed random). Writes
<name>.head.safetensors with
  w.<param>          the head's weights (float32 values) and BN running statistics
  input.tokens, input.block<l>, input.img, input.G
  ref.out            forward output (training mode)
  ref.grad.<param>   dL/d every trainable head parameter
  ref.grad.tokens    dL/d final tokens; ref.grad.block<l> for each block the head reads
  ref.run.<buffer>   BN running statistics after the forward
  ref.eval_out       (BN heads) the output in eval mode after that forward
  fp32nmse.<key>     NMSE of torch's own float32 run against float64 (the C test's scale)
  fp32max.<key>      for gradients whose true value is 0 (conv bias before a training BN):
                     max |torch fp32 gradient|, the scale of the fp32 cancellation residue
and the head/encoder config as metadata. Architectures: see models/head.h.
"""
import copy
import math
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_io  # noqa: E402

CONFIGS = [
    # classify: cls pooling + BatchNorm1d(affine=False) + MLP (ProFound 768->256->C shape)
    dict(name="head_cls_bn_mlp", task="classify", kind="mlp", sd=3, img=[8, 16, 16], patch=[4, 8, 8],
         in_chans=1, dim=24, depth=2, cls_token=True, registers=0, extra=0, num_classes=3, hidden=16,
         pool="cls", batchnorm=1, batch=4),
    # classify: mean pooling over patch tokens (after cls + registers + extra), linear
    dict(name="head_cls_mean_linear", task="classify", kind="linear", sd=2, img=[1, 28, 21], patch=[1, 7, 7],
         in_chans=3, dim=20, depth=2, cls_token=True, registers=2, extra=1, num_classes=2, pool="mean",
         batchnorm=0, batch=3),
    # segment, UNETR 3D: patch 4x8x8 on an 8x32x32 image -> 2x4x4 grid, 3 stages
    dict(name="head_seg_unetr3d", task="segment", kind="unetr", sd=3, img=[8, 32, 32], patch=[4, 8, 8],
         in_chans=2, dim=16, depth=4, num_classes=3, feature_size=4, batch=2),
    # segment, ProViCNet pup 2D: patch 14 (grid 2x2 -> 16x16 -> bilinear resize to 28x28)
    dict(name="head_seg_pup2d", task="segment", kind="pup", sd=2, img=[1, 28, 28], patch=[1, 14, 14],
         in_chans=3, dim=24, depth=2, cls_token=True, registers=1, num_classes=4, batch=2),
    # segment, pup 3D: per-axis factors (D 2,2,1; H, W 2,2,1 for patch 6) and a trilinear
    # resize 8x8x8 -> 8x12x12
    dict(name="head_seg_pup3d", task="segment", kind="pup", sd=3, img=[8, 12, 12], patch=[4, 6, 6],
         in_chans=1, dim=16, depth=1, num_classes=2, batch=2),
    # superres 3D: odd patch factor (6 = 3 x 2), D axis exhausted early, depth 2 (two skips
    # share block 1), residual on input channel 1
    dict(name="head_superres3d", task="superres", kind="unetr", sd=3, img=[4, 12, 12], patch=[2, 6, 6],
         in_chans=2, dim=16, depth=2, feature_size=4, input_channel=1, batch=2),
    # undistort 3D, displacement field along H applied to channel 0
    dict(name="head_undistort_field3d", task="undistort", kind="unetr", sd=3, img=[8, 8, 8], patch=[4, 4, 4],
         in_chans=1, dim=16, depth=3, feature_size=4, output="field", input_channel=0, pe_axis=1, batch=2),
    # synthesize 2D: UNETR decoder in 2D
    dict(name="head_synth2d", task="synthesize", kind="unetr", sd=2, img=[1, 16, 16], patch=[1, 8, 8],
         in_chans=3, dim=16, depth=4, cls_token=True, feature_size=4, batch=2),
]


def defaults(c):
    d = dict(cls_token=False, registers=0, extra=0, num_classes=1, feature_size=16, hidden=256, pool="mean",
             batchnorm=0, output="image", input_channel=0, pe_axis=1, bn_eps=1e-6 if c["task"] == "classify" else 1e-5,
             bn_momentum=0.1, in_eps=1e-5, slope=0.01)
    d.update(c)
    return d


def conv(sd):
    return nn.Conv3d if sd == 3 else nn.Conv2d


def convT(sd):
    return nn.ConvTranspose3d if sd == 3 else nn.ConvTranspose2d


def inorm(sd):
    return nn.InstanceNorm3d if sd == 3 else nn.InstanceNorm2d


def bnorm(sd):
    return nn.BatchNorm3d if sd == 3 else nn.BatchNorm2d


def sp(c, v):
    """a per-axis (D, H, W) triple as the conv argument for the encoder's dimensionality"""
    return tuple(v) if c["sd"] == 3 else tuple(v[1:])


def block_out(c, k):
    return (k * c["depth"] + 3) // 4


class Unit(nn.Sequential):
    def __init__(self, c, ci, co):
        k = 3
        super().__init__(conv(c["sd"])(ci, co, k, padding=1, bias=False),
                         inorm(c["sd"])(co, affine=True, eps=c["in_eps"]),
                         nn.LeakyReLU(c["slope"]))


class Block(nn.Sequential):
    def __init__(self, c, ci, co):
        super().__init__(Unit(c, ci, co), Unit(c, co, co))

    def named_vita(self, prefix, out):
        for i, u in enumerate(self):
            out[f"{prefix}.conv{i + 1}.weight"] = u[0].weight
            out[f"{prefix}.norm{i + 1}.weight"] = u[1].weight
            out[f"{prefix}.norm{i + 1}.bias"] = u[1].bias


def stages(c):
    """per-level factors: fac[l] is the stage level l+1 -> l (see models/head.h)"""
    lists = []
    for p in c["patch"]:
        r, k = p, 0
        while r % 2 == 0:
            r //= 2
            k += 1
        lists.append(([r] if r > 1 else []) + [2] * k)
    n = max(len(x) for x in lists)
    fac = [None] * n
    for j in range(n):
        fac[n - 1 - j] = [x[j] if j < len(x) else 1 for x in lists]
    return n, fac


class Decoder(nn.Module):
    """UNETR-style decoder (MONAI UNETR generalised; models/head.h)"""

    def __init__(self, c, K):
        super().__init__()
        self.c = c
        n, fac = stages(c)
        self.n, self.fac = n, fac
        f, dim, sd = c["feature_size"], c["dim"], c["sd"]
        ch = [f << l for l in range(n)] + [dim]
        self.ch = ch
        self.skips = []
        self.skip_ups = nn.ModuleList()
        self.skip_blocks = nn.ModuleList()
        nat = [0] * n
        for k in range(1, 4):
            lvl = max(n - 4 + k, 0)
            m = n - lvl
            nat[lvl] += 1
            self.skips.append((k, block_out(c, k), lvl, m))
            ups, blks = nn.ModuleList(), nn.ModuleList()
            for j in range(m):
                L = n - 1 - j
                ci = dim if j == 0 else ch[lvl]
                ups.append(convT(sd)(ci, ch[lvl], sp(c, fac[L]), stride=sp(c, fac[L]), bias=False))
                blks.append(Block(c, ch[lvl], ch[lvl]) if j else nn.Identity())
            self.skip_ups.append(ups)
            self.skip_blocks.append(blks)
        self.ups = nn.ModuleList([convT(sd)(ch[l + 1], ch[l], sp(c, fac[l]), stride=sp(c, fac[l]), bias=False)
                                  for l in range(n)])
        self.cin = [ch[l] * (1 + nat[l]) + (c["in_chans"] if l == 0 else 0) for l in range(n)]
        self.blocks = nn.ModuleList([Block(c, self.cin[l], ch[l]) for l in range(n)])
        self.out = conv(sd)(ch[0], K, 1)

    def named_vita(self):
        o = {}
        for (k, _, _, m), ups, blks in zip(self.skips, self.skip_ups, self.skip_blocks):
            for j in range(m):
                o[f"head.dec.skip{k}.up{j}.weight"] = ups[j].weight
                if j:
                    blks[j].named_vita(f"head.dec.skip{k}.block{j}", o)
        for l in range(self.n - 1, -1, -1):
            o[f"head.dec.up{l}.weight"] = self.ups[l].weight
            self.blocks[l].named_vita(f"head.dec.block{l}", o)
        o["head.dec.out.weight"] = self.out.weight
        o["head.dec.out.bias"] = self.out.bias
        return o

    def blocks_used(self):
        return sorted(set(b for _, b, _, _ in self.skips))

    def forward(self, tokens, blocks, img, grid):
        def to_grid(t):
            B, T, D = t.shape
            P = int(np.prod(grid))
            g = t[:, T - P:, :].transpose(1, 2).reshape(B, D, *grid)
            return g if self.c["sd"] == 3 else g[:, :, 0]
        skip_res = []
        for (k, b, lvl, m), ups, blks in zip(self.skips, self.skip_ups, self.skip_blocks):
            s = to_grid(blocks[b - 1])
            for j in range(m):
                s = ups[j](s)
                if j:
                    s = blks[j](s)
            skip_res.append((lvl, s))
        x = to_grid(tokens)
        for l in range(self.n - 1, -1, -1):
            parts = [self.ups[l](x)] + [s for lv, s in skip_res if lv == l]
            if l == 0:
                parts.append(img if self.c["sd"] == 3 else img[:, :, 0])
            x = self.blocks[l](torch.cat(parts, 1))
        y = self.out(x)
        return y if self.c["sd"] == 3 else y.unsqueeze(2)


class Classify(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        D, C = c["dim"], c["num_classes"]
        self.bn = nn.BatchNorm1d(D, affine=False, eps=c["bn_eps"], momentum=c["bn_momentum"]) if c["batchnorm"] else None
        if c["kind"] == "mlp":
            self.fc1, self.fc2 = nn.Linear(D, c["hidden"]), nn.Linear(c["hidden"], C)
        else:
            self.fc = nn.Linear(D, C)

    def named_vita(self):
        if self.c["kind"] == "mlp":
            return {"head.fc1.weight": self.fc1.weight, "head.fc1.bias": self.fc1.bias,
                    "head.fc2.weight": self.fc2.weight, "head.fc2.bias": self.fc2.bias}
        return {"head.fc.weight": self.fc.weight, "head.fc.bias": self.fc.bias}

    def buffers_vita(self):
        return {"head.bn.running_mean": self.bn.running_mean, "head.bn.running_var": self.bn.running_var} if self.bn else {}

    def blocks_used(self):
        return []

    def forward(self, tokens, blocks, img, grid):
        P = int(np.prod(grid))
        x = tokens[:, 0] if self.c["pool"] == "cls" else tokens[:, tokens.shape[1] - P:].mean(1)
        if self.bn is not None:
            x = self.bn(x)
        if self.c["kind"] == "mlp":
            return self.fc2(torch.relu(self.fc1(x)))
        return self.fc(x)


class Pup(nn.Module):
    """ProViCNet conv_head8 (nearest upsample x2 -> conv3x3 -> BN -> ReLU, x2; upsample ->
    conv to classes), then F.interpolate to the image size"""

    def __init__(self, c):
        super().__init__()
        self.c = c
        sd, K = c["sd"], c["num_classes"]
        self.fac = [[2 if (2 << j) <= p else 1 for p in c["patch"]] for j in range(3)]
        bn = lambda n: bnorm(sd)(n, eps=c["bn_eps"], momentum=c["bn_momentum"])  # noqa: E731
        up = lambda j: nn.Upsample(scale_factor=sp(c, self.fac[j]))  # noqa: E731
        self.segmentation_conv = nn.Sequential(
            up(0), conv(sd)(c["dim"], 128, 3, padding=1), bn(128), nn.ReLU(),
            up(1), conv(sd)(128, 64, 3, padding=1), bn(64), nn.ReLU(),
            up(2), conv(sd)(64, K, 3, padding=1))

    def named_vita(self):
        o = {}
        for n, p in self.segmentation_conv.named_parameters():
            o["head.segmentation_conv." + n] = p
        return o

    def buffers_vita(self):
        o = {}
        for n, b in self.segmentation_conv.named_buffers():
            if "running" in n:
                o["head.segmentation_conv." + n] = b
        return o

    def blocks_used(self):
        return []

    def forward(self, tokens, blocks, img, grid):
        B, T, D = tokens.shape
        P = int(np.prod(grid))
        g = tokens[:, T - P:].transpose(1, 2).reshape(B, D, *grid)
        if self.c["sd"] == 2:
            g = g[:, :, 0]
        y = self.segmentation_conv(g)
        size = sp(self.c, self.c["img"])
        if tuple(y.shape[2:]) != size:
            y = F.interpolate(y, size=size, mode="trilinear" if self.c["sd"] == 3 else "bilinear", align_corners=False)
        return y if self.c["sd"] == 3 else y.unsqueeze(2)


def resample_axis(x, disp, axis):
    """out[b,0,p] = linear interpolation of x[b,0,.] along axis at p_axis + disp[b,p], clamped"""
    n = x.shape[2 + axis]
    shape = [1, 1, 1]
    shape[axis] = n
    pos = torch.arange(n, dtype=x.dtype).reshape(shape)
    q = (pos + disp[:, 0]).clamp(0, n - 1)
    i0 = q.floor().clamp(max=n - 2).long() if n > 1 else torch.zeros_like(q).long()
    lam = q - i0.to(q.dtype)
    xs = x[:, 0]
    a = torch.gather(xs, 1 + axis, i0)
    b = torch.gather(xs, 1 + axis, (i0 + 1).clamp(max=n - 1))
    return ((1 - lam) * a + lam * b).unsqueeze(1)


class Head(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        if c["task"] == "classify":
            self.h = Classify(c)
        elif c["kind"] == "pup":
            self.h = Pup(c)
        else:
            self.h = Decoder(c, c["num_classes"] if c["task"] == "segment" else 1)

    def named_vita(self):
        return self.h.named_vita()

    def buffers_vita(self):
        return self.h.buffers_vita() if hasattr(self.h, "buffers_vita") else {}

    def forward(self, tokens, blocks, img):
        c = self.c
        grid = [s // p for s, p in zip(c["img"], c["patch"])]
        y = self.h(tokens, blocks, img, grid)
        if c["task"] == "superres":
            y = img[:, c["input_channel"]:c["input_channel"] + 1] + y
        elif c["task"] == "undistort" and c["output"] == "field":
            y = resample_axis(img[:, c["input_channel"]:c["input_channel"] + 1], y, c["pe_axis"])
        return y


def nmse(a, b):
    return float(((a - b) ** 2).sum() / max(float((b ** 2).sum()), 1e-30))


def run(model, c, inputs, dtype):
    model = copy.deepcopy(model).to(dtype)
    model.train()
    tokens = inputs["tokens"].to(dtype).clone().requires_grad_(True)
    blocks = [b.to(dtype).clone().requires_grad_(True) for b in inputs["blocks"]]
    img = inputs["img"].to(dtype)
    out = model(tokens, blocks, img)
    loss = (out * inputs["G"].to(dtype)).sum()
    loss.backward()
    res = {"out": out.detach()}
    for n, p in model.named_vita().items():
        res["grad." + n] = p.grad.detach().clone()
    res["grad.tokens"] = tokens.grad.detach()
    for l in model.h.blocks_used():
        res[f"grad.block{l}"] = blocks[l - 1].grad.detach()
    for n, b in model.buffers_vita().items():
        res["run." + n] = b.detach().clone()
    if model.buffers_vita():
        model.eval()
        with torch.no_grad():
            res["eval_out"] = model(tokens, blocks, img).detach()
    return res


def make(c, outdir):
    c = defaults(c)
    g = torch.Generator().manual_seed(4242 + len(c["name"]))
    model = Head(c).double()
    with torch.no_grad():
        for n, p in model.named_vita().items():
            r = torch.randn(p.shape, generator=g, dtype=torch.float64)
            if ".norm" in n or n.endswith((".2.weight", ".6.weight")):
                v = (1.0 + 0.3 * r) if n.endswith("weight") else 0.3 * r
            elif n.endswith(".bias"):
                v = 0.3 * r
            else:
                if n.split(".")[-2].startswith("up"):
                    fan_in = p.shape[0]                      # transposed conv: Ci
                else:
                    fan_in = int(np.prod(p.shape[1:]))
                v = r * (1.5 / math.sqrt(fan_in))
            p.copy_(v.float().double())
        for n, b in model.buffers_vita().items():
            r = torch.randn(b.shape, generator=g, dtype=torch.float64)
            b.copy_((0.3 * r if n.endswith("mean") else 1.0 + 0.3 * r.abs()).float().double())
    B, dim = c["batch"], c["dim"]
    grid = [s // p for s, p in zip(c["img"], c["patch"])]
    P = int(np.prod(grid))
    T = (1 if c["cls_token"] else 0) + c["registers"] + c["extra"] + P
    rnd = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64).float().double()  # noqa: E731
    inputs = {"tokens": rnd(B, T, dim), "blocks": [rnd(B, T, dim) * 2 for _ in range(c["depth"])],
              "img": rnd(B, c["in_chans"], *c["img"])}
    # output shape from one dry run
    probe = run(model, c, dict(inputs, G=torch.zeros(1)), torch.float64)["out"]
    inputs["G"] = rnd(*probe.shape)
    ref = run(model, c, inputs, torch.float64)
    f32 = run(model, c, inputs, torch.float32)
    io = {}
    for n, p in model.named_vita().items():
        io["w." + n] = p.detach().numpy()
    for n, b in model.buffers_vita().items():
        io["w." + n] = b.detach().numpy()
    io["input.tokens"] = inputs["tokens"].numpy()
    for l, b in enumerate(inputs["blocks"]):
        io[f"input.block{l + 1}"] = b.numpy()
    io["input.img"] = inputs["img"].numpy()
    io["input.G"] = inputs["G"].numpy()
    gmax = max(float(v.abs().max()) for k, v in ref.items() if k.startswith("grad."))
    for k, v in ref.items():
        io["ref." + k] = v.numpy()
        io["fp32nmse." + k] = np.array([nmse(f32[k].double(), v)])
        if k.startswith("grad.") and float(v.abs().max()) < 1e-12 * gmax:
            # true gradient 0 (a conv bias right before a training-mode BatchNorm: the
            # batch mean removes it); checked by size against torch's own fp32 residue
            io["fp32max." + k] = np.array([float(f32[k].double().abs().max())])
    meta = {k: (" ".join(str(x) for x in v) if isinstance(v, list) else str(int(v)) if isinstance(v, bool) else str(v))
            for k, v in c.items()}
    st_io.save(os.path.join(outdir, c["name"] + ".head.safetensors"), io, meta)
    print(f"oracle {c['name']}: out {list(probe.shape)} params "
          f"{sum(p.numel() for p in model.named_vita().values())} loss {float((ref['out'] * inputs['G']).sum()):.6f}")


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else "build/oracle"
    os.makedirs(outdir, exist_ok=True)
    torch.set_num_threads(int(os.environ.get("VITA_ORACLE_THREADS", "2")))
    for c in CONFIGS:
        make(c, outdir)


if __name__ == "__main__":
    main()
