#!/usr/bin/env python3
"""Train the bundled sample model with Detectron2 on CPU, then score it with
Detectron2's own COCOEvaluator.

    train.py DATA_DIR OUT_DIR [--iters 2000] [--threads 2] [--resume]

DATA_DIR is what make_dataset.py wrote. OUT_DIR receives, as Detectron2 and
Supervisely's training app write them:
  model_final.pth       the weights only ({"model", "iteration"}, no optimizer state)
  config.yaml           cfg.dump(): the full config the weights belong to
  model_classes.json    the class titles and colours
and the reference figures d2serve is checked against:
  d2_eval.json          COCOEvaluator's bbox and segm results on DATA_DIR/val
  d2_detections.json    the COCO results it scored (coco_instances_results.json)
  training.json         iterations, seed, threads, wall time, torch and detectron2 versions

Needs Detectron2 (samples/shapes/README.md has the install recipe and the run recorded).
"""
import argparse
import json
import os
import shutil
import time

import torch
import detectron2
from detectron2 import model_zoo
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.data.datasets import register_coco_instances
from detectron2.engine import DefaultTrainer, default_setup
from detectron2.evaluation import COCOEvaluator, inference_on_dataset
from detectron2.data import build_detection_test_loader

HERE = os.path.dirname(os.path.abspath(__file__))


class Trainer(DefaultTrainer):
    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        return COCOEvaluator(dataset_name, output_dir=output_folder or cfg.OUTPUT_DIR)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data_dir")
    ap.add_argument("out_dir")
    ap.add_argument("--iters", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--resume", action="store_true",
                    help="go on from OUT_DIR's last periodic checkpoint (a run that was stopped)")
    ap.add_argument("--eval-only", action="store_true", help="score OUT_DIR/model_final.pth without training")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    for split in ("train", "val"):
        d = os.path.join(a.data_dir, split)
        register_coco_instances(f"shapes_{split}", {}, os.path.join(d, "instances.json"), d)

    cfg = get_cfg()
    cfg.merge_from_file(model_zoo.get_config_file("Misc/mask_rcnn_R_50_FPN_3x_gn.yaml"))
    cfg.merge_from_file(os.path.join(HERE, "train-config.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    cfg.SOLVER.MAX_ITER = a.iters
    # Step down at 85 % and 95 % of the schedule (the zoo's step at 75 % and 90 %): a
    # short run from scratch is still learning fast at the full rate, and each step's
    # gain comes within about 100 iterations (samples/shapes/README.md).
    cfg.SOLVER.STEPS = (int(a.iters * 0.85), int(a.iters * 0.95))
    cfg.OUTPUT_DIR = a.out_dir
    cfg.freeze()
    os.makedirs(a.out_dir, exist_ok=True)
    default_setup(cfg, argparse.Namespace(config_file="", eval_only=a.eval_only, resume=False, opts=[]))

    started = time.time()
    if a.eval_only:
        model = Trainer.build_model(cfg)
        DetectionCheckpointer(model).load(os.path.join(a.out_dir, "model_final.pth"))
        train_seconds = None
    else:
        trainer = Trainer(cfg)
        trainer.resume_or_load(resume=a.resume)
        start_iter = trainer.start_iter
        trainer.train()
        train_seconds = time.time() - started
        model = trainer.model
        # The weights alone, as Supervisely's LazyConfig trainer saves them: the
        # optimizer state would double the file for nothing a server needs.
        DetectionCheckpointer(model, save_dir=a.out_dir).save("model_final", iteration=a.iters)

    eval_dir = os.path.join(a.out_dir, "eval")
    evaluator = COCOEvaluator("shapes_val", output_dir=eval_dir)
    model.eval()
    t = time.time()
    results = inference_on_dataset(model, build_detection_test_loader(cfg, "shapes_val"), evaluator)
    eval_seconds = time.time() - t
    with open(os.path.join(a.out_dir, "d2_eval.json"), "w") as f:
        json.dump({"bbox": results["bbox"], "segm": results["segm"]}, f, indent=1)
    shutil.copy(os.path.join(eval_dir, "coco_instances_results.json"), os.path.join(a.out_dir, "d2_detections.json"))
    shutil.copy(os.path.join(a.data_dir, "model_classes.json"), os.path.join(a.out_dir, "model_classes.json"))
    if not a.eval_only:
        with open(os.path.join(a.out_dir, "training.json"), "w") as f:
            json.dump({
                "iterations": a.iters, "resumed_at_iteration": start_iter or None, "images_per_batch": cfg.SOLVER.IMS_PER_BATCH, "seed": cfg.SEED,
                "threads": a.threads, "train_seconds": round(train_seconds, 1), "eval_seconds": round(eval_seconds, 1),
                "torch": torch.__version__, "detectron2": detectron2.__version__,
                "cpu": open("/proc/cpuinfo").read().split("model name")[1].split("\n")[0].strip(": \t"),
            }, f, indent=1)
    print("bbox AP", results["bbox"]["AP"], "segm AP", results["segm"]["AP"])


if __name__ == "__main__":
    main()
