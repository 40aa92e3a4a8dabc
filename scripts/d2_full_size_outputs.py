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
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.data import transforms as T

    torch.set_num_threads(2)
    if cfg_path.endswith(".py"):
        from detectron2.config import LazyConfig, instantiate

        model = instantiate(LazyConfig.load(cfg_path).model)
    else:
        from detectron2.config import get_cfg
        from detectron2.modeling import build_model

        cfg = get_cfg()
        cfg.merge_from_file(cfg_path)
        cfg.MODEL.DEVICE = "cpu"
        model = build_model(cfg)
    model.eval()
    DetectionCheckpointer(model).load(pkl)
    rgb = np.asarray(Image.open(image).convert("RGB"))
    rgb = T.ResizeShortestEdge([int(min_size)] * 2, int(max_size)).get_transform(rgb).apply_image(rgb)
    chw = (rgb if model.input_format == "RGB" else rgb[:, :, ::-1]).astype("float32").transpose(2, 0, 1).copy()
    with torch.no_grad():
        inst = model.inference([{"image": torch.as_tensor(chw)}], do_postprocess=False)[0]
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
