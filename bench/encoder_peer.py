#!/usr/bin/python3
"""PyTorch reference peer for vita's ViT-encoder training-step benchmark.

What it measures
----------------
Throughput and memory of one full training step of a ViT encoder on the CPU,
with PyTorch (Debian's torch, plain nn modules, no timm), so the numbers can
be set beside vita's own.  A "step" is:

  1. forward of a fixed, seeded random input batch through the encoder
     (patch embed -> cls token + learned pos_embed -> depth pre-norm blocks
     -> final LayerNorm);
  2. scalar loss = mean over the batch of (final-normed patch tokens, mean
     pooled over the patch tokens, cls excluded) . w, with w a fixed seeded
     random vector of length dim, so backward reaches every parameter;
  3. loss.backward();
  4. torch.optim.AdamW(lr=1e-4, weight_decay=0.05).step();
  5. optimizer.zero_grad(set_to_none=False) (gradient buffers stay allocated).

The model follows timm's VisionTransformer semantics: Conv2d/Conv3d patch
embed with kernel == stride; blocks x = x + attn(norm1(x)); x = x + mlp(norm2(x));
attention qkv = Linear(dim, 3*dim) reshaped (B,T,3,H,hd).permute(2,0,3,1,4),
attn = softmax((q @ k^T) * hd**-0.5) @ v, transpose + reshape, proj Linear;
MLP fc1 -> nn.GELU() (exact erf) -> fc2; LayerNorm eps 1e-6; no dropout, no
drop-path.  Init (torch.manual_seed(0)): trunc_normal(std=0.02) for linear and
patch-embed weights, cls token and pos_embed; zeros for biases; LN ones/zeros.

How
---
* Threads: OMP_NUM_THREADS / MKL_NUM_THREADS are set from --threads before
  torch is imported, then torch.set_num_threads(N), interop threads 1.
* Timing: W warmup steps, then S steps timed as one block with
  time.perf_counter.  Reports s/step and samples/s = B*S/total.
* FLOPs: analytic, matmul-only.  Forward FLOPs (2*M*N*K per matmul) of the
  patch embed, qkv, attention q@k^T and attn@v, proj, fc1, fc2, times 3 for
  forward + backward.  (LayerNorm, softmax, GELU, AdamW are not counted.  The
  patch embed is counted x3 like the rest although its input needs no grad.)
  GFLOP/s = GFLOP/step / (s/step).
* Memory, as bytes of tensors held:
    params      - sum of parameter nbytes;
    grads       - sum of .grad nbytes (after the timed steps);
    optimizer   - AdamW state: exp_avg, exp_avg_sq and the per-param step
                  tensor;
    activations - tensors saved for backward during one extra forward (input
                  + loss), captured with torch.autograd.graph.saved_tensors_hooks;
                  unique storages' nbytes, deduplicated by storage data_ptr
                  (a tensor, or views of one storage, saved twice count once);
                  storages belonging to parameters (e.g. weight.t() saved by
                  addmm) are excluded since params already count them.  The
                  input batch saved by the patch-embed conv is included.
    total       - sum of the above;
  plus the peak process RSS, resource.getrusage(RUSAGE_SELF).ru_maxrss*1024.

Output: human-readable lines; with --json, one JSON object on the last line.
"""

import argparse
import json
import os
import resource
import sys
import time

PRESETS = {
    "vit-s16": dict(img=(224, 224), in_chans=3, patch=(16, 16), dim=384,
                    depth=12, heads=6, mlp_ratio=4),
    "vit-tiny-3d": dict(img=(32, 64, 64), in_chans=3, patch=(8, 16, 16),
                        dim=128, depth=4, heads=4, mlp_ratio=4),
}


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), default="vit-tiny-3d")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    return ap.parse_args()


ARGS = parse_args()
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = str(ARGS.threads)

import torch  # noqa: E402  (after the thread env vars are set)
import torch.nn as nn  # noqa: E402


class PatchEmbed(nn.Module):
    def __init__(self, in_chans, patch, dim):
        super().__init__()
        conv = nn.Conv2d if len(patch) == 2 else nn.Conv3d
        self.proj = conv(in_chans, dim, kernel_size=patch, stride=patch)

    def forward(self, x):
        x = self.proj(x)                      # (B, dim, *grid)
        return x.flatten(2).transpose(1, 2)   # (B, N, dim)


class Attention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.hd = dim // heads
        self.scale = self.hd ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, T, C = x.shape
        qkv = self.qkv(x).reshape(B, T, 3, self.heads, self.hd).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        attn = (q @ k.transpose(-2, -1)) * self.scale
        attn = attn.softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(B, T, C)
        return self.proj(x)


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim, heads, mlp_ratio):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        x = x + self.mlp(self.norm2(x))
        return x


class ViT(nn.Module):
    def __init__(self, img, in_chans, patch, dim, depth, heads, mlp_ratio):
        super().__init__()
        self.patch_embed = PatchEmbed(in_chans, patch, dim)
        n = 1
        for i, p in zip(img, patch):
            assert i % p == 0
            n *= i // p
        self.num_patches = n
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, n + 1, dim))
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self._init()

    def _init(self):
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d, nn.Conv3d)):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = self.patch_embed(x)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
        x = x + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)


