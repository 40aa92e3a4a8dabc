#!/usr/bin/env python3
"""Detectron2's own outputs for the full-size synthesized checkpoints that
tests/zoo_full_size.rs converts and runs: the reference data in
tests/fixtures/full_size/<alias>/ (outputs.json, mask_probs.npy).

By hand, where Detectron2 is installed (it is not on PyPI, so CI cannot build it):

    zoo synth KEY --seed 3 --out KEY.pkl      # the test's checkpoint, byte for byte
    python scripts/d2_full_size_outputs.py CONFIG KEY.pkl IMAGE MIN MAX OUT_DIR

CONFIG is the zoo config (.yaml or LazyConfig .py) from Detectron2's configs/. The
image is resized with Detectron2's ResizeShortestEdge(MIN, MAX) (Pillow bilinear, as
the engine does bit for bit) and run through model.inference(..., do_postprocess=False)
on CPU in float32, 2 threads: boxes in the resized frame, scores, classes, and the
predicted class's mask probabilities [N, M, M].
"""
import json
import os
import sys

import numpy as np
import torch
from PIL import Image


def main():
    cfg_path, pkl, image, min_size, max_size, out = sys.argv[1:7]
    import detectron2
    from detectron2.data import transforms as T

    import d2model

    model = d2model.load(cfg_path, pkl)
    rgb = np.asarray(Image.open(image).convert("RGB"))
    rgb = T.ResizeShortestEdge([int(min_size)] * 2, int(max_size)).get_transform(rgb).apply_image(rgb)
    with torch.no_grad():
        inst = model.inference([{"image": d2model.network_input(model, rgb)}], do_postprocess=False)[0]
    os.makedirs(out, exist_ok=True)
    np.save(os.path.join(out, "mask_probs.npy"), inst.pred_masks.numpy()[:, 0].astype(np.float32))
    with open(os.path.join(out, "outputs.json"), "w") as f:
        json.dump(
            {
                "config": cfg_path.split("configs/")[-1],
                "image": os.path.basename(image),
                "resized_hw": list(rgb.shape[:2]),
                "synth_seed": 3,
                "detectron2": detectron2.__version__,
                "torch": torch.__version__,
                "boxes": inst.pred_boxes.tensor.numpy().tolist(),
                "scores": inst.scores.numpy().tolist(),
                "classes": inst.pred_classes.numpy().tolist(),
            },
            f,
        )
        f.write("\n")


if __name__ == "__main__":
    main()
