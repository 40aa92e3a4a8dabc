#!/usr/bin/env python3
"""The page at GET / in a real browser (Debian's chromium + chromedriver, driven
by selenium over WebDriver), against a running serve.

usage: browser_check.py BASE_URL IMAGE BAD_FILE [--image-url URL] [--screenshot PNG]

1. The model list comes from /v1/models (the default model selected).
2. Choosing IMAGE draws as many instances as the API returns for the same bytes
   and threshold, and the legend counts each class as the API does; the
   Server-Timing breakdown is shown; both download buttons become usable.
3. Choosing BAD_FILE shows the API's own `detail` for those bytes.
4. With --image-url, pasting that URL draws what the API answers for {"url": URL}.
Prints 'BROWSER CHECK: N passed, M failed' last; exits 1 on any failure.
"""
import argparse
import collections
import json
import os
import sys
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

ap = argparse.ArgumentParser()
ap.add_argument("base")
ap.add_argument("image")
ap.add_argument("bad_file")
ap.add_argument("--screenshot")
ap.add_argument("--image-url")
args = ap.parse_args()
BASE = args.base.rstrip("/")
passed, failed = 0, 0


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print("ok   ", name)
    else:
        failed += 1
        print("FAIL ", name, detail)


def api_predict(key, data, conf):
    url = "%s/v1/models/%s/predict?conf=%s" % (BASE, urllib.request.quote(key, safe=""), conf)
    req = urllib.request.Request(url, data=data, headers={"content-type": "application/octet-stream"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


opts = webdriver.ChromeOptions()
opts.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1400,1000"):
    opts.add_argument(a)
driver = webdriver.Chrome(service=Service(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")), options=opts)
try:
    wait = WebDriverWait(driver, 90)
    driver.get(BASE + "/")
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#model option"))
    options = driver.find_elements(By.CSS_SELECTOR, "#model option")
    models = json.load(urllib.request.urlopen(BASE + "/v1/models"))["models"]
    check("the model list is /v1/models", [o.get_attribute("value") for o in options] == [m["key"] for m in models])
    key = driver.find_element(By.ID, "model").get_attribute("value")
    default = next(m["key"] for m in models if m["default"])
    check("the default model is selected", key == default, key)
    wait.until(lambda d: d.find_element(By.ID, "model-info").text.strip() != "")
    info = driver.find_element(By.ID, "model-info").text
    shown = next(m for m in models if m["key"] == key)
    check("the model's dataset and classes are shown", f'{shown["num_classes"]} classes' in info, info)

    conf = float(driver.find_element(By.ID, "conf").get_attribute("value"))
    data = open(args.image, "rb").read()
    status, answer = api_predict(key, data, conf)
    check("the API answers the image", status == 200, status)
    objects = answer["annotation"]["objects"]
    want = collections.Counter(o["classTitle"] for o in objects)

    driver.find_element(By.ID, "file").send_keys(os.path.abspath(args.image))
    wait.until(lambda d: d.find_element(By.ID, "status").get_attribute("data-state") in ("done", "error"))
    state = driver.find_element(By.ID, "status").get_attribute("data-state")
    check("the page ran the model", state == "done", driver.find_element(By.ID, "error").text)
    drawn = int(driver.find_element(By.ID, "canvas").get_attribute("data-instances"))
    check("as many instances drawn as the API returns (%d)" % len(objects), drawn == len(objects) and drawn > 0, drawn)
    legend = {li.get_attribute("data-class"): int(li.get_attribute("data-count")) for li in driver.find_elements(By.CSS_SELECTOR, "#legend .legend-item")}
    check("the legend counts each class as the API does", legend == dict(want), "%s vs %s" % (legend, dict(want)))
    width = driver.execute_script("return document.getElementById('canvas').width")
    check("the canvas has the image's size", width == answer["annotation"]["size"]["width"], width)
    stages = [tr.get_attribute("data-stage") for tr in driver.find_elements(By.CSS_SELECTOR, "#timing tr")]
    check("the Server-Timing breakdown is shown", {"decode", "infer", "encode"} <= set(stages), stages)
    check("the downloads are offered", all(driver.find_element(By.ID, b).is_enabled() for b in ("download-sly", "download-coco")))
    # The drawing is real: some pixels carry a class colour over the photo.
    painted = driver.execute_script(
        "const c = document.getElementById('canvas'); const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        "let n = 0; for (let i = 0; i < d.length; i += 4) if (d[i] !== d[i + 1] || d[i + 1] !== d[i + 2]) n++; return n;")
    check("masks are painted on the canvas", painted > 0, painted)
    if args.screenshot:
        driver.save_screenshot(args.screenshot)
        print("screenshot:", args.screenshot)

    bad = open(args.bad_file, "rb").read()
    bad_status, bad_answer = api_predict(key, bad, conf)
    driver.find_element(By.ID, "file").send_keys(os.path.abspath(args.bad_file))
    wait.until(lambda d: d.find_element(By.ID, "status").get_attribute("data-state") == "error")
    shown = driver.find_element(By.ID, "error").text
    check("a bad file shows the API's detail (%d)" % bad_status, bad_status >= 400 and shown == bad_answer["detail"], "%r vs %r" % (shown, bad_answer.get("detail")))
    check("nothing is left drawn after the error", driver.find_element(By.ID, "canvas").get_attribute("data-instances") == "0")

    # Sliding window from the page: what the API answers with the same window and overlap.
    url = "%s/v1/models/%s/predict?conf=%s&window=256x256&overlap=32x32" % (BASE, urllib.request.quote(key, safe=""), conf)
    with urllib.request.urlopen(urllib.request.Request(url, data=data, headers={"content-type": "application/octet-stream"}), timeout=120) as r:
        windowed = json.load(r)
    driver.find_element(By.ID, "window").send_keys("256x256")
    driver.find_element(By.ID, "overlap").send_keys("32x32")
    driver.find_element(By.ID, "file").send_keys(os.path.abspath(args.image))
    wait.until(lambda d: d.find_element(By.ID, "status").get_attribute("data-state") in ("done", "error"))
    drawn = int(driver.find_element(By.ID, "canvas").get_attribute("data-instances"))
    check("a sliding window set on the page draws what the API answers (%d in %d windows)" % (len(windowed["annotation"]["objects"]), len(windowed["slides"]) - 2),
          drawn == len(windowed["annotation"]["objects"]) and len(windowed["slides"]) > 3, drawn)
    for field in ("window", "overlap"):
        driver.find_element(By.ID, field).clear()
    if args.image_url:
        req = urllib.request.Request("%s/v1/models/%s/predict" % (BASE, urllib.request.quote(key, safe="")),
                                     data=json.dumps({"url": args.image_url, "settings": {"conf_thres": conf}}).encode(),
                                     headers={"content-type": "application/json"})
        url_answer = json.load(urllib.request.urlopen(req, timeout=120))
        field = driver.find_element(By.ID, "url")
        field.clear()
        field.send_keys(args.image_url)
        driver.find_element(By.ID, "go-url").click()
        wait.until(lambda d: d.find_element(By.ID, "status").get_attribute("data-state") in ("done", "error"))
        check("a pasted URL runs the model", driver.find_element(By.ID, "status").get_attribute("data-state") == "done", driver.find_element(By.ID, "error").text)
        drawn = int(driver.find_element(By.ID, "canvas").get_attribute("data-instances"))
        check("a pasted URL draws what the API answers", drawn == len(url_answer["annotation"]["objects"]), drawn)
    logs = [e for e in driver.get_log("browser") if e["level"] == "SEVERE" and "predict" not in e["message"]]
    check("no script errors in the console", not logs, logs)
finally:
    driver.quit()

print("BROWSER CHECK: %d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
