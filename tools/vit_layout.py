"""tools/vit_layout.py — vita's ViT encoder layout in Python, for the checkpoint tools.

Mirrors models/vit_config.c (presets; the config JSON that vit_config_from_json reads) and
models/vit.c build_table (canonical parameter names = timm's, in vita's table order, with their
shapes). The tests run every preset through `vita info`/`vita features`, so a drift between the
two sides shows up as a failed load.
"""
import json

PRESETS = {
    "vit-tiny-3d": dict(spatial_dims=3, img_size=[32, 64, 64], patch=[8, 16, 16],
                        channels=["t2w", "adc", "hbv"], dim=128, depth=4, heads=4),
    "vit-s16": dict(spatial_dims=2, img_size=[224, 224], patch=[16, 16], channels=["r", "g", "b"],
                    dim=384, depth=12, heads=6),
    "vit-b16": dict(spatial_dims=2, img_size=[224, 224], patch=[16, 16], channels=["r", "g", "b"],
                    dim=768, depth=12, heads=12),
    "profound-vit-b": dict(spatial_dims=3, img_size=[64, 256, 256], patch=[16, 32, 32],
                           channels=["t2w", "hbv", "adc"], dim=768, depth=12, heads=12,
                           pos_embed="sincos"),
    "provicnet-vit-s14": dict(spatial_dims=2, img_size=[448, 448], patch=[14, 14],
                              channels=["t2w_prev", "t2w", "t2w_next"], dim=384, depth=12, heads=6,
                              num_registers=4, layerscale_init=1e-5,
                              extra_tokens=["slice_index", "slice_count"]),
}

DEFAULTS = dict(preset="", mlp_ratio=4.0, qkv_bias=True, ln_eps=1e-6, cls_token=True,
                num_registers=0, extra_tokens=[], pos_embed="learned", layerscale_init=0.0,
                drop_path=0.0)

KEYS = ["preset", "spatial_dims", "img_size", "patch", "in_chans", "channels", "dim", "depth",
        "heads", "mlp_ratio", "qkv_bias", "ln_eps", "cls_token", "num_registers", "extra_tokens",
        "pos_embed", "layerscale_init", "drop_path"]


def preset_config(name):
    if name not in PRESETS:
        raise KeyError(f"unknown preset '{name}'; presets: {', '.join(PRESETS)}")
    c = dict(DEFAULTS)
    c.update(PRESETS[name])
    c["preset"] = name
    c["in_chans"] = len(c["channels"])
    return c


def config_json(c):
    """the "model" metadata string, keys in vit_config_to_json's order"""
    return json.dumps({k: c[k] for k in KEYS}, separators=(",", ":"))


def check_config(c):
    """-> None, or a one-line reason (the checks of vit_config_check that the tools can hit)"""
    nd = c["spatial_dims"]
    if nd not in (2, 3):
        return "spatial_dims must be 2 or 3"
    if len(c["img_size"]) != nd or len(c["patch"]) != nd:
        return f"img_size and patch need {nd} sizes"
    for a, (s, p) in enumerate(zip(c["img_size"], c["patch"])):
        if p <= 0 or s <= 0 or s % p:
            return f"img_size {c['img_size']} is not a multiple of patch {c['patch']} (axis {a})"
    if c["dim"] % c["heads"]:
        return f"dim {c['dim']} is not a multiple of heads {c['heads']}"
    if len(c["channels"]) != c["in_chans"]:
        return f"{len(c['channels'])} channel names for in_chans {c['in_chans']}"
    if c["pos_embed"] == "sincos" and c["dim"] % (2 * nd):
        return f"pos_embed sincos needs dim divisible by {2 * nd}"
    return None


def grid(c):
    return [s // p for s, p in zip(c["img_size"], c["patch"])]


def table(c):
    """[(canonical name, shape)] in vita's parameter-table order (models/vit.c build_table)"""
    D, L = c["dim"], c["depth"]
    hid = int(round(D * c["mlp_ratio"]))
    P = 1
    for g in grid(c):
        P *= g
    ncls = 1 if c["cls_token"] else 0
    t = [("patch_embed.proj.weight", [D, c["in_chans"]] + list(c["patch"])),
         ("patch_embed.proj.bias", [D])]
    if c["cls_token"]:
        t.append(("cls_token", [1, 1, D]))
    if c["num_registers"]:
        t.append(("reg_token", [1, c["num_registers"], D]))
    t.append(("pos_embed", [1, ncls + P, D]))
    for e in c["extra_tokens"]:
        t += [(f"extra_tokens.{e}.weight", [D, 1]), (f"extra_tokens.{e}.bias", [D])]
    ls = c["layerscale_init"] > 0
    for i in range(L):
        p = f"blocks.{i}."
        t += [(p + "norm1.weight", [D]), (p + "norm1.bias", [D]), (p + "attn.qkv.weight", [3 * D, D])]
        if c["qkv_bias"]:
            t.append((p + "attn.qkv.bias", [3 * D]))
        t += [(p + "attn.proj.weight", [D, D]), (p + "attn.proj.bias", [D])]
        if ls:
            t.append((p + "ls1.gamma", [D]))
        t += [(p + "norm2.weight", [D]), (p + "norm2.bias", [D]),
              (p + "mlp.fc1.weight", [hid, D]), (p + "mlp.fc1.bias", [hid]),
              (p + "mlp.fc2.weight", [D, hid]), (p + "mlp.fc2.bias", [D])]
        if ls:
            t.append((p + "ls2.gamma", [D]))
    t += [("norm.weight", [D]), ("norm.bias", [D])]
    return t
