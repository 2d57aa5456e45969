"""tests/oracle/decoder_oracle.py OUTDIR — PyTorch (float64) references for the dense decoder
ops, the layout conventions vita's conv3d/convT/instnorm/batchnorm/upsample/leaky_relu/
concat_channels/tokens_to_grid/resample_axis must match: nn.Conv3d/Conv2d (padding k//2),
nn.ConvTranspose3d/2d (kernel = stride), nn.InstanceNorm3d/2d(affine=True), nn.BatchNorm3d/1d
(train: one step incl. running stats; eval), F.interpolate nearest/trilinear/bilinear
(align_corners=False), F.leaky_relu, torch.cat, the token -> grid reshape, and grid_sample
(border padding, align_corners=True) for resampling along one axis.

Every case stores its inputs (float32-exact values), a random upstream gradient g, the
outputs and the gradients of L = sum(out * g), as "<case>.<name>" in decoder.safetensors.
The C side (tests/test_ops_decoder_oracle.c) holds the same case table."""
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_io  # noqa: E402

torch.set_default_dtype(torch.float64)
G = torch.Generator().manual_seed(20240611)


def rnd(*shape, scale=1.0):
    """float32-exact values in float64"""
    return (scale * torch.randn(*shape, generator=G, dtype=torch.float64)).float().double()


def grads(out, inputs, g):
    """gradients of sum(out * g) w.r.t. inputs (list of leaf tensors)"""
    return torch.autograd.grad(out, inputs, grad_outputs=g)


T = {}


def put(case, **kw):
    for k, v in kw.items():
        T[f"{case}.{k}"] = v.detach().numpy()


