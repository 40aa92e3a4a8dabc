#!/usr/bin/env python3
"""Write the reference `zoo eval` is tested against: a seeded, deliberately awkward
COCO dataset and results file, and what pycocotools makes of them.

    coco_eval_reference.py OUT_DIR [--seed 3]

OUT_DIR gets instances.json (polygons, compressed and uncompressed RLE, crowd
regions, images without objects, a category without any), results.json
(boxes and RLE masks, tied scores, more than 100 detections on an image,
detections far from any object, some with only a mask) and expected.json:
pycocotools' 12 stats and per-category AP for bbox and segm (with
Detectron2's step of dropping `bbox` from mask results), and pycocotools'
rasterisation of every ground-truth polygon and box as compressed RLE.
Needs numpy and pycocotools.
"""
import argparse
import contextlib
import copy
import io
import json
import os

import numpy as np
from pycocotools import mask as mask_util
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval


def rle_of(m):
    r = mask_util.encode(np.asfortranarray(m.astype(np.uint8)))
    r["counts"] = r["counts"].decode("ascii")
    return r


def blob(rng, h, w):
    """A random filled ellipse-ish mask and its bbox."""
    cy, cx = rng.uniform(0, h), rng.uniform(0, w)
    ry, rx = rng.uniform(2, h / 3), rng.uniform(2, w / 3)
    yy, xx = np.mgrid[0:h, 0:w]
    m = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    return m


