#!/usr/bin/env python3
"""Write the synthetic instance-segmentation dataset the trained sample model learns.

Seeded and deterministic: the same seed and counts write the same bytes (PNG
images, COCO JSON with RLE masks). Five object classes of distinct shape; each
instance has its own size, colour, texture and rotation; later objects occlude
earlier ones (masks are what stays visible); backgrounds are cluttered with
gradients, noise and unannotated distractor strokes, so that colour alone never
tells an object from the background.

    make_dataset.py OUT_DIR [--seed 7] [--train 1200] [--val 60] [--size 320]

writes OUT_DIR/{train,val}/*.png and OUT_DIR/{train,val}/instances.json.
Needs numpy, pillow and pycocotools (for the RLE encoding only).
"""
import argparse
import json
import math
import os

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from pycocotools import mask as mask_util

CLASSES = ["disc", "square", "triangle", "star", "ring"]
# The class file Supervisely's training app writes (info/model_classes.json); zoo import reads it.
COLOURS = ["#E6194B", "#3CB44B", "#4363D8", "#F58231", "#911EB4"]


def polygon(kind, cx, cy, r, angle):
    """Vertices of a shape centred at (cx, cy) with circumradius r, rotated by angle."""
    if kind == "square":
        pts = [(math.cos(angle + math.pi / 4 + k * math.pi / 2), math.sin(angle + math.pi / 4 + k * math.pi / 2)) for k in range(4)]
    elif kind == "triangle":
        pts = [(math.cos(angle + k * 2 * math.pi / 3), math.sin(angle + k * 2 * math.pi / 3)) for k in range(3)]
    elif kind == "star":
        pts = []
        for k in range(10):
            rr = 1.0 if k % 2 == 0 else 0.45
            a = angle + k * math.pi / 5
            pts.append((rr * math.cos(a), rr * math.sin(a)))
    else:
        raise ValueError(kind)
    return [(cx + r * x, cy + r * y) for x, y in pts]


def shape_mask(kind, size, cx, cy, r, angle, aspect):
    """A boolean mask of one shape on an image of (h, w) = size."""
    h, w = size
    img = Image.new("L", (w, h), 0)
    d = ImageDraw.Draw(img)
    if kind == "disc":
        rx, ry = r, r * aspect
        d.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=255)
        img = img.rotate(math.degrees(angle), center=(cx, cy))
    elif kind == "ring":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
        ri = r * 0.55
        d.ellipse([cx - ri, cy - ri, cx + ri, cy + ri], fill=0)
    else:
        d.polygon(polygon(kind, cx, cy, r, angle), fill=255)
    return np.array(img) > 127