def conv_case(name, B, Ci, Co, dhw, k, bias):
    two_d = len(dhw) == 2
    mod = (nn.Conv2d if two_d else nn.Conv3d)(Ci, Co, k, padding=tuple(x // 2 for x in k), bias=bias)
    with torch.no_grad():
        mod.weight.copy_(rnd(*mod.weight.shape, scale=0.3))
        if bias:
            mod.bias.copy_(rnd(Co))
    x = rnd(B, Ci, *dhw).requires_grad_(True)
    out = mod(x)
    g = rnd(*out.shape)
    params = [x, mod.weight] + ([mod.bias] if bias else [])
    gr = grads(out, params, g)
    put(name, x=x, w=mod.weight, g=g, out=out, dx=gr[0], dw=gr[1])
    if bias:
        put(name, b=mod.bias, db=gr[2])


def convT_case(name, B, Ci, Co, dhw, f):
    two_d = len(dhw) == 2
    mod = (nn.ConvTranspose2d if two_d else nn.ConvTranspose3d)(Ci, Co, f, stride=f)
    with torch.no_grad():
        mod.weight.copy_(rnd(*mod.weight.shape, scale=0.5))
        mod.bias.copy_(rnd(Co))
    x = rnd(B, Ci, *dhw).requires_grad_(True)
    out = mod(x)
    g = rnd(*out.shape)
    gr = grads(out, [x, mod.weight, mod.bias], g)
    put(name, x=x, w=mod.weight, b=mod.bias, g=g, out=out, dx=gr[0], dw=gr[1], db=gr[2])


def instnorm_case(name, B, C, dhw):
    mod = (nn.InstanceNorm2d if len(dhw) == 2 else nn.InstanceNorm3d)(C, affine=True)
    mod.train()
    with torch.no_grad():
        mod.weight.copy_(rnd(C))
        mod.bias.copy_(rnd(C, scale=0.5))
    x = (rnd(B, C, *dhw) + 2.0).requires_grad_(True)
    out = mod(x)
    g = rnd(*out.shape)
    gr = grads(out, [x, mod.weight, mod.bias], g)
    put(name, x=x, w=mod.weight, b=mod.bias, g=g, out=out, dx=gr[0], dw=gr[1], db=gr[2])


def batchnorm_case(name, B, C, dhw, training):
    mod = {0: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}[len(dhw)](C, momentum=0.1)
    with torch.no_grad():
        mod.weight.copy_(rnd(C))
        mod.bias.copy_(rnd(C, scale=0.5))
        mod.running_mean.copy_(rnd(C, scale=0.5))
        mod.running_var.copy_(1.0 + rnd(C, scale=0.3).abs())
    put(name, rm0=mod.running_mean.clone(), rv0=mod.running_var.clone())
    mod.train(training)
    x = (rnd(B, C, *dhw) + 1.0).requires_grad_(True)
    out = mod(x)
    g = rnd(*out.shape)
    gr = grads(out, [x, mod.weight, mod.bias], g)
    put(name, x=x, w=mod.weight, b=mod.bias, g=g, out=out, dx=gr[0], dw=gr[1], db=gr[2],
        rm1=mod.running_mean, rv1=mod.running_var)


def interp_case(name, B, C, dhw, f, mode):
    x = rnd(B, C, *dhw).requires_grad_(True)
    kw = {} if mode == "nearest" else {"align_corners": False}
    out = F.interpolate(x, scale_factor=tuple(float(v) for v in f), mode=mode, **kw)
    g = rnd(*out.shape)
    (dx,) = grads(out, [x], g)
    put(name, x=x, g=g, out=out, dx=dx)


def leaky_case(name, n, slope):
    x = rnd(n).requires_grad_(True)
    out = F.leaky_relu(x, slope)
    g = rnd(n)
    (dx,) = grads(out, [x], g)
    put(name, x=x, g=g, out=out, dx=dx)


def layout_case(name, B, T_, C, t0, grid, Cb):
    S = grid[0] * grid[1] * grid[2]
    tok = rnd(B, T_, C).requires_grad_(True)
    vol = tok[:, t0:t0 + S].transpose(1, 2).reshape(B, C, *grid)   # tokens -> grid
    other = rnd(B, Cb, *grid).requires_grad_(True)
    out = torch.cat([vol, other], dim=1)                             # concat_channels
    g = rnd(*out.shape)
    dtok, dother = grads(out, [tok, other], g)
    put(name, tok=tok, other=other, g=g, out=out, dtok=dtok, dother=dother)


def resample_case(name, B, C, dhw, axis):
    """out[b,c,p] = linear interpolation along `axis` at p_axis + disp, border clamp: the
    align_corners=True grid_sample with the other coordinates on voxel centres"""
    D, H, W = dhw
    x = rnd(B, C, D, H, W).requires_grad_(True)
    disp = rnd(B, D, H, W, scale=1.2).requires_grad_(True)
    zz, yy, xx = torch.meshgrid(torch.arange(D, dtype=torch.float64), torch.arange(H, dtype=torch.float64),
                                torch.arange(W, dtype=torch.float64), indexing="ij")
    pos = [zz.expand(B, D, H, W), yy.expand(B, D, H, W), xx.expand(B, D, H, W)]
    pos[axis] = pos[axis] + disp
    norm = [2 * p / (L - 1) - 1 if L > 1 else p * 0 for p, L in zip(pos, (D, H, W))]
    if D == 1:   # 2D: 4D grid_sample, grid (x, y)
        grid = torch.stack([norm[2][:, 0], norm[1][:, 0]], dim=-1)
        out = F.grid_sample(x[:, :, 0], grid, mode="bilinear", padding_mode="border",
                            align_corners=True)[:, :, None]
    else:
        grid = torch.stack([norm[2], norm[1], norm[0]], dim=-1)
        out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)
    g = rnd(*out.shape)
    dx, ddisp = grads(out, [x, disp], g)
    put(name, x=x, disp=disp, g=g, out=out, dx=dx, ddisp=ddisp)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "build/oracle"
    os.makedirs(out, exist_ok=True)
    # keep in sync with the table in tests/test_ops_decoder_oracle.c
    conv_case("conv3d_333", 2, 3, 4, (5, 6, 7), (3, 3, 3), True)
    conv_case("conv3d_133", 1, 2, 3, (4, 5, 6), (1, 3, 3), True)
    conv_case("conv3d_351", 1, 2, 2, (4, 6, 5), (3, 5, 1), False)
    conv_case("conv2d_33", 2, 3, 5, (9, 8), (3, 3), True)
    convT_case("convT3d_222", 2, 4, 3, (2, 3, 2), (2, 2, 2))
    convT_case("convT3d_244", 1, 3, 2, (2, 2, 3), (2, 4, 4))
    convT_case("convT3d_122", 2, 3, 4, (3, 2, 2), (1, 2, 2))
    convT_case("convT2d_22", 2, 4, 3, (3, 5), (2, 2))
    instnorm_case("inst3d", 2, 3, (4, 5, 6))
    instnorm_case("inst2d", 2, 4, (7, 9))
    batchnorm_case("bn3d_train", 3, 3, (3, 4, 5), True)
    batchnorm_case("bn3d_eval", 2, 3, (3, 4, 5), False)
    batchnorm_case("bn1d_train", 8, 5, (), True)
    interp_case("near3d_222", 2, 3, (3, 4, 5), (2, 2, 2), "nearest")
    interp_case("near3d_123", 1, 2, (2, 3, 4), (1, 2, 3), "nearest")
    interp_case("near2d_22", 2, 3, (5, 4), (2, 2), "nearest")
    interp_case("tri3d_222", 2, 3, (3, 4, 5), (2, 2, 2), "trilinear")
    interp_case("tri3d_124", 1, 2, (2, 3, 4), (1, 2, 4), "trilinear")
    interp_case("tri3d_323", 1, 2, (3, 2, 3), (3, 2, 3), "trilinear")
    interp_case("bil2d_22", 2, 3, (5, 4), (2, 2), "bilinear")
    leaky_case("leaky_001", 1000, 0.01)
    leaky_case("leaky_0", 1000, 0.0)
    layout_case("layout", 2, 30, 5, 3, (2, 3, 4), 3)
    resample_case("rs_axis0", 2, 3, (5, 4, 6), 0)
    resample_case("rs_axis1", 2, 3, (5, 4, 6), 1)
    resample_case("rs_axis2", 2, 3, (5, 4, 6), 2)
    resample_case("rs_2d_axis1", 2, 2, (1, 7, 9), 1)
    st_io.save(os.path.join(out, "decoder.safetensors"), T)
    print(f"oracle decoder: {len(T)} tensors")


if __name__ == "__main__":
    main()
