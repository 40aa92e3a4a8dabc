#!/usr/bin/env python3
"""Drive a running d2serve with the REAL Supervisely SDK client (tested with supervisely==6.74.51).

usage: sdk_client.py BASE_URL IMAGES_DIR [--url-base URL]

Every request goes through the SDK's public client classes (sly.nn.inference.Session and
sly.nn.ModelAPI), except one raw multipart /inference_image request whose JSON is checked before
sly.Annotation gets a chance to silently crop or drop out-of-image masks. --url-base is a base URL
under which IMAGES_DIR is served (for Session.inference_image_url); without it that part is skipped.
Any WARNING the SDK logs while converting a reply counts as a failure.
Prints "PASS name" / "FAIL name: reason" per check, then "SDK CLIENT: N passed, M failed";
exits 0 iff M == 0 and N > 0.
"""
import argparse
import json
import logging
import os
import signal
import sys
import traceback

import requests
from PIL import Image, ImageOps

import supervisely as sly

TIMEOUT = 120  # seconds per SDK call; Session itself sets no client timeout
RESULTS = []


def report(ok, name, detail=""):
    RESULTS.append(bool(ok))
    detail = " ".join(str(detail).split())[:600]
    print(f"PASS {name}" if ok else f"FAIL {name}: {detail}", flush=True)


def _on_alarm(*_):
    raise TimeoutError(f"no reply within {TIMEOUT} s")


def call(fn, *args, **kwargs):
    signal.alarm(TIMEOUT)
    try:
        return fn(*args, **kwargs)
    finally:
        signal.alarm(0)


class WarningLog(logging.Handler):
    """Collects what the SDK logs at WARNING or above (e.g. get_meta_from_annotation's notes)."""
    msgs = []

    def emit(self, record):
        self.msgs.append(record.getMessage())

    def take(self):
        msgs, self.msgs[:] = list(self.msgs), []
        return msgs


WARNINGS = WarningLog(logging.WARNING)


def check(name, fn):
    """Run fn(); it returns (problems, value). Report PASS/FAIL; return value (None on failure)."""
    WARNINGS.take()
    try:
        problems, value = fn()
    except Exception as e:  # SDK/HTTP errors, timeouts, parse errors
        problems, value = [f"{type(e).__name__}: {e}"], None
    warns = WARNINGS.take()
    if warns:
        problems = problems + ["SDK logged warnings: " + " | ".join(w[:150] for w in warns[:2])]
    report(not problems, name, "; ".join(problems[:3]) + (" ..." if len(problems) > 3 else ""))
    return None if problems else value


def image_hw(path):
    with Image.open(path) as im:
        w, h = ImageOps.exif_transpose(im).size
    return (h, w)


def ann_problems(ann, hw, meta, min_conf, roi=None):
    if not isinstance(ann, sly.Annotation):
        return [f"got {type(ann).__name__}, not sly.Annotation"]
    problems = []
    if tuple(ann.img_size) != hw:
        problems.append(f"annotation size {tuple(ann.img_size)} != image (h, w) {hw}")
    for i, label in enumerate(ann.labels):
        what = f"label {i} ({label.obj_class.name})"
        cls = meta.get_obj_class(label.obj_class.name)
        if cls is None or cls.geometry_type is not sly.Bitmap:
            problems.append(f"{what}: not a Bitmap class of the model meta")
        g = label.geometry
        if not isinstance(g, sly.Bitmap) or g.data.ndim != 2 or not g.data.any():
            problems.append(f"{what}: geometry is not a non-empty 2-D Bitmap")
            continue
        b = g.to_bbox()
        if b.top < 0 or b.left < 0 or b.bottom >= hw[0] or b.right >= hw[1]:
            problems.append(f"{what}: bbox {b.top},{b.left}..{b.bottom},{b.right} outside image {hw}")
        if roi is not None and (b.top < roi.top or b.left < roi.left
                                or b.bottom > roi.bottom or b.right > roi.right):
            problems.append(f"{what}: rows {b.top}..{b.bottom} cols {b.left}..{b.right} outside ROI "
                            f"rows {roi.top}..{roi.bottom} cols {roi.left}..{roi.right}")
        tag = label.tags.get("confidence")
        conf = None if tag is None else tag.value
        if not isinstance(conf, (int, float)) or isinstance(conf, bool) or not 0 <= conf <= 1:
            problems.append(f"{what}: confidence tag {conf!r} is not a number in [0, 1]")
        elif conf < min_conf:
            problems.append(f"{what}: confidence {conf} < conf_thres {min_conf}")
    return problems


