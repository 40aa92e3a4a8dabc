#!/usr/bin/env python3
"""The REAL Supervisely SDK (Session, SessionJSON; tested with supervisely 6.74.51, and 6.73.545 and 6.73.374,
which the Supervisely apps pin) driving a running
d2serve's video, asynchronous, tracking and project routes, with a stub of the platform's REST API.

usage: sdk_video_client.py BASE_URL IMAGES_DIR STUB_PORT

Starts the stub on 127.0.0.1:STUB_PORT (serve must run with --supervisely-server
http://127.0.0.1:STUB_PORT). The stub checks the token on every call and answers
videos.info, videos.bulk.download-frame (multipart parts named by frame index, sent in
REVERSE order), images.download, projects.info, datasets.list, images.list and
images.bulk.download. Video 1: one frame per PNG of IMAGES_DIR (name order); video 2: the first
PNG 6 times; video 3: 200 frames, slow (for stop). Each frame's prediction must equal what the
SDK gets for the same PNG from /inference_image. Prints PASS/FAIL per check, then
"SDK VIDEO: N passed, M failed"; exits 0 iff M == 0.
"""
import json
import os
import signal
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import supervisely as sly
from supervisely.nn.inference import Session, SessionJSON

TOKEN = "sdk-video-token"
RESULTS = []
STUB = {"bad_tokens": 0, "frame_requests": 0}


def report(ok, name, detail=""):
    RESULTS.append(bool(ok))
    print(f"PASS {name}" if ok else f"FAIL {name}: {' '.join(str(detail).split())[:600]}", flush=True)


