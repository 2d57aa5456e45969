#!/usr/bin/env python3
"""tests/oracle/learn_peer.py --spec SPEC.json [--seed S] [--out RESULT.json] [--bench N]

The PyTorch peer of `vita train` for the learning tests (tests/slow_learning_tasks.c): the
same encoder (vit_oracle.ViT, timm semantics) and head (head_oracle.Head, vita's heads), the
same loss, AdamW, warmup + cosine schedule, clipping, steps and batches, trained in float32 on
the CPU from a vita dataset read with h5py, then scored with the task's main metric on the
val split (whole volumes: on default phantoms the volume is the model's input, one window).

SPEC.json (written by the harness from the same numbers as the vita config):
  data, task (classify|segment|superres|undistort|synthesize), model {vit_oracle keys},
  head {kind, num_classes, feature_size, hidden, pool, batchnorm, output, input_channel,
  pe_axis}, identity_channel (the input channel scored as the identity prediction),
  loss (ce|dice_ce|l1|mse), w_ce, w_dice, epochs, batch, lr, min_lr,
  warmup_epochs, weight_decay, layer_decay, clip_grad, threads,
  init   (optional) safetensors with the initial weights (timm + head.* names; the harness
         writes vita's own seeded init there, so both start from the same numbers);
         absent: the same distributions as vita's init, drawn from torch's generator
  order  (optional) text file, one line per step with the dataset indices of that batch
         (the harness records vita's loader); absent: a seeded shuffle per epoch
         (class-balanced for classify, as vita's loader), the last batch completed from
         the start of the epoch.
Image tasks read the stored images as inputs and /targets/<task> as targets (the harness
writes explicit datasets, so no degradation is drawn here).

Prints one line "PEER_JSON {...}" with val_metric per epoch (epoch 0 = before training),
final, best, train_loss per epoch, step_loss (every step, before its update), the trivial predictor's metric on the same val cases
(classify: a constant score, AUROC 0.5; segment: all background, Dice 0; image tasks: the
mean training target everywhere) and, for superres/undistort, the identity (input channel as
the prediction), steps and wall time.
"""
import argparse
import json
import math
import os
import sys
import time

import h5py
import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import head_oracle  # noqa: E402
import st_io  # noqa: E402
import vit_oracle  # noqa: E402

SPLIT_TRAIN, SPLIT_VAL = 0, 1


# ---- data ----------------------------------------------------------------------------------
def load_data(spec):
    task = spec["task"]
    with h5py.File(spec["data"], "r") as f:
        split = f["split"][()].astype(np.int64)
        d = {"split": split, "images": f["images"][()].astype(np.float32)}
        if task == "classify":
            d["cls"] = f["cls"][()].astype(np.int64)
        elif task == "segment":
            d["seg"] = f["seg"][()].astype(np.int64)
        else:
            d["target"] = f["targets/" + task][()].astype(np.float32)   # [N, 1, D, H, W]
    train = np.nonzero(split == SPLIT_TRAIN)[0]
    if task == "classify":
        train = train[d["cls"][train] >= 0]
    d["train"], d["val"] = train, np.nonzero(split == SPLIT_VAL)[0]
    return d


def epoch_order(d, task, batch, epoch, gen):
    """a seeded stand-in for vita's loader order (used only without an order file)"""
    items = d["train"]
    n = len(items)
    nb = (n + batch - 1) // batch
    total = nb * batch
    if task == "classify":
        cls = d["cls"][items]
        classes = [c for c in np.unique(cls)]
        slots = np.array([classes[t % len(classes)] for t in range(total)])
        slots = slots[torch.randperm(total, generator=gen).numpy()]
        pools = {c: list(items[cls == c][torch.randperm(int((cls == c).sum()), generator=gen).numpy()])
                 for c in classes}
        pos = {c: 0 for c in classes}
        out = []
        for c in slots:
            if pos[c] == len(pools[c]):
                pools[c] = list(np.array(pools[c])[torch.randperm(len(pools[c]), generator=gen).numpy()])
                pos[c] = 0
            out.append(pools[c][pos[c]])
            pos[c] += 1
        order = np.array(out)
    else:
        perm = items[torch.randperm(n, generator=gen).numpy()]
        order = np.concatenate([perm, perm[: total - n]])
    return [order[i * batch:(i + 1) * batch] for i in range(nb)]


