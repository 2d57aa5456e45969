#!/usr/bin/env python3
"""tools/convert_checkpoint.py — a ViT checkpoint (timm, MAE, DINOv2, MONAI, ProFound-ViT,
ProViCNet) -> a vita safetensors file with canonical (timm) names, F32, and __metadata__
{model: the VitConfig JSON that models/vit_config.c reads, source, converted_from}.

    convert_checkpoint.py SRC OUT.safetensors [--source auto|timm|mae|dinov2|monai|profound|provicnet]
                          [--preset NAME | --config JSON] [--img D,H,W] [--heads N]
                          [--channels a,b,c] [--ln-eps E] [--pos-embed learned|sincos] [--quiet]

SRC: .pth / .pt / .bin (PyTorch pickles: loaded with weights_only=True where the installed
torch has it, else through a restricted unpickler that runs no pickled code; the state dict may
sit under 'model' / 'state_dict' / ... and carry a 'module.' prefix) or .safetensors.

What each source maps (printed as source -> canonical, plus dropped and missing keys):
  timm      canonical already; the classifier (head.*, fc_norm) is dropped; pos_embed rows of
            timm's other layouts are made vita's [cls | patches]: no_embed_class (patches only:
            a zero cls row) and register rows (folded into reg_token, which they offset)
  mae       timm names + the pretraining decoder (decoder_*, mask_token), dropped; fixed
            sin-cos pos_embed (kept as stored, frozen in vita)
  dinov2    register_tokens -> reg_token, LayerScale ls1/ls2.gamma, mask_token dropped, chunked
            blocks (blocks.C.I.*) unchunked; SwiGLU MLPs (mlp.w12/w3) are refused: vita's
            encoder MLP is fc1 -> GELU -> fc2
  monai     ViT / UNETR encoder (UNETR's vit.* prefix; its decoder dropped):
            patch_embedding.patch_embeddings (conv, or perceptron Linear reshaped to the conv
            kernel) -> patch_embed.proj, patch_embedding.position_embeddings (patches only) ->
            pos_embed (a zero cls row when there is a cls token), attn.qkv or attn.to_q/k/v ->
            attn.qkv, attn.out_proj -> attn.proj, mlp.linear1/2 -> mlp.fc1/2; the unused
            cross-attention of MONAI >= 1.4 blocks is dropped; LN eps 1e-5 (MONAI's default)
  profound  3D MAE naming (as mae; Conv3d patch embed); attn.q + attn.kv are fused into qkv
  provicnet backbone.* = DINOv2 (as dinov2), axis_pos / axis_max = Linear(1, dim) of the slice
            index / count -> extra_tokens.slice_index / slice_count; its segmentation head
            (head.*) is dropped

Config: shapes give spatial_dims, patch, in_chans, dim, depth, mlp_ratio, qkv_bias, cls token,
registers, extra tokens and LayerScale; heads, img size, LN eps, channel names and the
pos_embed kind come from --preset / --config / the flags, else from the source's convention
(heads = dim / 64, LN eps of the source, img from the pos_embed grid), each inference printed.
A --config JSON (a file or a literal) holds VitConfig keys as in the "model" metadata.
Exit 1 with one line on a bad file, an unsafe pickle, or missing / unplaceable encoder keys.
"""
import argparse
import collections
import json
import os
import re
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import checkpoint_io as cio  # noqa: E402
import vit_layout  # noqa: E402

SOURCES = ["timm", "mae", "dinov2", "monai", "profound", "provicnet"]
SOURCE_LN_EPS = {"timm": 1e-6, "mae": 1e-6, "dinov2": 1e-6, "monai": 1e-5, "profound": 1e-6,
                 "provicnet": 1e-6}


class Mapped:
    """the canonical tensors being built, with the printed account of where each came from"""

    def __init__(self):
        self.t = collections.OrderedDict()
        self.mapping = []      # (source key(s), canonical name)
        self.dropped = []      # (source key, reason)
        self.notes = []

    def put(self, dst, arr, src):
        self.t[dst] = np.asarray(arr)
        self.mapping.append((src, dst))

    def drop(self, src, why):
        self.dropped.append((src, why))


