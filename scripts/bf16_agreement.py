#!/usr/bin/env python3
# Instance agreement of each fixture family's converted graph (in /tmp/fam/FAMILY) with its
# bf16-emulated twin (scripts/bf16_emulation.py, in /tmp/fam/FAMILY-bf16), in ONNX Runtime on the
# fixture photos: docs/BENCHMARKS.md ("bf16's accuracy cost"). Usage: bf16_agreement.py FAMILY...
import json, os, sys, numpy as np, onnxruntime as ort
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
fams = sys.argv[1:]
def iou(a, b):
    x0 = np.maximum(a[:, None, 0], b[None, :, 0]); y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2]); y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    i = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    aa = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]); bb = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return i / (aa[:, None] + bb[None, :] - i + 1e-9)
so = ort.SessionOptions(); so.intra_op_num_threads = 1
for f in fams:
    fx = os.path.join(REPO, "tests/fixtures", f)
    s32 = ort.InferenceSession(f"/tmp/fam/{f}/model.onnx", so); s16 = ort.InferenceSession(f"/tmp/fam/{f}-bf16/model.onnx", so)
    names = [o.name for o in s32.get_outputs()]
    tot = m = 0; worst_mask = 0.0; worst_score = 0.0
    for image in ["astronaut", "chelsea", "coffee", "motorcycle_wide"]:
        info = json.load(open(f"{fx}/{image}.json"))
        x = np.load(f"{fx}/" + info["preprocessed"])[::-1]
        x = np.ascontiguousarray(np.round(x.transpose(1, 2, 0)).astype(np.uint8))
        a = dict(zip(names, s32.run(None, {"image": x}))); b = dict(zip(names, s16.run(None, {"image": x})))
        tot += len(a["scores"])
        if len(a["scores"]) == 0 or len(b["scores"]) == 0: continue
        M = iou(a["boxes"], b["boxes"]); used = set()
        for i in np.argsort(-a["scores"]):
            cand = [j for j in np.argsort(-M[i]) if j not in used and b["classes"][j] == a["classes"][i] and M[i, j] >= 0.99]
            if cand:
                j = cand[0]; used.add(j); m += 1
                worst_mask = max(worst_mask, float(np.abs(a["mask_probs"][i] - b["mask_probs"][j]).max()))
                worst_score = max(worst_score, float(abs(a["scores"][i] - b["scores"][j])))
    print(f"| {f} | {tot} | {m} ({m / max(tot, 1):.3f}) | {worst_score:.2e} | {worst_mask:.2e} |", flush=True)