def texture(rng, size, colour):
    """An RGB fill: solid, stripes, checks or speckle around one colour."""
    h, w = size
    base = np.array(colour, np.float32)
    other = np.clip(base + rng.uniform(-90, 90, 3), 0, 255)
    kind = rng.integers(0, 4)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if kind == 0:
        t = np.zeros((h, w), np.float32)
    elif kind == 1:
        period = rng.uniform(5, 14)
        a = rng.uniform(0, math.pi)
        t = ((xx * math.cos(a) + yy * math.sin(a)) // period % 2).astype(np.float32)
    elif kind == 2:
        period = int(rng.integers(4, 12))
        t = ((xx // period + yy // period) % 2).astype(np.float32)
    else:
        t = (rng.random((h, w)) < 0.3).astype(np.float32)
    fill = base[None, None, :] * (1 - t[..., None]) + other[None, None, :] * t[..., None]
    fill += rng.normal(0, 3, (h, w, 3))
    return fill


def background(rng, size):
    h, w = size
    c0 = rng.uniform(0, 255, 3)
    c1 = rng.uniform(0, 255, 3)
    a = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    g = (xx * math.cos(a) + yy * math.sin(a))
    g = (g - g.min()) / max(g.max() - g.min(), 1)
    img = c0[None, None, :] * (1 - g[..., None]) + c1[None, None, :] * g[..., None]
    # Low-frequency blotches and pixel noise.
    blot = Image.fromarray((rng.random((h // 16 + 1, w // 16 + 1, 3)) * 255).astype(np.uint8)).resize((w, h), Image.BICUBIC)
    img = 0.7 * img + 0.3 * np.array(blot, np.float32)
    img += rng.normal(0, 1.5, (h, w, 3))
    # Distractors: strokes and small specks of any colour, never annotated.
    pil = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(pil)
    for _ in range(int(rng.integers(4, 14))):
        x0, y0 = rng.uniform(0, w), rng.uniform(0, h)
        x1, y1 = x0 + rng.normal(0, w / 4), y0 + rng.normal(0, h / 4)
        d.line([(x0, y0), (x1, y1)], fill=tuple(int(v) for v in rng.uniform(0, 255, 3)), width=int(rng.integers(1, 5)))
    for _ in range(int(rng.integers(0, 8))):
        x0, y0 = rng.uniform(0, w), rng.uniform(0, h)
        s = rng.uniform(2, 7)
        d.rectangle([x0, y0, x0 + s, y0 + rng.uniform(2, 7)], fill=tuple(int(v) for v in rng.uniform(0, 255, 3)))
    return np.array(pil, np.float32)


def scene(rng, size):
    """One image and its visible instance masks [(class_index, mask)]."""
    h, w = size
    img = background(rng, size)
    placed = []  # (class, full mask); later ones occlude earlier ones
    for _ in range(int(rng.integers(3, 9))):
        k = int(rng.integers(0, len(CLASSES)))
        r = float(np.exp(rng.uniform(math.log(10), math.log(min(h, w) * 0.3))))
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        m = shape_mask(CLASSES[k], size, cx, cy, r, rng.uniform(0, 2 * math.pi), rng.uniform(0.55, 1.0))
        if m.sum() < 60:
            continue
        colour = rng.uniform(0, 255, 3)
        fill = texture(rng, size, colour)
        img[m] = fill[m]
        placed.append((k, m))
    instances = []
    for i, (k, m) in enumerate(placed):
        visible = m.copy()
        for _, later in placed[i + 1:]:
            visible &= ~later
        # Mostly hidden objects are not annotated (nor would a person label them).
        if visible.sum() < max(40, 0.35 * m.sum()):
            continue
        instances.append((k, visible))
    out = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.6))
    return out, instances


def write_split(rng, out_dir, split, count, size_range):
    d = os.path.join(out_dir, split)
    os.makedirs(d, exist_ok=True)
    images, annotations = [], []
    for i in range(count):
        h = int(rng.integers(size_range[0], size_range[1] + 1))
        w = int(rng.integers(size_range[0], size_range[1] + 1))
        img, instances = scene(rng, (h, w))
        name = f"{split}_{i:04d}.png"
        img.save(os.path.join(d, name), optimize=True)
        images.append({"id": i + 1, "file_name": name, "height": h, "width": w})
        for k, m in instances:
            rle = mask_util.encode(np.asfortranarray(m.astype(np.uint8)))
            x, y, bw, bh = (float(v) for v in mask_util.toBbox(rle))
            rle["counts"] = rle["counts"].decode("ascii")
            annotations.append({
                "id": len(annotations) + 1, "image_id": i + 1, "category_id": k + 1,
                "segmentation": rle, "area": float(m.sum()), "bbox": [x, y, bw, bh], "iscrowd": 0,
            })
    coco = {
        "info": {"description": f"d2serve synthetic shapes, {split}"},
        "images": images, "annotations": annotations,
        "categories": [{"id": k + 1, "name": n} for k, n in enumerate(CLASSES)],
    }
    with open(os.path.join(d, "instances.json"), "w") as f:
        json.dump(coco, f, separators=(",", ":"))
    return len(annotations)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--train", type=int, default=1200)
    ap.add_argument("--val", type=int, default=60)
    ap.add_argument("--min-side", type=int, default=256)
    ap.add_argument("--max-side", type=int, default=352)
    a = ap.parse_args()
    # One generator per split, so that changing --train leaves the val set as it was.
    n_val = write_split(np.random.default_rng([a.seed, 1]), a.out_dir, "val", a.val, (a.min_side, a.max_side))
    n_train = write_split(np.random.default_rng([a.seed, 0]), a.out_dir, "train", a.train, (a.min_side, a.max_side))
    classes = [{"title": n, "shape": "bitmap", "color": c} for n, c in zip(CLASSES, COLOURS)]
    with open(os.path.join(a.out_dir, "model_classes.json"), "w") as f:
        json.dump(classes, f, indent=1)
    print(f"wrote {a.train} train images ({n_train} instances) and {a.val} val images ({n_val} instances) to {a.out_dir}")


if __name__ == "__main__":
    main()
