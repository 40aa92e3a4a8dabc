"""Detectron2 model loading shared by the by-hand comparison scripts (d2_*.py)."""
import numpy as np
import torch


def load(cfg_path, checkpoint):
    """The zoo model of `cfg_path` (.yaml, or LazyConfig .py), on CPU in eval mode,
    with the zoo-format `checkpoint` loaded; 2 threads like the reference timings."""
    from detectron2.checkpoint import DetectionCheckpointer

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
    DetectionCheckpointer(model).load(checkpoint)
    return model


def network_input(model, rgb):
    """A resized uint8 RGB HWC image as the model takes it: float32 CHW in its channel order."""
    x = rgb if model.input_format == "RGB" else rgb[:, :, ::-1]
    return torch.as_tensor(np.ascontiguousarray(x.astype("float32").transpose(2, 0, 1)))