def classes_of(ann):
    return sorted(label.obj_class.name for label in ann.labels)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("base_url")
    ap.add_argument("images_dir")
    ap.add_argument("--url-base", help="base URL under which IMAGES_DIR is served (URL test)")
    ap.add_argument("--expect-classes", help="a model_classes.json the served (imported) model must report: "
                                             "names and colours in order, dataset 'custom'")
    args = ap.parse_args()
    expected = None
    if args.expect_classes:
        with open(args.expect_classes) as f:
            expected = [(c["title"], c["color"].upper()) for c in json.load(f)]
    base = args.base_url.rstrip("/")
    signal.signal(signal.SIGALRM, _on_alarm)
    sly.logger.addHandler(WARNINGS)

    paths = sorted(os.path.join(args.images_dir, f) for f in os.listdir(args.images_dir)
                   if f.lower().endswith((".png", ".jpg", ".jpeg")))
    if not paths:
        return report(False, "images", f"no .png/.jpg in {args.images_dir}")
    hw = {p: image_hw(p) for p in paths}
    name = os.path.basename

    # 1. connect, session info, model meta, default settings
    api = sly.Api(server_address=base, token="dummy-token", retry_count=1, ignore_task_id=True)
    session = check("Session(api, session_url) connects", lambda: (
        [], call(sly.nn.inference.Session, api, session_url=base)))
    if session is None:
        return

    def session_info():
        info = call(session.get_session_info)
        if not isinstance(info, dict) or "app_name" not in info:
            return [f"no app_name in {info!r}"[:300]], None
        task = info.get("task type")
        problems = [] if task == "instance segmentation" else [f'"task type" is {task!r}']
        if expected is not None:
            if info.get("pretrained_on_dataset") != "custom":
                problems.append(f"pretrained_on_dataset is {info.get('pretrained_on_dataset')!r}, not 'custom'")
            if info.get("number_of_classes") != len(expected):
                problems.append(f"number_of_classes {info.get('number_of_classes')} != {len(expected)}")
        return problems, info
    check('get_session_info: app_name, "task type" == instance segmentation', session_info)

    def model_meta():
        meta = call(session.get_model_meta)
        bad = [c.name for c in meta.obj_classes if c.geometry_type is not sly.Bitmap]
        conf = meta.get_tag_meta("confidence")
        problems = (["no classes"] if len(meta.obj_classes) == 0 else []) + \
                   ([f"non-Bitmap classes {bad[:5]}"] if bad else []) + \
                   ([] if conf is not None and conf.value_type == sly.TagValueType.ANY_NUMBER
                    else ["no 'confidence' tag meta of type any_number"])
        if expected is not None:
            got = [(c.name, sly.color.rgb2hex(c.color).upper()) for c in meta.obj_classes]
            if got != expected:
                problems.append(f"classes/colours {got} != the model's own {expected}")
        return problems, meta
    meta = check("get_model_meta: Bitmap classes + confidence tag meta", model_meta)
    if meta is None:
        return

    def default_settings():
        d = call(session.get_default_inference_settings)
        ok = isinstance(d, dict) and isinstance(d.get("conf_thres"), (int, float)) \
            and not isinstance(d.get("conf_thres"), bool)
        return ([] if ok else [f"got {d!r}"]), d
    defaults = check("get_default_inference_settings: numeric conf_thres", default_settings)
    default_conf = float(defaults["conf_thres"]) if defaults else 0.0

    # 2. single image by path
    single = {}
    for p in paths:
        def one(p=p):
            ann = call(session.inference_image_path, p)
            return ann_problems(ann, hw[p], meta, default_conf), ann
        single[p] = check(f"inference_image_path {name(p)}", one)

    # 3. batch by paths
    def batch():
        anns = call(session.inference_image_paths, paths)
        if not isinstance(anns, list) or len(anns) != len(paths):
            return [f"got {len(anns) if isinstance(anns, list) else type(anns).__name__} "
                    f"results for {len(paths)} images"], None
        problems = []
        for p, ann in zip(paths, anns):
            problems += [f"{name(p)}: {x}" for x in ann_problems(ann, hw[p], meta, default_conf)]
            if single[p] is not None and classes_of(ann) != classes_of(single[p]):
                problems.append(f"{name(p)}: batch classes {classes_of(ann)} != single {classes_of(single[p])}")
        return problems, anns
    check(f"inference_image_paths batch of {len(paths)} (order, classes == single)", batch)

    # 8. one raw reply: objects must decode and lie inside the image BEFORE sly.Annotation crops them
    raw_p = max(paths, key=lambda q: len(single[q].labels) if single[q] is not None else -1)

    def raw():
        with open(raw_p, "rb") as f:
            files = [("files", (name(raw_p), f.read())),
                     ("settings", (None, json.dumps({"settings": {}}), "text/plain"))]
        r = call(requests.post, f"{base}/inference_image", files=files, timeout=TIMEOUT)
        if r.status_code != 200:
            return [f"HTTP {r.status_code}: {r.text[:300]}"], None
        ann = r.json()["annotation"]
        h, w = hw[raw_p]
        problems = [] if ann["size"] == {"height": h, "width": w} else [f"size {ann['size']} != {hw[raw_p]}"]
        for i, obj in enumerate(ann["objects"]):
            g = sly.Bitmap.from_json(obj)
            r0, c0 = g.origin.row, g.origin.col
            r1, c1 = r0 + g.data.shape[0] - 1, c0 + g.data.shape[1] - 1
            if r0 < 0 or c0 < 0 or r1 >= h or c1 >= w:
                problems.append(f"object {i}: rows {r0}..{r1} cols {c0}..{c1} outside image {h}x{w}")
        if single[raw_p] is not None and len(ann["objects"]) != len(single[raw_p].labels):
            problems.append(f"raw reply has {len(ann['objects'])} objects, SDK kept {len(single[raw_p].labels)}")
        return problems, ann
    check(f"raw /inference_image {name(raw_p)}: objects decode, inside image, count == SDK", raw)

    # 4. by URL
    if args.url_base:
        for p in paths:
            def by_url(p=p):
                ann = call(session.inference_image_url, f"{args.url_base.rstrip('/')}/{name(p)}")
                problems = ann_problems(ann, hw[p], meta, default_conf)
                if single[p] is not None and classes_of(ann) != classes_of(single[p]):
                    problems.append(f"url classes {classes_of(ann)} != path {classes_of(single[p])}")
                return problems, ann
            check(f"inference_image_url {name(p)}", by_url)
    else:
        print("SKIP inference_image_url (no --url-base)", flush=True)

    # 5. conf_thres 0.3 through the SDK's settings validator
    if check("set_inference_settings({'conf_thres': 0.3})",
             lambda: ([], session.set_inference_settings({"conf_thres": 0.3}))) is not None:
        for p in paths:
            check(f"conf_thres=0.3 inference_image_path {name(p)}", lambda p=p: (
                ann_problems(call(session.inference_image_path, p), hw[p], meta, 0.3), None))

    # 6. ROI: Session has no ROI argument; it travels as settings["rectangle"] (Rectangle JSON)
    p = max(paths, key=lambda q: hw[q][0] * hw[q][1])
    h, w = hw[p]
    roi = sly.Rectangle(top=h // 4, left=w // 4, bottom=3 * h // 4 - 1, right=3 * w // 4 - 1)
    settings = {"conf_thres": 0.3, "rectangle": roi.to_json()}
    if "rectangle" in (defaults or {}):
        session.set_inference_settings(settings)
    else:  # the validator admits only keys in the server defaults; the attribute is public
        session.inference_settings = settings
    check(f"ROI rows {roi.top}..{roi.bottom} cols {roi.left}..{roi.right} {name(p)}", lambda: (
        ann_problems(call(session.inference_image_path, p), (h, w), meta, 0.3, roi), None))
    session.inference_settings = {}

    # 7. ModelAPI (sly.nn.ModelAPI in 6.74.51)
    model_api_cls = getattr(sly.nn, "ModelAPI", None)
    if model_api_cls is None:
        print("SKIP ModelAPI (not in this SDK version)", flush=True)
        return
    mapi = model_api_cls(url=base)

    def mapi_meta():
        m = call(mapi.get_model_meta)
        same = sorted(c.name for c in m.obj_classes) == sorted(c.name for c in meta.obj_classes)
        return ([] if same else ["class list differs from Session.get_model_meta"]), m
    check("ModelAPI(url).get_model_meta matches Session", mapi_meta)
    check("ModelAPI(url).is_deployed() is True", lambda: (
        (lambda r: [] if r is True else [f"returned {r!r}"])(call(mapi.is_deployed)), None))


def finish():
    passed = sum(RESULTS)
    failed = len(RESULTS) - passed
    print(f"SDK CLIENT: {passed} passed, {failed} failed", flush=True)
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    try:
        main()
    except Exception:
        traceback.print_exc()
        report(False, "client crashed", "see traceback on stderr")
    sys.exit(finish())
