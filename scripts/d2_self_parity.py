#!/usr/bin/env python3
"""Detectron2 against its own fixture outputs, under parity.py's rule: can Detectron2
itself, run with another valid float32 kernel choice, meet the contract on a fixture
family? Where it cannot, the contract's bounds lie below that family's float32 noise
floor, and no other implementation can be held to them.

Runs the family's own config and model.pkl on each fixture's preprocessed input, once per
variant, and matches the result against the stored outputs exactly as
../shared/tools/parity.py does (same class, box IoU >= 0.99, |dscore| <= 1e-3; worst
mask_probs |d| over matched instances):

  default     torch's defaults, 2 threads (how the fixtures were made)
  no-mkldnn   oneDNN off: convolutions by torch's own im2col + GEMM kernels
  threads-1   one thread (another reduction split in GEMMs)

By hand, where Detectron2 is installed (it is not on PyPI, so not in CI):

    python scripts/d2_self_parity.py FIXTURE_FAMILY_DIR [VARIANT ...]
"""
import json
import os
import sys

import numpy as np
import torch


def load(family):
    """The fixture family's model (its own shrunk config) with its model.pkl."""
    from detectron2.checkpoint import DetectionCheckpointer

    cfg_path = os.path.join(family, "config.yaml")
    with open(cfg_path) as f:
        lazy = "_target_" in f.read()  # a LazyConfig dump; yacs configs have none
    if lazy:
        from detectron2.config import LazyConfig, instantiate

        model = instantiate(LazyConfig.load(cfg_path).model)
    else:
        from detectron2.config import get_cfg
        from detectron2.modeling import build_model

        cfg = get_cfg()
        cfg.set_new_allowed(True)
        cfg.merge_from_file(cfg_path)
        cfg.MODEL.DEVICE = "cpu"
        model = build_model(cfg)
    model.eval()
    DetectionCheckpointer(model).load(os.path.join(family, "model.pkl"))
    return model


def iou(a, b):
    x0 = np.maximum(a[0], b[:, 0]); y0 = np.maximum(a[1], b[:, 1])
    x1 = np.minimum(a[2], b[:, 2]); y1 = np.minimum(a[3], b[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    aa = (a[2] - a[0]) * (a[3] - a[1]); bb = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(aa + bb - inter, 1e-9)


def compare(family, name, out):
    """parity.py's matching, on Detectron2's raw (pre-paste) outputs."""
    gold = json.load(open(os.path.join(family, name + ".instances.json")))
    gprobs = np.load(os.path.join(family, name + ".mask_probs.npy"))
    pb = out.pred_boxes.tensor.numpy(); ps = out.scores.numpy(); pc = out.pred_classes.numpy()
    pm = out.pred_masks.numpy().reshape(len(pb), *gprobs.shape[1:]) if len(pb) else np.zeros((0,))
    used = np.zeros(len(pb), bool); matched = 0; worst_mask = 0.0; worst_score = 0.0
    for gi, g in enumerate(gold):
        if len(pb) == 0:
            break
        ious = iou(np.array(g["box_resized"], np.float32), pb)
        ok = (~used) & (pc == g["class_id"]) & (ious >= 0.99) & (np.abs(ps - g["score"]) <= 1e-3)
        if ok.any():
            j = int(np.argmax(np.where(ok, ious, -1))); used[j] = True; matched += 1
            worst_score = max(worst_score, abs(float(ps[j]) - g["score"]))
            worst_mask = max(worst_mask, float(np.abs(pm[j] - gprobs[g.get("raw_index", gi)]).max()))
    return len(gold), matched, int((~used).sum()), worst_score, worst_mask


def main():
    family = sys.argv[1]
    variants = sys.argv[2:] or ["default", "no-mkldnn", "threads-1"]
    model = load(family)
    names = sorted(f[: -len(".instances.json")] for f in os.listdir(family) if f.endswith(".instances.json"))
    for variant in variants:
        torch.backends.mkldnn.enabled = variant != "no-mkldnn"
        torch.set_num_threads(1 if variant == "threads-1" else 2)
        tot_g = tot_m = tot_e = 0; worst_mask = worst_score = 0.0
        for name in names:
            info = json.load(open(os.path.join(family, name + ".json")))
            pre = np.load(os.path.normpath(os.path.join(family, info["preprocessed"])))
            with torch.no_grad():
                out = model.inference([{"image": torch.as_tensor(pre)}], do_postprocess=False)[0]
            g, m, e, ws, wm = compare(family, name, out)
            tot_g += g; tot_m += m; tot_e += e
            worst_mask = max(worst_mask, wm); worst_score = max(worst_score, ws)
            print(f"  {variant} {name}: golden={g} predicted={len(out)} matched={m} extra={e} worst_mask={wm:.2e}")
        ok = tot_m / max(tot_g, 1) >= 0.98 and tot_e / max(tot_g, 1) <= 0.02 and worst_mask <= 1e-3
        print(f"{'PASS' if ok else 'FAIL'} {os.path.basename(os.path.normpath(family))} [{variant}] "
              f"matched={tot_m / max(tot_g, 1):.3f} extra={tot_e / max(tot_g, 1):.3f} "
              f"worst_score={worst_score:.2e} worst_mask={worst_mask:.2e}", flush=True)


if __name__ == "__main__":
    main()
