#!/usr/bin/env python3
"""tools/export_checkpoint.py — a vita checkpoint (safetensors: encoder, optionally head.*) ->
a state dict that timm's VisionTransformer loads, as .pth (torch.save) or .safetensors.

    export_checkpoint.py VITA.safetensors OUT.pth|OUT.safetensors [--format timm] [--no-head]

vita's canonical names are timm's, so most tensors pass through unchanged. What differs:
  - registers: timm's VisionTransformer (class_token=True, no_embed_class=False, reg_tokens=R)
    adds pos_embed to [cls | registers | patches], vita to [cls | patches] only; the export
    inserts R zero rows after the cls row, so timm computes exactly vita's sums.
  - 3D models: patch_embed.proj.weight stays 5-D [dim, C, pd, ph, pw] (timm's PatchEmbed is 2D;
    load it into a Conv3d patch embedding) — printed when it happens.
  - extra tokens (ProViCNet's slice tokens) have no timm counterpart: exported under their vita
    names extra_tokens.* (load with strict=False) — printed when it happens.
  - head.* (vita's task head) is kept under head.* unless --no-head; it is not timm's classifier.
The config rides along in a .safetensors output's __metadata__ ("model", as vita writes it); a
.pth holds the bare state dict (what timm's load_state_dict expects) and the timm constructor
arguments are printed.
Writes are atomic (temp + fsync + rename). Exit 1 with one line on a bad input.
"""
import argparse
import collections
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import checkpoint_io as cio  # noqa: E402
import vit_layout  # noqa: E402


def timm_kwargs(cfg):
    """the timm VisionTransformer constructor arguments of this config (2D models)"""
    return dict(img_size=cfg["img_size"][-2:], patch_size=cfg["patch"][-1], in_chans=cfg["in_chans"],
                embed_dim=cfg["dim"], depth=cfg["depth"], num_heads=cfg["heads"],
                mlp_ratio=cfg["mlp_ratio"], qkv_bias=cfg["qkv_bias"], class_token=cfg["cls_token"],
                reg_tokens=cfg["num_registers"], no_embed_class=False,
                init_values=cfg["layerscale_init"] or None, num_classes=0, fc_norm=False,
                global_pool="token" if cfg["cls_token"] else "avg")


def export(sd, cfg, keep_head=True, say=print):
    out = collections.OrderedDict()
    D = cfg["dim"]
    R = cfg["num_registers"]
    for k, v in sd.items():
        if k == "pos_embed" and R:
            pos = v.reshape(-1, D)
            ncls = 1 if cfg["cls_token"] else 0
            v = np.concatenate([pos[:ncls], np.zeros((R, D), pos.dtype), pos[ncls:]], 0)[None]
            say(f"pos_embed: {R} zero rows inserted for the registers (timm adds pos_embed to "
                "[cls | registers | patches])")
        elif k.startswith("extra_tokens."):
            say(f"{k}: no timm counterpart; kept under its vita name (load with strict=False)")
        elif k.startswith("head."):
            if not keep_head:
                continue
        elif k == "patch_embed.proj.weight" and v.ndim == 5:
            say("patch_embed.proj.weight: kept 5-D (a 3D model): load it into a Conv3d patch "
                "embedding; timm's own PatchEmbed is 2D")
        out[k] = v
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src")
    ap.add_argument("out")
    ap.add_argument("--format", default="timm", choices=["timm"])
    ap.add_argument("--no-head", action="store_true", help="leave out head.* (vita's task head)")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    say = (lambda s: None) if args.quiet else print
    try:
        sd, meta = cio.read_safetensors(args.src)
    except OSError as e:
        cio.fail(f"{args.src}: {e.strerror}")
    except cio.CheckpointError as e:
        cio.fail(str(e))
    if "model" not in meta:
        cio.fail(f"{args.src}: no 'model' config in __metadata__: not a vita checkpoint (convert "
                 "it with tools/convert_checkpoint.py first)")
    try:
        cfg = json.loads(meta["model"])
        cfg = {k: cfg.get(k, vit_layout.DEFAULTS.get(k)) for k in vit_layout.KEYS}
    except ValueError as e:
        cio.fail(f"{args.src}: __metadata__ 'model' is not valid JSON ({e})")
    for name, shape in vit_layout.table(cfg):
        if name not in sd:
            cio.fail(f"{args.src}: encoder tensor '{name}' missing: not a complete vita checkpoint")
    out = export(sd, cfg, keep_head=not args.no_head, say=say)
    try:
        if args.out.endswith(".safetensors"):
            cio.write_safetensors(args.out, out, {"model": vit_layout.config_json(cfg),
                                                  "format": "timm", "exported_from": os.path.basename(args.src)})
        elif args.out.endswith((".pth", ".pt", ".bin")):
            import torch
            cio.atomic_torch_save(collections.OrderedDict((k, torch.from_numpy(np.ascontiguousarray(v)))
                                                          for k, v in out.items()), args.out)
        else:
            cio.fail(f"{args.out}: use a .pth / .pt / .bin or .safetensors name")
    except cio.CheckpointError as e:
        cio.fail(str(e))
    if cfg["spatial_dims"] == 2:
        say("timm: timm.models.vision_transformer.VisionTransformer(**%s)" % json.dumps(timm_kwargs(cfg)))
        if abs(cfg["ln_eps"] - 1e-6) > 1e-12:
            say(f"timm: also norm_layer=functools.partial(torch.nn.LayerNorm, eps={cfg['ln_eps']:g}) "
                "(timm's default eps is 1e-6)")
    say(f"wrote {args.out}: {len(out)} tensors")
    return 0


if __name__ == "__main__":
    sys.exit(main())