def detect_source(sd):
    keys = list(sd)
    has = lambda pat: any(re.search(pat, k) for k in keys)  # noqa: E731
    if has(r"^backbone\.") and has(r"^axis_(pos|max)\."):
        return "provicnet", "backbone.* with axis_pos / axis_max slice tokens"
    if has(r"(^|\.)patch_embedding\.") or has(r"\.mlp\.linear1\."):
        return "monai", "patch_embedding.* / mlp.linear1"
    pe = sd.get("patch_embed.proj.weight")
    if pe is not None and pe.ndim == 5:
        return "profound", "a 5-D (3D) patch_embed.proj.weight in timm/MAE naming"
    if has(r"^decoder_"):
        return "mae", "decoder_* (MAE pretraining decoder)"
    if has(r"^register_tokens$") or has(r"^mask_token$") or has(r"^blocks\.\d+\.\d+\.") or \
            has(r"\.mlp\.w12\."):
        return "dinov2", "register_tokens / mask_token / chunked blocks / SwiGLU"
    return "timm", "timm VisionTransformer names"


BLOCK_PARTS = ["norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias",
               "attn.proj.weight", "attn.proj.bias", "ls1.gamma", "norm2.weight", "norm2.bias",
               "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias", "ls2.gamma"]


def map_timm_like(sd, source, m):
    """timm / MAE / DINOv2 / ProFound naming (all timm Blocks) -> canonical"""
    for k, v in sd.items():
        mb = re.match(r"^blocks\.(\d+)\.(?:(\d+)\.)?(.*)$", k)
        if mb:
            # DINOv2 chunked blocks: blocks.<chunk>.<global index>.<part>
            idx, part = (mb.group(2) or mb.group(1)), mb.group(3)
            if part in ("mlp.w12.weight", "mlp.w12.bias", "mlp.w3.weight", "mlp.w3.bias"):
                cio.fail(f"{k}: a SwiGLU MLP (DINOv2 ViT-g style); vita's encoder MLP is "
                         "fc1 -> GELU -> fc2 and cannot run it (models/vit.h)")
            if part in ("attn.q.weight", "attn.q.bias", "attn.kv.weight", "attn.kv.bias"):
                continue   # fused below
            if part in ("ls1.scale", "ls2.scale"):
                part = part.replace("scale", "gamma")
            if part not in BLOCK_PARTS:
                cio.fail(f"{k}: '{part}' has no place in vita's encoder block (pre-norm "
                         "attention + GELU MLP, optional LayerScale); cannot convert")
            m.put(f"blocks.{idx}.{part}", v, k)
        elif k in ("patch_embed.proj.weight", "patch_embed.proj.bias", "cls_token", "pos_embed",
                   "norm.weight", "norm.bias", "reg_token") or k.startswith("extra_tokens."):
            m.put(k, v, k)
        elif k == "register_tokens":
            m.put("reg_token", v, k)
        elif k == "mask_token":
            m.drop(k, "mask token of the masked-image pretraining objective")
        elif k.startswith("decoder_") or k.startswith("decoder."):
            m.drop(k, "MAE pretraining decoder (vita fine-tunes the encoder only)")
        elif k.startswith("head.") or k.startswith("head_drop") or k == "head":
            m.drop(k, "the source's classifier (vita's task heads are trained by vita train)")
        elif k.startswith("fc_norm."):
            if "norm.weight" in sd:
                m.drop(k, "the classifier's pooled-feature norm")
            else:
                m.put(k.replace("fc_norm.", "norm."), v, k)
                m.notes.append("fc_norm (LayerNorm of the pooled tokens) became the final norm "
                               "(of every token): block outputs are exact, the 'norm' layer "
                               "differs from the source's pooled feature")
        elif k.startswith("norm_pre.") or ".q_norm." in k or ".k_norm." in k:
            cio.fail(f"{k}: vita's encoder has no pre-norm / qk-norm; cannot convert")
        else:
            cio.fail(f"{k}: unknown key for source '{source}'; pass --source (one of "
                     f"{', '.join(SOURCES)}) or check that this is a ViT checkpoint")
    # separate q / kv projections (ProFound's cross-attention-capable blocks) -> fused qkv
    for k in sd:
        mq = re.match(r"^blocks\.(\d+)\.attn\.q\.(weight|bias)$", k)
        if mq:
            kv = f"blocks.{mq.group(1)}.attn.kv.{mq.group(2)}"
            if kv not in sd:
                cio.fail(f"{k} without {kv}: cannot build the fused qkv projection")
            m.put(f"blocks.{mq.group(1)}.attn.qkv.{mq.group(2)}",
                  np.concatenate([sd[k], sd[kv]], axis=0), f"{k} + {kv}")


