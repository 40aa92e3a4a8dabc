#!/usr/bin/env python3
"""How many confident instances of one COCO results file another one keeps.

    detections_agreement.py REFERENCE.json OTHER.json [--score 0.5]

Both files are COCO results (`zoo eval --detections FILE`: image_id, category_id,
bbox as x, y, w, h, score). For every REFERENCE detection scoring at least --score,
the best box IoU among OTHER's detections of the same image and class; prints how
many reach IoU 0.99 and 0.9, and the largest score change among those at 0.9 or
above. docs/BENCHMARKS.md's bf16 table ("instances kept", "worst score change") is
this, with REFERENCE the f32 model's detections and OTHER the bf16-emulated one's.
Standard library only.
"""
import argparse
import json
from collections import defaultdict


def box_iou(a, b):
    ax1, ay1 = a[0] + a[2], a[1] + a[3]
    bx1, by1 = b[0] + b[2], b[1] + b[3]
    w = min(ax1, bx1) - max(a[0], b[0])
    h = min(ay1, by1) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("reference")
    ap.add_argument("other")
    ap.add_argument("--score", type=float, default=0.5, help="reference detections below this are not counted")
    a = ap.parse_args()
    reference = json.load(open(a.reference))
    by_scene_class = defaultdict(list)
    for d in json.load(open(a.other)):
        by_scene_class[(d["image_id"], d["category_id"])].append(d)

    confident = [d for d in reference if d["score"] >= a.score]
    kept_099 = kept_09 = 0
    worst_score_change = 0.0
    for d in confident:
        best_iou, best = 0.0, None
        for o in by_scene_class[(d["image_id"], d["category_id"])]:
            iou = box_iou(d["bbox"], o["bbox"])
            if iou > best_iou:
                best_iou, best = iou, o
        if best_iou >= 0.99:
            kept_099 += 1
        if best_iou >= 0.9:
            kept_09 += 1
            worst_score_change = max(worst_score_change, abs(d["score"] - best["score"]))
    n = len(confident)
    print(f"reference detections with score >= {a.score}: {n}")
    print(f"kept at box IoU >= 0.99 (same scene and class): {kept_099} ({kept_099 / max(n, 1):.1%})")
    print(f"kept at box IoU >= 0.9: {kept_09}")
    print(f"worst score change among those at IoU >= 0.9: {worst_score_change:.3f}")


if __name__ == "__main__":
    main()