def uncompressed(m):
    flat = m.astype(np.uint8).flatten(order="F")
    counts, cur, run = [], 0, 0
    for v in flat:
        if v != cur:
            counts.append(run)
            cur, run = v, 0
        run += 1
    counts.append(run)
    return {"size": list(m.shape), "counts": [int(c) for c in counts]}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir")
    ap.add_argument("--seed", type=int, default=3)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    os.makedirs(a.out_dir, exist_ok=True)

    cats = [{"id": i, "name": n} for i, n in [(1, "a"), (3, "b"), (7, "c"), (9, "never")]]
    images, anns, results = [], [], []
    for img_id in range(1, 13):
        h, w = int(rng.integers(40, 120)), int(rng.integers(40, 160))
        images.append({"id": img_id * 10, "file_name": f"{img_id}.png", "height": h, "width": w})
        if img_id == 5:
            continue  # an image without objects (its detections are all false positives)
        truths = []
        for _ in range(int(rng.integers(1, 7))):
            cat = int(rng.choice([1, 3, 7]))
            kind = rng.integers(0, 5)
            crowd = int(rng.random() < 0.12)
            if kind == 0 and not crowd:
                # Polygons (one or two), rasterised by pycocotools.
                polys = []
                for _ in range(int(rng.integers(1, 3))):
                    cx, cy = rng.uniform(0, w), rng.uniform(0, h)
                    n = int(rng.integers(3, 9))
                    ang = np.sort(rng.uniform(0, 2 * np.pi, n))
                    rad = rng.uniform(3, min(h, w) / 2.5, n)
                    pts = np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], 1).flatten()
                    polys.append([round(float(v), 2) for v in pts])
                seg = polys
                m = mask_util.decode(mask_util.merge(mask_util.frPyObjects(polys, h, w))).astype(bool)
            else:
                m = blob(rng, h, w)
                seg = uncompressed(m) if (kind == 1 or crowd) else rle_of(m)
            if m.sum() == 0:
                continue
            x, y, bw, bh = (float(v) for v in mask_util.toBbox(mask_util.encode(np.asfortranarray(m.astype(np.uint8)))))
            anns.append({"id": len(anns) + 1, "image_id": img_id * 10, "category_id": cat, "segmentation": seg,
                         "area": float(m.sum()) * (1.0 if rng.random() < 0.8 else float(rng.uniform(0.5, 60))),
                         "bbox": [x, y, bw, bh], "iscrowd": crowd})
            truths.append((cat, m))
        # Detections: jittered truths, wrong classes, background junk, tied scores.
        n_det = 130 if img_id == 7 else int(rng.integers(0, 25))
        for k in range(n_det):
            if truths and rng.random() < 0.6:
                cat, m = truths[int(rng.integers(0, len(truths)))]
                dy, dx = int(rng.integers(-3, 4)), int(rng.integers(-3, 4))
                m = np.roll(np.roll(m, dy, 0), dx, 1)
                if rng.random() < 0.2:
                    cat = int(rng.choice([1, 3, 7]))
            else:
                cat = int(rng.choice([1, 3, 7]))
                m = blob(rng, h, w)
            if m.sum() == 0:
                continue
            r = rle_of(m)
            bb = [float(v) for v in mask_util.toBbox(mask_util.encode(np.asfortranarray(m.astype(np.uint8))))]
            bb = [bb[0] + float(rng.normal(0, 1.5)), bb[1] + float(rng.normal(0, 1.5)), max(bb[2] + float(rng.normal(0, 2)), 0.5), max(bb[3] + float(rng.normal(0, 2)), 0.5)]
            score = float(np.round(rng.uniform(0.05, 1.0), 1 if rng.random() < 0.3 else 6))
            det = {"image_id": img_id * 10, "category_id": cat, "segmentation": r, "score": score}
            if not (img_id == 9 and k % 3 == 0):
                det["bbox"] = bb  # image 90: some detections give only a mask
            results.append(det)

    gt = {"images": images, "annotations": anns, "categories": cats}
    with open(os.path.join(a.out_dir, "instances.json"), "w") as f:
        json.dump(gt, f)
    with open(os.path.join(a.out_dir, "results.json"), "w") as f:
        json.dump(results, f)

    expected = {"pycocotools": __import__("pycocotools").__version__ if hasattr(__import__("pycocotools"), "__version__") else "?"}
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(os.path.join(a.out_dir, "instances.json"))
        for iou_type in ("bbox", "segm"):
            res = copy.deepcopy(results)
            if iou_type == "segm":
                for r in res:
                    r.pop("bbox", None)  # as Detectron2's COCOEvaluator does
            else:
                # pycocotools' loadRes takes the box branch only when the first result
                # has a bbox; the mask-only ones get a box from their mask (toBbox).
                for r in res:
                    if "bbox" not in r:
                        r["bbox"] = [float(v) for v in mask_util.toBbox(r["segmentation"])]
                        r["_mask_area"] = True
            dt = coco_gt.loadRes(res)
            if iou_type == "bbox":
                for ann in dt.anns.values():
                    if ann.pop("_mask_area", False):
                        ann["area"] = float(mask_util.area(ann["segmentation"]))
            e = COCOeval(coco_gt, dt, iou_type)
            e.evaluate()
            e.accumulate()
            e.summarize()
            prec = e.eval["precision"]
            per_cat = {}
            for k, cat_id in enumerate(e.params.catIds):
                p = prec[:, :, k, 0, -1]
                per_cat[str(cat_id)] = float(np.mean(p[p > -1])) if (p > -1).any() else -1.0
            expected[iou_type] = {"stats": [float(v) for v in e.stats], "per_category": per_cat}
    expected["rasterised"] = {}
    for ann in anns:
        seg = ann["segmentation"]
        if isinstance(seg, list):
            img = next(i for i in images if i["id"] == ann["image_id"])
            r = mask_util.merge(mask_util.frPyObjects(seg, img["height"], img["width"]))
            expected["rasterised"][str(ann["id"])] = r["counts"].decode("ascii")
    boxes = {}
    for i, b in enumerate([[1.0, 1.0, 5.0, 3.0], [0.3, 2.6, 7.2, 4.9], [10.5, 0.0, 3.5, 8.0]]):
        r = mask_util.frPyObjects(np.array([b], dtype=np.float64), 20, 30)[0]
        boxes[str(i)] = {"box": b, "counts": r["counts"].decode("ascii")}
    expected["boxes_20x30"] = boxes
    with open(os.path.join(a.out_dir, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
    print(f"{len(images)} images, {len(anns)} annotations, {len(results)} detections; "
          f"bbox AP {expected['bbox']['stats'][0]:.4f}, segm AP {expected['segm']['stats'][0]:.4f}")


if __name__ == "__main__":
    main()
