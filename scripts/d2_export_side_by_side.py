#!/usr/bin/env python3
"""Our converted graph against Detectron2's own ONNX export (tools/deploy/export_model.py,
tracing, opset 16, dynamo=False: ../shared/docs/d2-export-peer.md) of the same
checkpoint, in one Python onnxruntime process, interleaved; with PROFILE, ONNX Runtime's
per-op node time of each. By hand (the export needs Detectron2, which is not on PyPI).

    python scripts/d2_export_side_by_side.py OURS.onnx PEER.onnx IMAGE [ROUNDS] [PROFILE]

OURS.onnx sits in its artifact folder (manifest.json beside it gives the resize). The
peer graph takes float32 BGR CHW, fixed to the shape it was traced with, so IMAGE must
be the one the peer was exported with.
"""
import json
import os
import sys
import time

import numpy as np
import onnxruntime as ort
from PIL import Image


def main():
    ours_path, peer_path, image = sys.argv[1:4]
    rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 5
    profile = len(sys.argv) > 5

    def session(path, tag):
        so = ort.SessionOptions()
        so.intra_op_num_threads = 2
        if profile:
            so.enable_profiling = True
            so.profile_file_prefix = f"profile_{tag}"
        t = time.perf_counter()
        s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        return s, time.perf_counter() - t

    ours, ours_load = session(ours_path, "ours")
    peer, peer_load = session(peer_path, "peer")
    # Detectron2's own resize (what export_model.py traced with), at our manifest's sizes.
    from detectron2.data import transforms as T

    with open(os.path.join(os.path.dirname(ours_path), "manifest.json")) as f:
        rs = json.load(f)["resize"]
    rgb = np.asarray(Image.open(image).convert("RGB"))
    resized = T.ResizeShortestEdge([rs["min_size"]] * 2, rs["max_size"]).get_transform(rgb).apply_image(rgb)
    bgr_chw = np.ascontiguousarray(resized[:, :, ::-1].astype("float32").transpose(2, 0, 1))
    peer_input = peer.get_inputs()[0].name
    run_ours = lambda: ours.run(None, {"image": resized})
    run_peer = lambda: peer.run(None, {peer_input: bgr_chw})
    print(f"session creation: ours {ours_load:.3f} s, peer {peer_load:.3f} s")
    print(f"detections: ours {len(run_ours()[1])}, peer {len(run_peer()[0])}")
    times = {run_ours: [], run_peer: []}
    for r in range(rounds):
        for f in (run_ours, run_peer) if r % 2 == 0 else (run_peer, run_ours):
            t = time.perf_counter()
            f()
            times[f].append(time.perf_counter() - t)
    o, p = times[run_ours], times[run_peer]
    print(json.dumps({"ours_s": o, "peer_s": p, "ratio": float(np.median(o) / np.median(p))}))
    if profile:
        for tag, s in (("ours", ours), ("peer", peer)):
            events = json.load(open(s.end_profiling()))
            runs = sum(1 for e in events if e.get("name") == "model_run")
            per_op = {}
            for e in events:
                if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
                    per_op[e["args"]["op_name"]] = per_op.get(e["args"]["op_name"], 0) + e["dur"]
            print(f"{tag}: node time {sum(per_op.values()) / 1e3 / runs:.1f} ms/run")
            for op, us in sorted(per_op.items(), key=lambda x: -x[1])[:8]:
                print(f"  {op:<20} {us / 1e3 / runs:8.1f} ms/run")


if __name__ == "__main__":
    main()
