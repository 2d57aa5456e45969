"""tests/test_parity.py — vita's encoder equals the reference libraries' own forward passes.

timm's ViT-S/16 and ViT-B/16 (random init, fixed seed, pretrained=False) and MONAI's 3D ViT
(classification=True: a cls token without position, MONAI's LN eps 1e-5, no qkv bias), each:
(this file: ViT-S/16 and a 4-block MONAI ViT; tests/slow_parity.py: ViT-B/16 and UNETR's ViT-B
encoder at 96^3, through main("slow"))
state dict -> tools/convert_checkpoint.py -> `vita features --weights W --data D.h5 --layers
1..12,norm` == the library's forward on the same inputs: NMSE < 1e-10 of the pooled features
(patch-token mean) at every block output and at the final norm. The reference is the library's
forward in float64 (model.double()); its float32 forward is printed beside it: fp32 rounding
puts NMSE(fp32, fp64) at ~1e-14..1e-12 for these depths, so 1e-10 is 100x+ above what a correct
fp32 implementation shows and far below the O(1e-2..1) of any mapping error. vita's NMSE
against the library's own fp32 run is printed too (same order: both are fp32).
Also tools/export_checkpoint.py: a converted timm model with 4 registers and LayerScale,
exported and loaded into timm's VisionTransformer (strict), gives vita's features.

The libraries come from scripts/setup-peers.sh (a venv next to Debian's torch 1.13; run here
when missing). If they cannot be installed, this test says so and checks against faithful
re-implementations written below (timm: tests/oracle/vit_oracle.py; MONAI: monai_forward).
"""
import collections
import os
import subprocess
import shutil
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import convert_harness as H  # noqa: E402

T = H.Checks()
NMSE_MAX = 1e-10
VENV = os.environ.get("VITA_PEERS_VENV", os.path.join(H.ROOT, ".venv-peers"))