def map_monai(sd, m):
    if any(k.startswith("vit.") for k in sd):
        for k in [k for k in sd if not k.startswith("vit.")]:
            m.drop(k, "UNETR decoder (vita's segment head is its own)")
        sd = collections.OrderedDict((k[4:], v) for k, v in sd.items() if k.startswith("vit."))
        m.notes.append("UNETR checkpoint: its ViT encoder (vit.*) converted")
    qkv_parts = collections.defaultdict(dict)
    for k, v in sd.items():
        mb = re.match(r"^blocks\.(\d+)\.(.*)$", k)
        if mb:
            i, part = mb.group(1), mb.group(2)
            p = f"blocks.{i}."
            ren = {"mlp.linear1.weight": "mlp.fc1.weight", "mlp.linear1.bias": "mlp.fc1.bias",
                   "mlp.linear2.weight": "mlp.fc2.weight", "mlp.linear2.bias": "mlp.fc2.bias",
                   "attn.out_proj.weight": "attn.proj.weight", "attn.out_proj.bias": "attn.proj.bias",
                   "attn.qkv.weight": "attn.qkv.weight", "attn.qkv.bias": "attn.qkv.bias",
                   "norm1.weight": "norm1.weight", "norm1.bias": "norm1.bias",
                   "norm2.weight": "norm2.weight", "norm2.bias": "norm2.bias"}
            if part in ren:
                m.put(p + ren[part], v, k)
            elif re.match(r"^attn\.to_[qkv]\.(weight|bias)$", part):
                qkv_parts[i][part] = v
            elif part.startswith("cross_attn.") or part.startswith("norm_cross_attn."):
                m.drop(k, "MONAI's cross-attention (unused by its ViT: with_cross_attention=False)")
            else:
                cio.fail(f"{k}: '{part}' has no place in vita's encoder block; cannot convert")
        elif k in ("patch_embedding.patch_embeddings.weight", "patch_embedding.patch_embeddings.bias"):
            m.put(k.replace("patch_embedding.patch_embeddings", "patch_embed.proj"), v, k)
        elif k in ("patch_embedding.patch_embeddings.1.weight", "patch_embedding.patch_embeddings.1.bias"):
            m.put(k.replace("patch_embedding.patch_embeddings.1", "monai_perceptron"), v, k)
        elif k == "patch_embedding.position_embeddings":
            m.put("pos_embed", v, k)
        elif k in ("cls_token", "norm.weight", "norm.bias"):
            m.put(k, v, k)
        elif k.startswith("classification_head."):
            m.drop(k, "the source's classifier (vita's task heads are trained by vita train)")
        else:
            cio.fail(f"{k}: unknown key for a MONAI ViT; pass --source or check the checkpoint")
    for i, parts in qkv_parts.items():
        for kind in ("weight", "bias"):
            got = [parts.get(f"attn.to_{x}.{kind}") for x in "qkv"]
            if all(g is None for g in got):
                continue
            if any(g is None for g in got):
                cio.fail(f"blocks.{i}.attn: to_q/to_k/to_v {kind} incomplete; cannot fuse qkv")
            m.put(f"blocks.{i}.attn.qkv.{kind}", np.concatenate(got, axis=0),
                  f"blocks.{i}.attn.to_q/to_k/to_v.{kind}")
    return sd


