"""tests/oracle/pretext_oracle.py OUTDIR — the PyTorch oracle for vita's pretraining objectives
(models/pretext.h), float64, plain torch:

  pretext_mae   a tiny 3D MAE (vit-tiny-3d-like encoder: cls, one register, learned pos_embed,
                qkv bias; 2 channels, 8 patches of 2x4x4) with a GIVEN mask (perm, first
                n_keep kept): pos_embed on all patch tokens, keep, encoder, decoder_embed, mask
                tokens, unshuffle (register dropped), fixed sin-cos decoder_pos_embed (width
                14, not a multiple of 6: 2 zero columns), 2 decoder blocks, decoder_norm,
                decoder_pred, norm_pix MSE on the masked patches.
  pretext_con   a tiny 2D contrastive setup (cls, mean pooling) on 2B views with a GIVEN
                positive index (a derangement: the shuffle_pairs case), projection MLP, L2
                normalisation, NT-Xent with temperature 0.2.

For each it writes <name>.weights.safetensors (encoder weights, timm names, "model" metadata =
vita's config JSON), <name>.pretext.safetensors (objective weights, vita's names) and
<name>.io.safetensors: input.img, input.idx (perm or pos as floats), ref.loss, ref.grad.<param>
for every encoder and objective parameter (decoder_pos_embed is frozen: none), and
fp32nmse.<key>: the NMSE of torch's own float32 run against float64 (the C test's thresholds).
Weights are float32 values, so vita and torch start from identical numbers.
"""
import json
import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_io  # noqa: E402
from vit_oracle import ViT, nmse, vita_config  # noqa: E402

F = torch.nn.functional

MAE = dict(name="pretext_mae", spatial_dims=3, img_size=[4, 8, 8], patch=[2, 4, 4], in_chans=2,
           dim=16, depth=2, heads=2, mlp_ratio=4.0, qkv_bias=True, ln_eps=1e-6, cls_token=True,
           num_registers=1, extra_tokens=[], pos_embed="learned", layerscale_init=0.0, batch=2,
           n_keep=2, dec_dim=14, dec_depth=2, dec_heads=2, norm_pix=True)
CON = dict(name="pretext_con", spatial_dims=2, img_size=[12, 12], patch=[4, 4], in_chans=1,
           dim=16, depth=2, heads=2, mlp_ratio=4.0, qkv_bias=True, ln_eps=1e-6, cls_token=True,
           num_registers=0, extra_tokens=[], pos_embed="learned", layerscale_init=0.0, batch=3,
           proj_hidden=20, proj_dim=8, tau=0.2)


def blocks(blks, x, H):
    """pre-norm transformer blocks as vit_oracle.ViT.forward (no LayerScale)"""
    B, T, D = x.shape
    hd = D // H
    for b in blks:
        y = b.qkv(b.norm1(x)).reshape(B, T, 3, H, hd).permute(2, 0, 3, 1, 4)
        a = torch.softmax((y[0] @ y[1].transpose(-2, -1)) * hd ** -0.5, dim=-1)
        x = x + b.proj((a @ y[2]).transpose(1, 2).reshape(B, T, D))
        x = x + b.fc2(F.gelu(b.fc1(b.norm2(x))))
    return x


