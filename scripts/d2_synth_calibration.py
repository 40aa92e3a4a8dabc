#!/usr/bin/env python3
"""Measures what `class_logit_gain` in crates/d2onnx/src/synth.rs records: for a
checkpoint synthesized with gain 1, the standard deviation of the box predictor's
class logits (bias excluded) over the proposals of IMAGE resized as tests/zoo_full_size.rs
does (short side 320, long side at most 512),
and how many (proposal, class) pairs clear the 0.05 score threshold. Cascade models
print one line per stage. The spread is linear in the gain, so a checkpoint written with
gain g measures g times the figure to record.

By hand, where Detectron2 is installed (not on PyPI, so not in CI):

    python scripts/d2_synth_calibration.py CONFIG(.yaml|.py) KEY.pkl IMAGE
"""
import sys

import numpy as np
import torch
from PIL import Image

import d2model


def main():
    from detectron2.data import transforms as T

    cfg, pkl, image = sys.argv[1:4]
    model = d2model.load(cfg, pkl)
    rgb = np.asarray(Image.open(image).convert("RGB"))
    rgb = T.ResizeShortestEdge([320] * 2, 512).get_transform(rgb).apply_image(rgb)
    logits = []
    predictors = model.roi_heads.box_predictor
    predictors = list(predictors) if isinstance(predictors, torch.nn.ModuleList) else [predictors]
    for p in predictors:
        p.cls_score.register_forward_hook(lambda m, i, o: logits.append((o - m.bias).detach().numpy()))
    with torch.no_grad():
        inst = model.inference([{"image": d2model.network_input(model, rgb)}], do_postprocess=False)[0]
    for stage, o in enumerate(logits):
        probs = torch.softmax(torch.as_tensor(o), 1).numpy()[:, :-1]
        print(f"{cfg.split('/')[-1]} stage {stage}: logit std {o[:, :-1].std():.4f} over {o.shape[0]} proposals, "
              f"{(probs > 0.05).sum()} pairs > 0.05, {len(inst)} detections")


if __name__ == "__main__":
    main()