def map_provicnet(sd, m):
    bb = collections.OrderedDict()
    for k, v in sd.items():
        if k.startswith("backbone."):
            bb[k[len("backbone."):]] = v
        elif k.startswith("axis_pos."):
            m.put("extra_tokens.slice_index." + k.split(".", 1)[1], v, k)
        elif k.startswith("axis_max."):
            m.put("extra_tokens.slice_count." + k.split(".", 1)[1], v, k)
        elif k.startswith("modal."):
            cio.fail(f"{k}: ProViCNet's modality token is Linear({v.shape[-1]}, dim) of a "
                     "one-hot vector; vita's extra tokens are Linear(1, dim) of one scalar")
        elif k.startswith("head."):
            m.drop(k, "ProViCNet's segmentation head (vita trains its own 'pup' head)")
        else:
            cio.fail(f"{k}: unknown key for ProViCNet (expected backbone.*, axis_pos, "
                     "axis_max, head.*)")
    sub = Mapped()
    map_timm_like(bb, "provicnet", sub)
    for src, dst in sub.mapping:
        m.put(dst, sub.t[dst], "backbone." + src)
    for src, why in sub.dropped:
        m.drop("backbone." + src, why)
    m.notes += sub.notes


def parse_ints(s, what):
    try:
        v = [int(x) for x in s.split(",")]
    except ValueError:
        cio.fail(f"{what} '{s}': expected comma-separated integers, e.g. 64,256,256")
    if any(x <= 0 for x in v):
        cio.fail(f"{what} '{s}': sizes must be positive")
    return v


def load_config_arg(s):
    try:
        if os.path.exists(s):
            with open(s) as f:
                c = json.load(f)
        else:
            c = json.loads(s)
    except (OSError, ValueError) as e:
        cio.fail(f"--config: '{s}' is neither a readable JSON file nor a JSON object ({e})")
    if not isinstance(c, dict):
        cio.fail("--config: expected a JSON object of model keys (as in the 'model' metadata)")
    bad = [k for k in c if k not in vit_layout.KEYS]
    if bad:
        cio.fail(f"--config: unknown key(s) {bad}; allowed: {', '.join(vit_layout.KEYS)}")
    return c


def resolve_pos(m, cfg, source, say):
    """puts the pos_embed rows into vita's [cls | patches] layout; returns the patch count"""
    pos = m.t["pos_embed"]
    D = pos.shape[-1]
    pos = pos.reshape(-1, D)
    n, ncls = pos.shape[0], 1 if "cls_token" in m.t else 0
    R = m.t["reg_token"].reshape(-1, D).shape[0] if "reg_token" in m.t else 0
    nd = cfg["spatial_dims"]
    if source == "monai":
        cands = [("patches only", n)]
    else:
        cands = [("cls + patches", n - ncls)]
        if ncls:
            cands.append(("patches only (timm no_embed_class)", n))
        if R and source == "timm":
            cands.append(("cls + registers + patches", n - ncls - R))
    want = None
    if cfg.get("img_size"):
        want = int(np.prod(vit_layout.grid(cfg)))
    pick = None
    for layout, P in cands:
        if P > 0 and P == want:
            pick = (layout, P)
            break
    if pick is None:
        for layout, P in cands:
            r = round(P ** (1.0 / nd)) if P > 0 else 0
            if P > 0 and r ** nd == P:
                pick = (layout, P)
                break
    if pick is None:
        pick = cands[0]
    layout, P = pick
    if layout.startswith("patches only") and ncls:
        pos = np.concatenate([np.zeros((1, D), pos.dtype), pos], axis=0)
        say(f"pos_embed: {layout}: a zero row added for the cls token (the source adds no "
            "position to it)")
    elif layout == "cls + registers + patches":
        regpos = pos[ncls:ncls + R]
        if np.any(regpos != 0):
            m.t["reg_token"] = (m.t["reg_token"].reshape(R, D) + regpos).reshape(1, R, D)
        pos = np.concatenate([pos[:ncls], pos[ncls + R:]], axis=0)
        say("pos_embed: the register rows were folded into reg_token (a constant offset of "
            "each register), leaving [cls | patches]")
    m.t["pos_embed"] = pos.reshape(1, -1, D)
    return P