def patchify(img, c):
    """[B, C, D, H, W] -> [B, P, C*pd*ph*pw], rows in (z, y, x) order, (c, dz, dy, dx) inside"""
    B, C = img.shape[:2]
    (gd, gh, gw), (pd, ph, pw) = [s // p for s, p in zip(c["img_size"], c["patch"])], c["patch"]
    x = img.reshape(B, C, gd, pd, gh, ph, gw, pw).permute(0, 2, 4, 6, 1, 3, 5, 7)
    return x.reshape(B, gd * gh * gw, C * pd * ph * pw)


def sincos(grid, ncls, dim):
    """MAE-style fixed embedding: one even part of the dim per axis (z, y, x), [sin | cos]
    each; columns beyond n * part (dim not a multiple of 2n) stay 0"""
    n = len(grid)
    part = dim // n // 2 * 2
    half = part // 2
    out = np.zeros((ncls + int(np.prod(grid)), dim))
    w = 10000.0 ** (-np.arange(half) / half)
    for idx, coord in enumerate(np.ndindex(*grid)):
        for a in range(n):
            out[ncls + idx, a * part:a * part + half] = np.sin(coord[a] * w)
            out[ncls + idx, a * part + half:(a + 1) * part] = np.cos(coord[a] * w)
    return out


class Objective(torch.nn.Module):
    def __init__(self, c, enc):
        super().__init__()
        self.c = c
        if "dec_dim" in c:
            dd = c["dec_dim"]
            self.embed = torch.nn.Linear(c["dim"], dd)
            self.mask_token = torch.nn.Parameter(torch.zeros(1, 1, dd))
            self.dec = ViT(dict(c, dim=dd, depth=c["dec_depth"], heads=c["dec_heads"],
                                mlp_ratio=4.0, qkv_bias=True, num_registers=0))
            self.kp = c["in_chans"] * int(np.prod(c["patch"]))
            self.pred = torch.nn.Linear(dd, self.kp)
            self.dpos = torch.tensor(sincos([s // p for s, p in zip(c["img_size"], c["patch"])],
                                            enc.ncls, dd))[None]
        else:
            self.fc1 = torch.nn.Linear(c["dim"], c["proj_hidden"])
            self.fc2 = torch.nn.Linear(c["proj_hidden"], c["proj_dim"])

    def named(self):
        if "dec_dim" in self.c:
            out = {"decoder_embed.weight": self.embed.weight, "decoder_embed.bias": self.embed.bias,
                   "mask_token": self.mask_token}
            for n, p in self.dec.named().items():
                if n.startswith("blocks."):
                    out["decoder_" + n] = p
                elif n.startswith("norm."):
                    out["decoder_" + n] = p
            out["decoder_pred.weight"], out["decoder_pred.bias"] = self.pred.weight, self.pred.bias
            return out
        return {"proj.fc1.weight": self.fc1.weight, "proj.fc1.bias": self.fc1.bias,
                "proj.fc2.weight": self.fc2.weight, "proj.fc2.bias": self.fc2.bias}


def mae_loss(enc, obj, img, perm, c):
    B, n, R = img.shape[0], c["n_keep"], c["num_registers"]
    x = enc.patch(img).flatten(2).transpose(1, 2) + enc.pos[:, enc.ncls:]
    keep = perm[:, :n]
    x = torch.gather(x, 1, keep[:, :, None].expand(-1, -1, x.shape[2]))
    toks = [enc.cls.expand(B, -1, -1) + enc.pos[:, :1], enc.reg.expand(B, -1, -1), x]
    lat = enc.norm(blocks(enc.blocks, torch.cat(toks, 1), c["heads"]))
    e = obj.embed(lat)
    P, dd = perm.shape[1], e.shape[2]
    patches = torch.cat([e[:, 1 + R:], obj.mask_token.expand(B, P - n, -1)], 1)
    restore = torch.argsort(perm, dim=1)
    patches = torch.gather(patches, 1, restore[:, :, None].expand(-1, -1, dd))
    d = torch.cat([e[:, :1], patches], 1) + obj.dpos.to(e.dtype)
    d = obj.dec.norm(blocks(obj.dec.blocks, d, c["dec_heads"]))
    pred = obj.pred(d)[:, 1:]
    t = patchify(img, c)
    if c["norm_pix"]:
        t = (t - t.mean(-1, keepdim=True)) / (t.var(-1, keepdim=True) + 1e-6) ** 0.5
    per = ((pred - t) ** 2).mean(-1)
    mask = torch.ones(B, P, dtype=per.dtype)
    mask.scatter_(1, keep, 0.0)
    return (per * mask).sum() / mask.sum()


def con_loss(enc, obj, img, pos, c):
    out, _ = enc(img, torch.zeros(0, img.shape[0], dtype=img.dtype))
    feat = out[:, enc.ncls:].mean(1)
    z = F.normalize(obj.fc2(F.gelu(obj.fc1(feat))), dim=1)
    s = z @ z.T / c["tau"]
    s = s.masked_fill(torch.eye(s.shape[0], dtype=torch.bool), float("-inf"))
    return F.cross_entropy(s, pos)


def run(enc, obj, img, idx, c, dtype):
    enc.to(dtype)
    obj.to(dtype)
    for p in list(enc.parameters()) + list(obj.parameters()):
        p.grad = None
    im = img.to(dtype)
    loss = mae_loss(enc, obj, im, idx, c) if "dec_dim" in c else con_loss(enc, obj, im, idx, c)
    loss.backward()
    res = {"loss": loss.detach().reshape(1)}
    for n, p in list(enc.named().items()) + list(obj.named().items()):
        res["grad." + n] = p.grad.detach().clone()
    return res


def make(c, outdir):
    g = torch.Generator().manual_seed(4321 + len(c["name"]))
    enc = ViT(c)
    obj = Objective(c, enc)
    named = dict(enc.named())
    named.update(obj.named())
    with torch.no_grad():
        for n, p in named.items():
            r = torch.randn(p.shape, generator=g, dtype=torch.float64)
            if n.endswith("norm1.weight") or n.endswith("norm2.weight") or n.endswith("norm.weight"):
                v = 1.0 + 0.3 * r
            elif n.endswith(".bias") or n in ("cls_token", "reg_token", "pos_embed", "mask_token"):
                v = 0.3 * r
            else:
                v = r * (1.5 / math.sqrt(int(np.prod(p.shape[1:]))))
            p.copy_(v.float().double())
    B = c["batch"]
    nimg = B if "dec_dim" in c else 2 * B
    img = torch.randn([nimg, c["in_chans"]] + c["img_size"], generator=g,
                      dtype=torch.float64).float().double()
    if "dec_dim" in c:
        P = enc.P
        idx = torch.stack([torch.randperm(P, generator=g) for _ in range(B)])
    else:
        sigma = [(i + 1) % B for i in range(B)]          # a derangement (shuffle_pairs)
        idx = torch.zeros(2 * B, dtype=torch.long)
        for i in range(B):
            idx[i], idx[B + sigma[i]] = B + sigma[i], i
    ref = run(enc, obj, img, idx, c, torch.float64)
    f32 = run(enc, obj, img, idx, c, torch.float32)
    enc.double()
    obj.double()
    st_io.save(os.path.join(outdir, c["name"] + ".weights.safetensors"),
               {n: p.detach().numpy() for n, p in enc.named().items()},
               {"model": json.dumps(vita_config(c)), "vita_version": "oracle"})
    extra = {"decoder_pos_embed": obj.dpos.numpy()} if "dec_dim" in c else {}
    st_io.save(os.path.join(outdir, c["name"] + ".pretext.safetensors"),
               dict({n: p.detach().numpy() for n, p in obj.named().items()}, **extra))
    io = {"input.img": img.numpy(), "input.idx": idx.double().numpy()}
    for k, v in ref.items():
        io["ref." + k] = v.numpy()
        io["fp32nmse." + k] = np.array([nmse(f32[k].double(), v)])
        if k.endswith("attn.qkv.bias"):   # q / v parts on their own (the k part's gradient is 0)
            D = v.shape[0] // 3
            io["fp32nmse_q." + k] = np.array([nmse(f32[k][:D].double(), v[:D])])
            io["fp32nmse_v." + k] = np.array([nmse(f32[k][2 * D:].double(), v[2 * D:])])
    st_io.save(os.path.join(outdir, c["name"] + ".io.safetensors"), io)
    print(f"oracle {c['name']}: loss={float(ref['loss'][0]):.6f} "
          f"params={sum(p.numel() for p in named.values())}")


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else "build/oracle"
    os.makedirs(outdir, exist_ok=True)
    torch.set_num_threads(int(os.environ.get("VITA_ORACLE_THREADS", "2")))
    for c in (MAE, CON):
        make(c, outdir)


if __name__ == "__main__":
    main()