# ---- model ---------------------------------------------------------------------------------
class Net(torch.nn.Module):
    def __init__(self, spec):
        super().__init__()
        mc = dict(spec["model"])
        self.enc = vit_oracle.ViT(mc)
        h = dict(spec["head"])
        hc = dict(task=spec["task"], sd=mc["spatial_dims"], img=mc["img_size"], patch=mc["patch"],
                  in_chans=mc["in_chans"], dim=mc["dim"], depth=mc["depth"], cls_token=mc["cls_token"],
                  registers=mc["num_registers"], extra=len(mc["extra_tokens"]))
        hc.update(h)
        self.hc = head_oracle.defaults(hc)
        self.head = head_oracle.Head(self.hc)

    def forward(self, img):
        tokens, blocks = self.enc(img, torch.zeros(0, img.shape[0]))
        return self.head(tokens, blocks, img)

    def named_all(self):
        o = dict(self.enc.named())
        o.update(self.head.named_vita())
        return o


def init_like_vita(net, spec, gen):
    """vita's init distributions (models/vit.c vit_init_weights, models/head.h)"""
    task, hc = spec["task"], net.hc
    with torch.no_grad():
        for n, p in net.enc.named().items():
            if n.endswith(".bias"):
                p.zero_()
            elif "norm" in n:
                p.fill_(1.0)
            elif n.endswith(".gamma"):
                p.fill_(spec["model"]["layerscale_init"])
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.02)   # trunc at +-2 absolute: never hit
        for n, p in net.head.named_vita().items():
            leaf = n.split(".")[-2]
            if n.endswith(".bias"):
                p.zero_()
            elif ".norm" in n:
                p.fill_(1.0)
            elif n.startswith("head.fc"):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.02)
            elif n == "head.dec.out.weight":
                zero = task == "superres" or (task == "undistort" and hc["output"] == "field")
                fan = int(np.prod(p.shape[1:]))
                p.copy_(torch.zeros_like(p) if zero else torch.randn(p.shape, generator=gen) * math.sqrt(1.0 / fan))
            else:
                fan = p.shape[0] if leaf.startswith("up") else int(np.prod(p.shape[1:]))
                p.copy_(torch.randn(p.shape, generator=gen) * math.sqrt(2.0 / fan))


def load_init(net, path):
    w, _ = st_io.load(path)
    named = net.named_all()
    missing = [n for n in named if n not in w]
    if missing:
        raise SystemExit(f"learn_peer: {path} lacks {missing[:5]}")
    with torch.no_grad():
        for n, p in named.items():
            if tuple(w[n].shape) != tuple(p.shape):
                raise SystemExit(f"learn_peer: {path}: {n} has shape {w[n].shape}, the peer {tuple(p.shape)}")
            p.copy_(torch.from_numpy(np.array(w[n])))


def param_groups(net, spec):
    """AdamW ranges as vita: no decay for 1-D tensors, pos_embed and tokens; timm layer ids
    (patch_embed/tokens/pos 0, blocks.i i+1, final norm and head depth+1) for layer decay"""
    depth, ld, wd = spec["model"]["depth"], spec["layer_decay"], spec["weight_decay"]
    groups = {}
    for n, p in net.named_all().items():
        if n.startswith("blocks."):
            lid = int(n.split(".")[1]) + 1
        elif n.startswith(("patch_embed", "cls_token", "reg_token", "pos_embed", "extra_tokens")):
            lid = 0
        else:
            lid = depth + 1
        scale = ld ** (depth + 1 - lid) if (ld > 0 and ld != 1) else 1.0
        nodecay = p.ndim <= 1 or n in ("pos_embed", "cls_token", "reg_token")
        key = (scale, 0.0 if nodecay else wd)
        groups.setdefault(key, []).append(p)
    return [{"params": ps, "lr_scale": k[0], "weight_decay": k[1]} for k, ps in groups.items()]


