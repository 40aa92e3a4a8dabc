#!/usr/bin/env python3
"""Frames per second of a video through serve's asynchronous video route, next to
the same frames posted one by one to /inference_image (docs/BENCHMARKS.md, "Video").

usage: video_bench.py BASE_URL STUB_PORT IMAGE [FRAMES]

Starts a stub of the Supervisely platform on 127.0.0.1:STUB_PORT whose video 1 is
FRAMES (default 300) copies of IMAGE (a PNG), served as multipart parts of
videos.bulk.download-frame; serve must run with --supervisely-server
http://127.0.0.1:STUB_PORT. Standard library only. Prints one JSON line.
"""
import json
import sys
import threading
import time
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN = "bench-token"


def main():
    base, port, image = sys.argv[1].rstrip("/"), int(sys.argv[2]), sys.argv[3]
    frames = int(sys.argv[4]) if len(sys.argv) > 4 else 300
    png = open(image, "rb").read()

    class Platform(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            method = self.path.rsplit("/", 1)[-1]
            if method == "videos.info":
                out, ctype = json.dumps({"id": 1, "datasetId": 1, "projectId": 1,
                                         "fileMeta": {"framesCount": frames, "duration": frames / 25}}).encode(), "application/json"
            elif method == "videos.bulk.download-frame":
                b = "benchboundary"
                out = b"".join(f"--{b}\r\nContent-Disposition: form-data; name=\"{i}\"\r\n\r\n".encode() + png + b"\r\n"
                               for i in body["frames"]) + f"--{b}--\r\n".encode()
                ctype = f"multipart/form-data; boundary={b}"
            else:
                self.send_response(404)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

    srv = ThreadingHTTPServer(("127.0.0.1", port), Platform)
    threading.Thread(target=srv.serve_forever, daemon=True).start()

    def post(route, state):
        req = urllib.request.Request(f"{base}/{route}", json.dumps({"state": state, "api_token": TOKEN}).encode(),
                                     {"Content-Type": "application/json"})
        return json.load(urllib.request.urlopen(req, timeout=600))

    # Warm the model once, so neither figure includes loading it.
    post("inference_video_id", {"videoId": 1, "framesCount": 1})

    t = time.perf_counter()
    uid = post("inference_video_id_async", {"videoId": 1, "framesCount": frames})["inference_request_uuid"]
    got = 0
    while True:
        r = post("pop_inference_results", {"inference_request_uuid": uid})
        got += len(r["pending_results"])
        if not r["is_inferring"] and not r["pending_results"]:
            break
        time.sleep(0.05)
    async_s = time.perf_counter() - t
    assert got == frames, f"{got} results for {frames} frames"

    boundary = uuid.uuid4().hex
    form = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"frame.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + png + f"\r\n--{boundary}--\r\n".encode()
    t = time.perf_counter()
    for _ in range(frames):
        req = urllib.request.Request(f"{base}/inference_image", form, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
        json.load(urllib.request.urlopen(req, timeout=600))
    single_s = time.perf_counter() - t
    srv.shutdown()
    print(json.dumps({"frames": frames, "async_video_s": round(async_s, 2), "async_video_fps": round(frames / async_s, 2),
                      "inference_image_s": round(single_s, 2), "inference_image_fps": round(frames / single_s, 2)}))


if __name__ == "__main__":
    main()
