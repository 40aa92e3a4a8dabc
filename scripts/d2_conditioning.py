#!/usr/bin/env python3
"""How well-conditioned a synthesized network is, in Detectron2 itself: run IMAGE
(320-pixel short side) clean and with N(0, 1e-3) noise added to the network input, and
count the proposals and detections that survive the perturbation (IoU > 0.99, same
class). A chaotic network (deep random residual stacks) keeps few; then no
implementation can match another bit for bit, and the tests fall back to their
noise-floor rule. BRANCH_SCALE multiplies each bottleneck's last norm (conv3.norm weight
and bias) before loading: the experiment behind docs/PARITY.md's note on R101.

By hand, where Detectron2 is installed:

    python scripts/d2_conditioning.py CONFIG KEY.pkl IMAGE [BRANCH_SCALE]
"""
import pickle
import sys

import numpy as np
import torch
from PIL import Image

import d2model


def main():
    from detectron2.data import transforms as T
    from detectron2.structures import pairwise_iou

    cfg, pkl, image = sys.argv[1:4]
    branch_scale = float(sys.argv[4]) if len(sys.argv) > 4 else 1.0
    if branch_scale != 1.0:
        with open(pkl, "rb") as f:
            ck = pickle.load(f, encoding="latin1")
        for k in list(ck["model"]):
            if ".conv3.norm." in k and k.endswith((".weight", ".bias")):
                ck["model"][k] = ck["model"][k] * branch_scale
        pkl = pkl + f".branch{branch_scale}.pkl"
        with open(pkl, "wb") as f:
            pickle.dump(ck, f)
    model = d2model.load(cfg, pkl)
    rgb = np.asarray(Image.open(image).convert("RGB"))
    rgb = T.ResizeShortestEdge([320] * 2, 512).get_transform(rgb).apply_image(rgb)
    x = d2model.network_input(model, rgb)
    proposals = []
    model.proposal_generator.register_forward_hook(lambda m, i, o: proposals.append(o[0][0].proposal_boxes))
    torch.manual_seed(0)
    with torch.no_grad():
        clean = model.inference([{"image": x}], do_postprocess=False)[0]
        noisy = model.inference([{"image": x + 1e-3 * torch.randn_like(x)}], do_postprocess=False)[0]
    kept = 0
    if len(clean) and len(noisy):
        iou = pairwise_iou(clean.pred_boxes, noisy.pred_boxes)
        kept = sum(bool(((iou[i] > 0.99) & (noisy.pred_classes == clean.pred_classes[i])).any()) for i in range(len(clean)))
    p_iou = pairwise_iou(proposals[0], proposals[1])
    print(f"{cfg.split('/')[-1]} branch scale {branch_scale}: proposals {int((p_iou.max(1).values > 0.99).sum())} of "
          f"{len(proposals[0])} kept, detections {kept} of {len(clean)} kept")


if __name__ == "__main__":
    main()