def lr_at(spec, e):
    """MAE's per-iteration schedule: linear warmup over warmup_epochs, then half-cosine to min_lr"""
    lr, mn, wu, E = spec["lr"], spec["min_lr"], spec["warmup_epochs"], spec["epochs"]
    if e < wu:
        return lr * e / wu
    return mn + (lr - mn) * 0.5 * (1.0 + math.cos(math.pi * (e - wu) / max(E - wu, 1e-12)))


# ---- loss and metrics ------------------------------------------------------------------------
def loss_fn(spec, out, d, idx):
    task = spec["task"]
    if task == "classify":
        return F.cross_entropy(out, torch.from_numpy(d["cls"][idx]))
    if task == "segment":
        lab = torch.from_numpy(d["seg"][idx])
        K = out.shape[1]
        B = out.shape[0]
        ce = F.cross_entropy(out, lab)
        prob = torch.softmax(out, 1).reshape(B, K, -1)
        g = F.one_hot(lab.reshape(B, -1), K).permute(0, 2, 1).to(prob.dtype)
        k0 = 1
        inter = (prob * g).sum(2)[:, k0:]
        den = prob.sum(2)[:, k0:] + g.sum(2)[:, k0:]
        dice = (1.0 - (2.0 * inter + 1e-5) / (den + 1e-5)).mean()
        return spec.get("w_ce", 1.0) * ce + spec.get("w_dice", 1.0) * dice
    t = torch.from_numpy(d["target"][idx])
    return F.l1_loss(out, t) if spec["loss"] == "l1" else F.mse_loss(out, t)


def auroc(score, label):
    score, label = np.asarray(score, np.float64), np.asarray(label) != 0
    npos, nneg = int(label.sum()), int((~label).sum())
    if npos == 0 or nneg == 0:
        return float("nan")
    order = np.argsort(score, kind="mergesort")
    s = score[order]
    ranks = np.empty(len(s))
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and s[j + 1] == s[i]:
            j += 1
        ranks[i:j + 1] = 0.5 * (i + j) + 1.0
        i = j + 1
    r = np.empty(len(s))
    r[order] = ranks
    return float((r[label].sum() - npos * (npos + 1) / 2.0) / (npos * nneg))


def dice_cases(pred, gt, K):
    """[n_cases, K-1] foreground Dice, NaN where the class is absent from the ground truth"""
    out = np.full((len(pred), K - 1), np.nan)
    for i, (p, g) in enumerate(zip(pred, gt)):
        for k in range(1, K):
            gk, pk = g == k, p == k
            if gk.any():
                out[i, k - 1] = 2.0 * (gk & pk).sum() / (gk.sum() + pk.sum())
    return out


def seg_metric(per_case):
    """vita's "dice" (dice_mean): per case the mean over the foreground classes present in the
    ground truth, then the mean over cases (NaN skipped at both levels)"""
    with np.errstate(all="ignore"):
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return float(np.nanmean(np.nanmean(per_case, 1)))


def psnr(pred, target):
    pred, target = pred.astype(np.float64), target.astype(np.float64)
    R = target.max() - target.min()
    mse = ((pred - target) ** 2).mean()
    return float(10.0 * math.log10(R * R / mse)) if mse > 0 else float("inf")


def predict(net, spec, d, idx):
    net.eval()
    outs = []
    with torch.no_grad():
        for i in range(0, len(idx), spec["batch"]):
            outs.append(net(torch.from_numpy(d["images"][idx[i:i + spec["batch"]]])).numpy())
    net.train()
    return np.concatenate(outs)


def evaluate(net, spec, d):
    task, val = spec["task"], d["val"]
    y = predict(net, spec, d, val)
    if task == "classify":
        z = y - y.max(1, keepdims=True)
        p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
        return auroc(p[:, 1], d["cls"][val])
    if task == "segment":
        return seg_metric(dice_cases(y.argmax(1), d["seg"][val], y.shape[1]))
    return float(np.mean([psnr(y[i, 0], d["target"][c, 0]) for i, c in enumerate(val)]))