def stub(images):
    videos = {1: list(range(len(images))), 2: [0] * 6, 3: [i % len(images) for i in range(200)]}
    names = [os.path.basename(p) for p in images]
    raw = [open(p, "rb").read() for p in images]

    class H(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def reply(self, code, body, ctype="application/json"):
            out = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def parts(self, items):
            b = "sdkvideoboundary"
            out = b"".join(f"--{b}\r\nContent-Disposition: form-data; name=\"{n}\"\r\n\r\n".encode() + data + b"\r\n"
                           for n, data in items) + f"--{b}--\r\n".encode()
            self.reply(200, out, f"multipart/form-data; boundary={b}")

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            if self.headers.get("x-api-key") != TOKEN:
                STUB["bad_tokens"] += 1
                return self.reply(401, {"error": "bad token"})
            method = self.path.rsplit("/", 1)[-1]
            vid = body.get("id", body.get("videoId"))
            nf = {"error": "not found"}
            if method == "videos.info":
                if vid not in videos:
                    return self.reply(404, nf)
                n = len(videos[vid])
                return self.reply(200, {"id": vid, "datasetId": 20, "projectId": 10, "name": f"v{vid}.mp4",
                                        "fileMeta": {"framesCount": n, "duration": n / 25, "width": 1, "height": 1}})
            if method == "videos.bulk.download-frame":
                want = body["frames"]
                STUB["frame_requests"] += len(want)
                if vid == 3:
                    time.sleep(0.05 * len(want))
                return self.parts([(str(i), raw[videos[vid][i]]) for i in reversed(want)])
            ids = list(range(1, len(raw) + 1))
            if method == "images.download":
                return self.reply(200, raw[body["id"] - 1], "image/png") if body.get("id") in ids else self.reply(404, nf)
            if method == "projects.info":
                return self.reply(200, {"id": 10, "type": "images", "name": "p"}) if body.get("id") == 10 else self.reply(404, nf)
            if method == "datasets.list":
                return self.reply(200, {"total": 1, "pagesCount": 1, "entities": [{"id": 20, "name": "ds"}]})
            if method == "images.list":
                return self.reply(200, {"total": len(ids), "pagesCount": 1,
                                        "entities": [{"id": i, "name": names[i - 1]} for i in ids]})
            if method == "images.bulk.download":
                return self.parts([(str(i), raw[i - 1]) for i in reversed(body["imageIds"])])
            return self.reply(404, nf)

    return H, names


def main():
    base, images_dir, port = sys.argv[1].rstrip("/"), sys.argv[2], int(sys.argv[3])
    images = sorted(os.path.join(images_dir, f) for f in os.listdir(images_dir) if f.endswith(".png"))
    handler, names = stub(images)
    srv = ThreadingHTTPServer(("127.0.0.1", port), handler)
    # serve drops its prefetch of frames after a stop: the stub's broken pipe is expected, not news.
    srv.handle_error = lambda *a: None
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    api = sly.Api(f"http://127.0.0.1:{port}", TOKEN, retry_count=1, ignore_task_id=True)
    signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(TimeoutError("no answer in 300 s")))
    own = {}

    def own_answer(i):
        if i not in own:
            own[i] = SessionJSON(api, session_url=base).inference_image_path(images[i])
        return own[i]

    def check(name, fn):
        signal.alarm(300)
        try:
            fn()
        except Exception as e:
            report(False, name, f"{type(e).__name__}: {e} {traceback.format_exc().splitlines()[-3:]}")
        finally:
            signal.alarm(0)

    def info():
        d = SessionJSON(api, session_url=base).get_session_info()
        bad = [k for k in ("videos_support", "async_video_inference_support", "async_image_inference_support",
                           "tracking_on_videos_support") if d.get(k) is not True]
        report(not bad and "botsort" in d.get("tracking_algorithms", []), "session info: video, async and tracking", bad)

    def sync_video():
        r = SessionJSON(api, session_url=base).inference_video_id(1, start_frame_index=1, frames_count=3)
        preds = r["ann"]
        probs = [f"frame {1 + k}" for k, p in enumerate(preds) if p["annotation"] != own_answer(1 + k)["annotation"]]
        if [p["frame_index"] for p in preds] != [1, 2, 3]:
            probs.append(f"frame indices {[p['frame_index'] for p in preds]}")
        anns = Session(api, session_url=base).inference_video_id(1, start_frame_index=1, frames_count=3)
        if len(anns) != 3 or not all(isinstance(a, sly.Annotation) for a in anns):
            probs.append("Session.inference_video_id did not give 3 sly.Annotation")
        report(not probs and STUB["bad_tokens"] == 0, "inference_video_id: frames 1..3 equal the image route", probs)

    def async_video():
        n = len(images)
        s = Session(api, session_url=base)
        anns = list(s.inference_video_id_async(1, 0, n))
        raw = list(SessionJSON(api, session_url=base).inference_video_id_async(1, 0, n))
        probs = [] if len(anns) == n else [f"{len(anns)} annotations for {n} frames"]
        probs += [f"frame {k}" for k, p in enumerate(raw) if p["annotation"] != own_answer(k)["annotation"]]
        report(not probs, f"inference_video_id_async: {n} frames in order equal the image route", probs)

    def tracking():
        s = SessionJSON(api, session_url=base)
        preds = list(s.inference_video_id_async(2, 0, 6, tracker="botsort"))
        va = (s.inference_result or {}).get("video_ann")
        meta = sly.ProjectMeta.from_json(s.get_model_meta())
        v = sly.VideoAnnotation.from_json(va, meta, sly.KeyIdMap())
        ids = [p["annotation"]["customBigData"] for p in preds]
        probs = []
        if len(preds) != 6 or any(i != ids[0] for i in ids):
            probs.append(f"track ids per frame {ids}")
        if v.frames_count != 6 or [len(f.figures) for f in v.frames] != [len(v.objects)] * 6:
            probs.append(f"video_ann: {v.frames_count} frames, figures {[len(f.figures) for f in v.frames]}, {len(v.objects)} objects")
        report(not probs, "tracking (botsort) through the async route: stable ids, video_ann parses with a KeyIdMap", probs)

    def stop():
        s = Session(api, session_url=base)
        got = 0
        for _ in s.inference_video_id_async(3, 0, 200):
            got += 1
            if got == 1:
                s.stop_async_inference()
                at_stop = STUB["frame_requests"]
        time.sleep(2)
        after = STUB["frame_requests"] - at_stop
        report(got < 200 and after <= 16, "stop_async_inference ends the request and the frame downloads", f"{got} results, {after} frames after stop")

    def project():
        infos = list(Session(api, session_url=base).inference_project_id_async(10, [20]))
        probs = [] if [i.image_name for i in infos] == names else [f"names {[i.image_name for i in infos]}"]
        ids = list(Session(api, session_url=base).inference_image_ids_async([1, 2]))
        if [i.image_id for i in ids] != [1, 2]:
            probs.append(f"inference_image_ids_async ids {[i.image_id for i in ids]}")
        report(not probs, "inference_project_id_async and inference_image_ids_async", probs)

    for name, fn in [("info", info), ("sync video", sync_video), ("async video", async_video), ("tracking", tracking),
                     ("stop", stop), ("project", project)]:
        check(name, fn)
    srv.shutdown()
    passed = sum(RESULTS)
    print(f"SDK VIDEO: {passed} passed, {len(RESULTS) - passed} failed")
    sys.exit(0 if passed == len(RESULTS) and passed > 0 else 1)


if __name__ == "__main__":
    main()