def gflop_per_step(cfg, B):
    """Analytic matmul FLOPs (2*M*N*K) of one forward, x3 for fwd+bwd."""
    d, depth, r = cfg["dim"], cfg["depth"], cfg["mlp_ratio"]
    n = 1
    pv = cfg["in_chans"]
    for i, p in zip(cfg["img"], cfg["patch"]):
        n *= i // p
        pv *= p
    T = n + 1
    h = int(d * r)
    embed = 2 * B * n * pv * d
    per_block = (2 * B * T * d * 3 * d      # qkv
                 + 2 * B * T * T * d        # q @ k^T (all heads)
                 + 2 * B * T * T * d        # attn @ v
                 + 2 * B * T * d * d        # proj
                 + 2 * B * T * d * h        # fc1
                 + 2 * B * T * h * d)       # fc2
    fwd = embed + depth * per_block
    return 3 * fwd / 1e9


def _storage(t):
    if hasattr(t, "untyped_storage"):
        return t.untyped_storage()
    return t.storage()


def _storage_key_bytes(t):
    s = _storage(t)
    nbytes = s.nbytes() if hasattr(s, "nbytes") else s.size() * t.element_size()
    return s.data_ptr(), nbytes


def main():
    a = ARGS
    cfg = PRESETS[a.preset]
    torch.set_num_threads(a.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass

    torch.manual_seed(0)
    model = ViT(**cfg)
    model.train()
    params = list(model.parameters())
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.05)

    g = torch.Generator().manual_seed(1)
    x = torch.randn(a.batch, cfg["in_chans"], *cfg["img"], generator=g)
    w = torch.randn(cfg["dim"], generator=g)

    def loss_fn(inp):
        y = model(inp)                                # (B, T, dim), final-normed
        return (y[:, 1:, :].mean(dim=1) @ w).mean()   # scalar

    def step():
        loss = loss_fn(x)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=False)
        return loss

    # --- saved activations of one forward ---------------------------------
    param_ptrs = {_storage(p).data_ptr() for p in params}
    saved = {}

    def pack(t):
        ptr, nb = _storage_key_bytes(t)
        if ptr not in param_ptrs and ptr != 0:
            saved[ptr] = max(nb, saved.get(ptr, 0))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = loss_fn(x)
    act_bytes = sum(saved.values())
    del loss, saved

    # --- timing -------------------------------------------------------------
    for _ in range(a.warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        last = step()
    total = time.perf_counter() - t0
    last_loss = float(last.detach())

    s_per_step = total / a.steps
    samples_per_s = a.batch * a.steps / total
    gf = gflop_per_step(cfg, a.batch)
    gflops = gf / s_per_step

    # --- memory ---------------------------------------------------------------
    p_bytes = sum(p.numel() * p.element_size() for p in params)
    g_bytes = sum(p.grad.numel() * p.grad.element_size()
                  for p in params if p.grad is not None)
    o_bytes = 0
    for st in opt.state.values():
        for v in st.values():
            if torch.is_tensor(v):
                o_bytes += v.numel() * v.element_size()
    total_bytes = p_bytes + g_bytes + o_bytes + act_bytes
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    n_params = sum(p.numel() for p in params)
    mib = 1024.0 * 1024.0
    print(f"impl        pytorch {torch.__version__} (threads {a.threads})")
    print(f"preset      {a.preset}  img {cfg['img']} patch {cfg['patch']} dim {cfg['dim']} "
          f"depth {cfg['depth']} heads {cfg['heads']}  tokens {model.num_patches + 1}  "
          f"params {n_params:,}")
    print(f"batch       {a.batch}  steps {a.steps} (+{a.warmup} warmup)  last loss {last_loss:.6g}")
    print(f"time        {s_per_step:.4f} s/step   {samples_per_s:.2f} samples/s")
    print(f"compute     {gf:.3f} GFLOP/step   {gflops:.2f} GFLOP/s")
    print(f"memory      params {p_bytes / mib:.2f} MiB  grads {g_bytes / mib:.2f} MiB  "
          f"adamw {o_bytes / mib:.2f} MiB  activations {act_bytes / mib:.2f} MiB  "
          f"total {total_bytes / mib:.2f} MiB")
    print(f"peak rss    {peak_rss / mib:.1f} MiB")
    if a.json:
        print(json.dumps({
            "impl": "pytorch",
            "preset": a.preset,
            "batch": a.batch,
            "threads": a.threads,
            "steps": a.steps,
            "s_per_step": s_per_step,
            "samples_per_s": samples_per_s,
            "gflop_per_step": gf,
            "gflops": gflops,
            "bytes": {
                "params": p_bytes,
                "grads": g_bytes,
                "optimizer": o_bytes,
                "activations": act_bytes,
                "total": total_bytes,
            },
            "peak_rss": peak_rss,
            "torch": torch.__version__,
        }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