def trivial(spec, d):
    task, val = spec["task"], d["val"]
    if task == "classify":
        return auroc(np.zeros(len(val)), d["cls"][val]), None
    if task == "segment":
        K = spec["head"]["num_classes"]
        return seg_metric(dice_cases(np.zeros_like(d["seg"][val]), d["seg"][val], K)), None
    mean = float(d["target"][d["train"]].astype(np.float64).mean())
    triv = float(np.mean([psnr(np.full_like(d["target"][c, 0], mean), d["target"][c, 0]) for c in val]))
    ident = None
    if task in ("superres", "undistort"):
        ch = spec.get("identity_channel", spec["head"].get("input_channel", 0))
        ident = float(np.mean([psnr(d["images"][c, ch], d["target"][c, 0]) for c in val]))
    return triv, ident


# ---- main ------------------------------------------------------------------------------------
def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--spec", required=True)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--init", default=None)
    ap.add_argument("--order", default=None)
    ap.add_argument("--out", default=None)
    ap.add_argument("--bench", type=int, default=0, help="time N training steps and exit")
    a = ap.parse_args()
    with open(a.spec) as f:
        spec = json.load(f)
    seed = a.seed if a.seed is not None else spec.get("seed", 0)
    init = a.init if a.init is not None else spec.get("init")
    order_path = a.order if a.order is not None else spec.get("order")
    torch.set_num_threads(int(spec.get("threads", 2)))
    torch.manual_seed(seed)
    t0 = time.time()
    d = load_data(spec)
    net = Net(spec)
    gen = torch.Generator().manual_seed(1000 + seed)
    if init:
        load_init(net, init)
    else:
        init_like_vita(net, spec, gen)
    net.train()
    groups = param_groups(net, spec)
    opt = torch.optim.AdamW(groups, lr=spec["lr"], betas=(0.9, 0.999), eps=1e-8)
    E, B = spec["epochs"], spec["batch"]
    nb = (len(d["train"]) + B - 1) // B
    steps_file = None
    if order_path:
        with open(order_path) as f:
            steps_file = [np.array([int(v) for v in line.split()], dtype=np.int64) for line in f if line.strip()]
        if len(steps_file) < E * nb:
            raise SystemExit(f"learn_peer: {order_path} has {len(steps_file)} steps, {E * nb} needed")
    params = [p for g in groups for p in g["params"]]
    curve, losses, step_loss = [evaluate(net, spec, d)] if not a.bench else [], [], []
    step, tb = 0, time.time()
    for epoch in range(E):
        batches = [steps_file[epoch * nb + i] for i in range(nb)] if steps_file else \
            epoch_order(d, spec["task"], B, epoch, gen)
        tot = 0.0
        for it, idx in enumerate(batches):
            lr = lr_at(spec, epoch + it / nb)
            for g in opt.param_groups:
                g["lr"] = lr * g["lr_scale"]
            out = net(torch.from_numpy(d["images"][idx]))
            loss = loss_fn(spec, out, d, idx)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if spec["clip_grad"] > 0:
                torch.nn.utils.clip_grad_norm_(params, spec["clip_grad"])
            opt.step()
            tot += float(loss)
            step_loss.append(float(loss))
            step += 1
            if a.bench and step >= a.bench:
                dt = time.time() - tb
                print(f"bench: {step} steps of batch {B} in {dt:.2f} s, {dt / step:.3f} s/step")
                return
        losses.append(tot / nb)
        curve.append(evaluate(net, spec, d))
        print(f"peer {spec['task']} seed {seed} epoch {epoch + 1}/{E} loss {losses[-1]:.4f} "
              f"val {curve[-1]:.4f} ({time.time() - t0:.0f} s)", file=sys.stderr, flush=True)
    triv, ident = trivial(spec, d)
    res = {"task": spec["task"], "seed": seed, "metric": {"classify": "auroc", "segment": "dice"}.get(spec["task"], "psnr"),
           "val_metric": curve, "train_loss": losses, "step_loss": step_loss, "final": curve[-1], "best": max(curve[1:]),
           "trivial": triv, "identity": ident, "steps": step, "n_train": int(len(d["train"])),
           "n_val": int(len(d["val"])), "init": "file" if init else "torch", "order": "file" if steps_file else "torch",
           "time_s": round(time.time() - t0, 1), "torch": torch.__version__, "threads": torch.get_num_threads()}
    line = json.dumps(res)
    print("PEER_JSON " + line, flush=True)
    if a.out:
        with open(a.out, "w") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