def load_peers():
    """-> (timm or None, monai ViT class or None, note). Runs scripts/setup-peers.sh only when
    the venv does not import them already."""
    site = os.path.join(VENV, "lib", f"python{sys.version_info[0]}.{sys.version_info[1]}", "site-packages")
    note = []

    def try_import():
        if os.path.isdir(site) and site not in sys.path:
            sys.path.insert(0, site)
        try:
            import timm
            from monai.networks.nets import ViT
            return timm, ViT
        except Exception as e:  # noqa: BLE001 (any import failure: install, else re-implement)
            note.append(f"{type(e).__name__}: {e}")
            return None, None

    timm, vit = try_import()
    if timm is None:
        p = subprocess.run(["sh", os.path.join(H.ROOT, "scripts", "setup-peers.sh"), VENV],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        note += p.stdout.decode(errors="replace").strip().splitlines()[-1:]
        for m in [m for m in sys.modules if m.split(".")[0] in ("timm", "monai", "torchvision")]:
            del sys.modules[m]
        timm, vit = try_import() if p.returncode == 0 else (None, None)
    if timm is None:
        try:
            import timm
        except Exception:  # noqa: BLE001
            timm = None
        try:
            from monai.networks.nets import ViT as vit
        except Exception:  # noqa: BLE001
            vit = None
    return timm, vit, "; ".join(n for n in note if n)


# ---- faithful re-implementations (used only when the libraries are missing) -----------------
def timm_state_dict_reimpl(cfg, seed):
    """timm-named random weights (timm's init: trunc-normal 0.02 matrices and tokens, zero
    biases, unit norms) and a forward: vit_oracle.ViT is timm's VisionTransformer semantics"""
    torch.manual_seed(seed)
    sd = collections.OrderedDict()
    for name, shape in H.vit_layout.table(cfg):
        if name.endswith(".bias"):
            sd[name] = torch.zeros(shape)
        elif "norm" in name and name.endswith("weight"):
            sd[name] = torch.ones(shape)
        else:
            sd[name] = torch.nn.init.trunc_normal_(torch.empty(shape), std=0.02)
    return sd


def monai_forward(sd, x, heads, eps=1e-5):
    """MONAI ViT (classification=True) forward from its state dict: conv patch embedding +
    position_embeddings (patches only), cls token prepended after, pre-norm TransformerBlocks
    (SABlock: fused qkv without bias, (qkv, heads, head_dim) output layout, out_proj; MLPBlock
    linear1 / GELU / linear2), final LayerNorm. -> (out, [block outputs])"""
    F = torch.nn.functional
    h = F.conv3d(x, sd["patch_embedding.patch_embeddings.weight"], sd["patch_embedding.patch_embeddings.bias"],
                 stride=sd["patch_embedding.patch_embeddings.weight"].shape[2:])
    h = h.flatten(2).transpose(1, 2) + sd["patch_embedding.position_embeddings"]
    h = torch.cat([sd["cls_token"].expand(h.shape[0], -1, -1), h], 1)
    B, N, D = h.shape
    blocks, i = [], 0
    while f"blocks.{i}.norm1.weight" in sd:
        p = f"blocks.{i}."
        y = F.layer_norm(h, (D,), sd[p + "norm1.weight"], sd[p + "norm1.bias"], eps)
        qkv = F.linear(y, sd[p + "attn.qkv.weight"]).reshape(B, N, 3, heads, D // heads).permute(2, 0, 3, 1, 4)
        a = torch.softmax(qkv[0] @ qkv[1].transpose(-2, -1) * (D // heads) ** -0.5, -1) @ qkv[2]
        h = h + F.linear(a.transpose(1, 2).reshape(B, N, D), sd[p + "attn.out_proj.weight"], sd[p + "attn.out_proj.bias"])
        y = F.layer_norm(h, (D,), sd[p + "norm2.weight"], sd[p + "norm2.bias"], eps)
        y = F.linear(F.gelu(F.linear(y, sd[p + "mlp.linear1.weight"], sd[p + "mlp.linear1.bias"])),
                     sd[p + "mlp.linear2.weight"], sd[p + "mlp.linear2.bias"])
        h = h + y
        blocks.append(h)
        i += 1
    return F.layer_norm(h, (D,), sd["norm.weight"], sd["norm.bias"], eps), blocks


# ---- library forwards -> pooled features per layer ----------------------------------------------
def timm_layers(model, x):
    """timm's own modules in forward_features order, keeping every block output"""
    h = model.patch_embed(x)
    h = model._pos_embed(h)
    h = model.norm_pre(h)
    blocks = []
    for blk in model.blocks:
        h = blk(h)
        blocks.append(h)
    return model.norm(h), blocks


def pooled_layers(out, blocks, skip):
    res = {str(i + 1): b[:, skip:].mean(1).double().numpy() for i, b in enumerate(blocks)}
    res["norm"] = out[:, skip:].mean(1).double().numpy()
    return res


def compare(name, feats, ref64, ref32):
    worst = max(H.nmse(feats[k], ref64[k]) for k in ref64)
    own = max(H.nmse(ref32[k], ref64[k]) for k in ref64)
    vs32 = max(H.nmse(feats[k], ref32[k]) for k in ref64)
    T.check(f"{name}: vita vs float64 reference, worst of {len(ref64)} layers NMSE (reference's "
            f"own fp32: {own:.2g}; vita vs reference fp32: {vs32:.2g})", worst, NMSE_MAX)


def run_vita(tmp, sd, flags, images, channels, layers):
    src = os.path.join(tmp, "src.pth")
    torch.save(sd, src)
    w = os.path.join(tmp, "w.safetensors")
    rc, log = H.convert(src, w, "--quiet", *flags)
    if not T.true("convert exits 0", rc == 0, log[-500:]):
        return None
    data = os.path.join(tmp, "d.h5")
    H.write_dataset(data, images, channels)
    feats, log = H.features(w, data, layers, os.path.join(tmp, "f.h5"))
    T.true("vita features runs", feats is not None, log[-500:])
    return feats


def timm_case(timm, tmp, name, arch, seed):
    g = np.random.default_rng(seed)
    images = g.standard_normal((2, 3, 1, 224, 224)).astype(np.float32)
    x = torch.from_numpy(images[:, :, 0])
    cfg = H.vit_layout.preset_config(arch)
    if timm:
        torch.manual_seed(seed)
        model = timm.create_model({"vit-s16": "vit_small_patch16_224", "vit-b16": "vit_base_patch16_224"}[arch],
                                  pretrained=False).eval()
        sd = model.state_dict()
        with torch.no_grad():
            ref64 = pooled_layers(*timm_layers(model.double(), x.double()), 1)
            ref32 = pooled_layers(*timm_layers(model.float(), x.float()), 1)
        # the fallback's faithfulness, on the library's own weights (float64 both: ~1e-30)
        mine = H.reference(sd, cfg, x.numpy(), np.zeros((0, 2)))
        T.check(f"{name}: re-implementation (vit_oracle) vs timm, float64 NMSE",
                max(H.nmse(mine[k], ref64[k]) for k in ref64), 1e-24)
    else:
        name += " [re-implementation]"
        sd = timm_state_dict_reimpl(cfg, seed)
        ext = np.zeros((0, 2))
        ref64 = H.reference(sd, cfg, x.numpy(), ext)
        ref32 = H.reference(sd, cfg, x.numpy(), ext, torch.float32)
    feats = run_vita(tmp, sd, ["--preset", arch, "--channels", "r,g,b"], images, ["r", "g", "b"],
                     H.layers_arg(12))
    if feats is not None:
        compare(name, feats, ref64, ref32)


MONAI_SIZES = {  # name: (img, patch, hidden, mlp, layers, heads)
    "small": ((32, 64, 64), (8, 16, 16), 192, 768, 4, 3),
    "unetr": ((96, 96, 96), (16, 16, 16), 768, 3072, 12, 12),   # UNETR's default encoder
}


def monai_case(vit_cls, tmp, seed, size):
    img, patch, hid, mlp, L, nh = MONAI_SIZES[size]
    g = np.random.default_rng(seed)
    images = g.standard_normal((2, 1) + img).astype(np.float32)
    x = torch.from_numpy(images)
    kw = dict(in_channels=1, img_size=img, patch_size=patch, hidden_size=hid, mlp_dim=mlp,
              num_layers=L, num_heads=nh, classification=True)
    torch.manual_seed(seed)
    if vit_cls:
        model = vit_cls(**kw).eval()
        sd = model.state_dict()
        # MONAI inits the cls token to zeros and biases to zero: randomise them so the test
        # sees the cls token's missing position and every bias
        with torch.no_grad():
            for k, v in sd.items():
                if k == "cls_token" or k.endswith(".bias"):
                    v.copy_(torch.randn(v.shape) * 0.1)
        def fwd(m, inp):
            # with classification=True MONAI returns the classifier's output: take the final
            # norm of the last block output, as its forward computes it before the head
            _, blocks = m(inp)
            return m.norm(blocks[-1]), blocks
    else:
        model = None
        sd = collections.OrderedDict()
        P = int(np.prod([i // p for i, p in zip(img, patch)]))
        shapes = {"cls_token": (1, 1, hid), "patch_embedding.position_embeddings": (1, P, hid),
                  "patch_embedding.patch_embeddings.weight": (hid, 1) + patch,
                  "patch_embedding.patch_embeddings.bias": (hid,), "norm.weight": (hid,), "norm.bias": (hid,)}
        for i in range(L):
            p = f"blocks.{i}."
            shapes.update({p + "mlp.linear1.weight": (mlp, hid), p + "mlp.linear1.bias": (mlp,),
                           p + "mlp.linear2.weight": (hid, mlp), p + "mlp.linear2.bias": (hid,),
                           p + "norm1.weight": (hid,), p + "norm1.bias": (hid,), p + "norm2.weight": (hid,),
                           p + "norm2.bias": (hid,), p + "attn.qkv.weight": (3 * hid, hid),
                           p + "attn.out_proj.weight": (hid, hid), p + "attn.out_proj.bias": (hid,)})
        for k, s in shapes.items():
            sd[k] = (1.0 + 0.1 * torch.randn(s)) if "norm" in k and k.endswith("weight") else \
                torch.randn(s) * (0.1 if len(s) == 1 or k.endswith("embeddings") or k == "cls_token"
                                  else 1.0 / np.sqrt(np.prod(s[1:])))
    with torch.no_grad():
        if model is not None:
            out64, blk64 = fwd(model.double(), x.double())
            out32, blk32 = fwd(model.float(), x.float())
        else:
            out64, blk64 = monai_forward({k: v.double() for k, v in sd.items()}, x.double(), nh)
            out32, blk32 = monai_forward(sd, x.float(), nh)
    ref64, ref32 = pooled_layers(out64, blk64, 1), pooled_layers(out32, blk32, 1)
    label = f"MONAI 3D ViT ({'x'.join(map(str, img))}, patch {'x'.join(map(str, patch))}, dim {hid}, depth {L}, cls)"
    if model is not None:
        with torch.no_grad():
            mine = pooled_layers(*monai_forward({k: v.double() for k, v in sd.items()}, x.double(), nh), 1)
        T.check(f"{label}: re-implementation (monai_forward) vs MONAI, float64 NMSE",
                max(H.nmse(mine[k], ref64[k]) for k in ref64), 1e-24)
    else:
        label += " [re-implementation]"
    feats = run_vita(tmp, sd, ["--heads", str(nh), "--channels", "t2w"], images, ["t2w"], H.layers_arg(L))
    if feats is not None:
        compare(label, feats, ref64, ref32)


def export_case(timm, tmp, seed):
    """a timm ViT with 4 registers and LayerScale -> vita -> export -> timm (strict) == vita"""
    torch.manual_seed(seed)
    kw = dict(img_size=64, patch_size=16, embed_dim=96, depth=3, num_heads=3, reg_tokens=4,
              init_values=0.5, num_classes=0)
    model = timm.models.vision_transformer.VisionTransformer(**kw)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith("gamma") or n.endswith("bias") or n in ("reg_token", "cls_token"):
                p.copy_(torch.randn(p.shape) * 0.3 + (0.5 if n.endswith("gamma") else 0))
    src = os.path.join(tmp, "reg.pth")
    torch.save(model.state_dict(), src)
    w = os.path.join(tmp, "reg.safetensors")
    rc, log = H.convert(src, w, "--quiet", "--heads", "3")
    ex = os.path.join(tmp, "reg_export.pth")
    rc2, log2 = H.export(w, ex, "--quiet")
    if not T.true("export: convert + export exit 0", rc == 0 and rc2 == 0, (log + log2)[-500:]):
        return
    meta = H.checkpoint_io.read_safetensors(w)[1]
    import export_checkpoint
    import json
    cfg = json.loads(meta["model"])
    m2 = timm.models.vision_transformer.VisionTransformer(**export_checkpoint.timm_kwargs(cfg)).eval()
    res = m2.load_state_dict(torch.load(ex, weights_only=True), strict=True)
    T.true("export: timm loads the exported state dict strictly", not res.missing_keys and not res.unexpected_keys)
    g = np.random.default_rng(seed)
    images = g.standard_normal((2, 3, 1, 64, 64)).astype(np.float32)
    data = os.path.join(tmp, "reg.h5")
    H.write_dataset(data, images, cfg["channels"])
    feats, log = H.features(w, data, H.layers_arg(3), os.path.join(tmp, "reg_f.h5"))
    if not T.true("export: vita features runs", feats is not None, log[-500:]):
        return
    x = torch.from_numpy(images[:, :, 0])
    with torch.no_grad():
        ref64 = pooled_layers(*timm_layers(m2.double(), x.double()), 5)
        ref32 = pooled_layers(*timm_layers(m2.float(), x.float()), 5)
    compare("export: timm forward of the exported checkpoint", feats, ref64, ref32)


def main(tier="fast"):
    """fast: ViT-S/16, a 4-block MONAI 3D ViT, the export check; slow: ViT-B/16 and UNETR's
    ViT-B 3D encoder (96^3)"""
    torch.set_num_threads(2)
    timm, vit_cls, note = load_peers()
    print(f"peers: timm {'%s (the library)' % timm.__version__ if timm else 'MISSING: re-implementation'}, "
          f"monai {'(the library)' if vit_cls else 'MISSING: re-implementation'}" + (f"; {note}" if note else ""))
    tmp = tempfile.mkdtemp(prefix="vita_parity_")
    try:   # its weights and feature files are hundreds of MB (ViT-B)
        if tier == "fast":
            timm_case(timm, tmp, "timm ViT-S/16 (224^2)", "vit-s16", 1)
            monai_case(vit_cls, tmp, 3, "small")
            if timm:
                export_case(timm, tmp, 4)
            else:
                print("export: skipped the timm load (timm missing); tests/test_convert.py checks the round trip")
        else:
            timm_case(timm, tmp, "timm ViT-B/16 (224^2)", "vit-b16", 2)
            monai_case(vit_cls, tmp, 3, "unetr")
        T.finish()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