def infer_config(m, source, args, say):
    t = m.t
    if "patch_embed.proj.weight" not in t and "monai_perceptron.weight" not in t:
        cio.fail("no patch embedding weight found (patch_embed.proj.weight or MONAI "
                 "patch_embedding.patch_embeddings): not a ViT encoder checkpoint?")
    cfg = dict(vit_layout.DEFAULTS)
    given = set()
    if args.preset:
        try:
            cfg = vit_layout.preset_config(args.preset)
        except KeyError as e:
            cio.fail(str(e.args[0]))
        # the LayerNorm eps is the source's convention, not the preset's
        given |= set(cfg) - {"preset", "ln_eps"}
        say(f"config: preset {args.preset}")
    if args.config:
        c = load_config_arg(args.config)
        cfg.update(c)
        given |= set(c)
    if args.img:
        cfg["img_size"] = parse_ints(args.img, "--img")
        given.add("img_size")
    if args.heads:
        cfg["heads"] = args.heads
        given.add("heads")
    if args.ln_eps:
        cfg["ln_eps"] = args.ln_eps
        given.add("ln_eps")
    if args.pos_embed:
        cfg["pos_embed"] = args.pos_embed
        given.add("pos_embed")
    if args.channels:
        cfg["channels"] = args.channels.split(",")
        given.add("channels")

    # ---- from shapes (always; a preset / --config that disagrees is an error) -------------
    if "monai_perceptron.weight" in t:
        if "patch" not in given:
            cio.fail("MONAI perceptron patch embedding: the patch size is not in its shapes; "
                     "pass --preset or --config '{\"patch\": [pd, ph, pw], ...}'")
        w = t.pop("monai_perceptron.weight")
        b = t.pop("monai_perceptron.bias", None)
        D, K = w.shape
        pv = int(np.prod(cfg["patch"]))
        if K % pv:
            cio.fail(f"MONAI perceptron weight [{D}, {K}] does not fit patch {cfg['patch']}")
        C = K // pv
        # MONAI flattens a patch as (p1 p2 [p3] c): channels last; vita's conv kernel is (c p1 p2 [p3])
        kern = w.reshape([D] + list(cfg["patch"]) + [C])
        t["patch_embed.proj.weight"] = np.moveaxis(kern, -1, 1).copy()
        if b is not None:
            t["patch_embed.proj.bias"] = b
        m.mapping = [(s, "patch_embed.proj.weight" if d == "monai_perceptron.weight" else
                      "patch_embed.proj.bias" if d == "monai_perceptron.bias" else d)
                     for s, d in m.mapping]
        say("patch embedding: MONAI perceptron Linear reshaped to the conv kernel (channels "
            "moved first)")
    pw = t["patch_embed.proj.weight"]
    shape_cfg = {"spatial_dims": pw.ndim - 2, "patch": list(pw.shape[2:]), "in_chans": pw.shape[1],
                 "dim": pw.shape[0]}
    blocks = sorted({int(k.split(".")[1]) for k in t if k.startswith("blocks.")})
    if not blocks or blocks != list(range(len(blocks))):
        cio.fail(f"encoder blocks {blocks[:3]}...{blocks[-3:]} are not numbered 0..depth-1: "
                 "missing blocks" if blocks else "no encoder blocks found")
    shape_cfg["depth"] = len(blocks)
    if "blocks.0.mlp.fc1.weight" not in t:
        cio.fail("blocks.0.mlp.fc1.weight (the MLP's first layer) is missing: required")
    shape_cfg["mlp_ratio"] = t["blocks.0.mlp.fc1.weight"].shape[0] / shape_cfg["dim"]
    shape_cfg["qkv_bias"] = "blocks.0.attn.qkv.bias" in t
    shape_cfg["cls_token"] = "cls_token" in t
    shape_cfg["num_registers"] = int(t["reg_token"].size // shape_cfg["dim"]) if "reg_token" in t else 0
    shape_cfg["extra_tokens"] = [n for n in ("slice_index", "slice_count")
                                 if f"extra_tokens.{n}.weight" in t]
    has_ls = "blocks.0.ls1.gamma" in t
    for k, v in shape_cfg.items():
        if k in given and cfg[k] != v and not (k == "mlp_ratio" and abs(cfg[k] - v) < 1e-6):
            cio.fail(f"{'--preset ' + args.preset if args.preset else '--config'} says {k} = "
                     f"{cfg[k]} but the checkpoint's shapes say {v}; pick the matching preset or "
                     "fix the config")
        cfg[k] = v
    if has_ls and not cfg["layerscale_init"] > 0:
        cfg["layerscale_init"] = 1e-5
        say("config: layerscale_init = 1e-05 (LayerScale present; the init value only matters "
            "for training from scratch: the gammas are loaded)")
    elif not has_ls and cfg["layerscale_init"] > 0:
        if "layerscale_init" in given and args.preset is None:
            cio.fail("--config sets layerscale_init but the checkpoint has no ls1/ls2.gamma")
        cfg["layerscale_init"] = 0.0
    if "heads" not in given:
        if shape_cfg["dim"] % 64:
            cio.fail(f"the number of attention heads is not in the shapes and dim "
                     f"{shape_cfg['dim']} is not a multiple of 64: pass --heads N or --preset")
        cfg["heads"] = shape_cfg["dim"] // 64
        say(f"config: heads = {cfg['heads']} (not in the shapes: dim / 64, the head width of "
            "every standard ViT; pass --heads to override)")
    if "ln_eps" not in given:
        cfg["ln_eps"] = SOURCE_LN_EPS[source]
        say(f"config: ln_eps = {cfg['ln_eps']:g} ({source}'s LayerNorm eps; --ln-eps to override)")
    if "pos_embed" not in given:
        fixed = source == "profound" or (source == "mae" and any(
            s.startswith("decoder_") for s, _ in m.dropped))
        cfg["pos_embed"] = "sincos" if fixed else "learned"
        say(f"config: pos_embed = {cfg['pos_embed']}" +
            (" (MAE pretraining keeps it fixed; the stored values are loaded and frozen)" if fixed else ""))
    if "img_size" in given and len(cfg["img_size"]) != cfg["spatial_dims"]:
        cio.fail(f"img size {cfg['img_size']}: a {cfg['spatial_dims']}D model needs "
                 f"{cfg['spatial_dims']} sizes")
    if "pos_embed" not in t:
        cio.fail("pos_embed (position embedding) is missing: required")
    if "img_size" not in given:
        cfg.pop("img_size", None)
    P = resolve_pos(m, cfg, source, say)
    if "img_size" not in given:
        side = round(P ** (1.0 / cfg["spatial_dims"]))
        if side ** cfg["spatial_dims"] != P:
            cio.fail(f"pos_embed has {P} patch rows, not a square/cube grid: pass --img "
                     "D,H,W (or H,W) or --preset")
        cfg["img_size"] = [side * p for p in cfg["patch"]]
        say(f"config: img_size = {cfg['img_size']} (the pos_embed grid x patch)")
    if "channels" not in given or len(cfg["channels"]) != cfg["in_chans"]:
        if "channels" in given:
            cio.fail(f"--channels/--config: {len(cfg['channels'])} names for "
                     f"{cfg['in_chans']} input channels")
        cfg["channels"] = (["t2w", "hbv", "adc"] if source == "profound" and cfg["in_chans"] == 3
                           else ["t2w_prev", "t2w", "t2w_next"] if source == "provicnet" and
                           cfg["in_chans"] == 3 else [f"c{i}" for i in range(cfg["in_chans"])])
        say(f"config: channels = {','.join(cfg['channels'])} (--channels to name them)")
    if not args.preset:
        cfg["preset"] = cfg.get("preset") or ""
    err = vit_layout.check_config(cfg)
    if err:
        cio.fail(f"config: {err}")
    return cfg


def dinov2_pos_resample(pos, ncls, grid, offset, antialias):
    """DINOv2's interpolate_pos_encoding applied once, at conversion: the patch rows of
    pos [1, ncls + M*M, D] as an M x M image, F.interpolate(mode="bicubic", antialias=...) in
    float32, either with scale_factor ((g + offset) / M) (offset > 0: DINOv2's default 0.1) or
    with size g (offset 0: the register models); cls rows kept. Square grids only (DINOv2 orders
    the two scale factors (w, h), which matters only for non-square inputs)."""
    import torch
    import torch.nn.functional as F
    D = pos.shape[-1]
    patch = pos.reshape(-1, D)[ncls:]
    M = int(round(patch.shape[0] ** 0.5))
    if M * M != patch.shape[0] or len(grid) != 2 or grid[0] != grid[1]:
        return None
    x = torch.from_numpy(np.ascontiguousarray(patch, np.float32)).reshape(1, M, M, D).permute(0, 3, 1, 2)
    kw = {"scale_factor": ((grid[0] + offset) / M, (grid[1] + offset) / M)} if offset else \
        {"size": (grid[0], grid[1])}
    y = F.interpolate(x, mode="bicubic", antialias=antialias, **kw)
    if tuple(y.shape[-2:]) != tuple(grid):
        return None
    y = y.permute(0, 2, 3, 1).reshape(-1, D).numpy()
    return np.concatenate([pos.reshape(-1, D)[:ncls], y], 0).reshape(1, -1, D).astype(np.float32)


def pos_interp_mode(args, source, cfg):
    """(offset, antialias) of DINOv2's convention for this conversion, or None (vita resamples
    at load, as timm: bicubic, align_corners False, no antialias)"""
    mode = args.pos_interp
    if mode == "auto":
        mode = ("dinov2-reg" if cfg.get("num_registers", 0) else "dinov2") \
            if source in ("dinov2", "provicnet") else "vita"
    return {"dinov2": (0.1, False), "dinov2-reg": (0.0, True)}.get(mode), mode


def assemble(m, cfg, say, pos_interp=None):
    """checks the mapped tensors against vita's table; returns them in table order"""
    out = collections.OrderedDict()
    missing = []
    D = cfg["dim"]
    for name, shape in vit_layout.table(cfg):
        if name not in m.t:
            if name == "patch_embed.proj.bias":
                out[name] = np.zeros(D, np.float32)
                say("patch_embed.proj.bias: none in the source (a bias-free conv) -> zeros")
                continue
            if name.endswith("attn.proj.weight") or name.endswith("attn.proj.bias"):
                if cfg_monai_identity(m, name):
                    out[name] = np.eye(D, dtype=np.float32) if name.endswith("weight") else \
                        np.zeros(D, np.float32)
                    continue
            missing.append(name)
            continue
        a = m.t[name]
        if name == "pos_embed" and a.size != int(np.prod(shape)) and pos_interp and pos_interp[0]:
            (offset, anti), mode = pos_interp
            g = vit_layout.grid(cfg)[-2:]
            r = dinov2_pos_resample(a, 1 if cfg["cls_token"] else 0, g, offset, anti) \
                if cfg["spatial_dims"] == 2 else None
            if r is None or r.size != int(np.prod(shape)):
                say(f"pos_embed: {mode} interpolation needs a square 2D grid; {a.shape[1]} rows "
                    f"kept as stored (vita resamples them at load)")
            else:
                say(f"pos_embed: resampled to the {g[0]}x{g[1]} grid with DINOv2's convention "
                    f"({mode}: bicubic, interpolate_offset {offset}, antialias {anti}), as "
                    "DINOv2 does at every forward at this input size")
                a = r.reshape(shape)
        elif name == "pos_embed" and a.size != int(np.prod(shape)):
            say(f"pos_embed: {a.shape[1]} rows kept as stored; vita resamples the grid to "
                f"{vit_layout.grid(cfg)} when it loads the file")
        elif a.size != int(np.prod(shape)):
            cio.fail(f"{name}: shape {list(a.shape)} but the config needs {shape}")
        else:
            a = a.reshape(shape)
        out[name] = a
    if missing:
        cio.fail(f"required encoder keys missing: {', '.join(missing[:6])}"
                 f"{' ...' if len(missing) > 6 else ''} ({len(missing)} in all); the checkpoint "
                 "is incomplete or of another architecture")
    extra = [k for k in m.t if k not in out]
    if extra:
        cio.fail(f"{', '.join(extra[:4])}: no place in the encoder of this config")
    return out


def cfg_monai_identity(m, name):
    """MONAI's SABlock with include_fc=False has no output projection: an identity"""
    blk = name.rsplit(".attn.", 1)[0]
    if getattr(m, "source", "") == "monai" and f"{blk}.attn.qkv.weight" in m.t:
        if name.endswith("weight"):
            m.notes.append(f"{blk}.attn.proj: none in the source (MONAI include_fc=False) -> identity")
        return True
    return False


def vita_version():
    """VITA_VERSION of the checkout this tool belongs to (models/vit_weights.h), as vita's own
    checkpoints record it; "unknown" when the tool was copied elsewhere"""
    h = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "models", "vit_weights.h")
    try:
        with open(h) as f:
            for line in f:
                m = re.match(r'\s*#\s*define\s+VITA_VERSION\s+"([^"]*)"', line)
                if m:
                    return m.group(1)
    except OSError:
        pass
    return "unknown"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src")
    ap.add_argument("out")
    ap.add_argument("--source", default="auto", choices=["auto"] + SOURCES)
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--preset", choices=list(vit_layout.PRESETS))
    g.add_argument("--config", help="JSON file or literal with VitConfig keys")
    ap.add_argument("--img", help="input size D,H,W (3D) or H,W (2D)")
    ap.add_argument("--heads", type=int)
    ap.add_argument("--channels", help="input channel names, comma-separated")
    ap.add_argument("--ln-eps", type=float)
    ap.add_argument("--pos-embed", choices=["learned", "sincos"])
    ap.add_argument("--pos-interp", default="auto", choices=["auto", "dinov2", "dinov2-reg", "vita"],
                    help="how a pos_embed of another grid is resampled to --img: DINOv2's "
                         "interpolate_pos_encoding (dinov2: offset 0.1, no antialias; dinov2-reg: "
                         "size, antialias, as its register models), or left to vita's load-time "
                         "resampling (timm's convention). auto: dinov2[-reg] for dinov2 / "
                         "provicnet sources, else vita")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    say = (lambda s: None) if args.quiet else print
    if not args.out.endswith(".safetensors"):
        cio.fail(f"{args.out}: the output must be a .safetensors file")
    try:
        sd, notes, meta = cio.load_state_dict(args.src)
    except OSError as e:
        cio.fail(f"{args.src}: {e.strerror}")
    except cio.CheckpointError as e:
        cio.fail(str(e))
    for n in notes:
        say(f"{args.src}: {n}")
    if "model" in meta and not args.config and not args.preset:
        # a vita / export_checkpoint.py file carries its config: shapes are still checked against it
        args.config = meta["model"]
        say(f"config: the 'model' JSON in {args.src}'s __metadata__")
    source = args.source
    if source == "auto":
        source, why = detect_source(sd)
        say(f"source: {source} (detected: {why}; --source to override)")
    m = Mapped()
    m.source = source
    if source == "monai":
        map_monai(sd, m)
    elif source == "provicnet":
        map_provicnet(sd, m)
    else:
        map_timm_like(sd, source, m)
    cfg = infer_config(m, source, args, say)
    mode = pos_interp_mode(args, source, cfg)
    out = assemble(m, cfg, say, (mode[0], mode[1]) if mode[0] else None)
    say("mapping (source -> canonical):")
    for src, dst in m.mapping:
        say(f"  {src} -> {dst}")
    if m.dropped:
        say(f"dropped ({len(m.dropped)}):")
        for src, why in m.dropped:
            say(f"  {src}: {why}")
    for n in m.notes:
        say(f"note: {n}")
    meta = {"model": vit_layout.config_json(cfg), "source": source,
            "converted_from": os.path.basename(args.src), "vita_version": vita_version()}
    try:
        cio.write_safetensors(args.out, out, meta)
    except cio.CheckpointError as e:
        cio.fail(str(e))
    n = sum(int(a.size) for a in out.values())
    say(f"wrote {args.out}: {len(out)} tensors, {n} parameters, model {vit_layout.config_json(cfg)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
