#!/usr/bin/python3
"""Check a report of `vpd report` in headless Chromium (Debian's `chromium`).

usage: check_report.py REPORT_DIR [--harvest RUN_DIR/harvest.h5 --max-cards N] [--screenshot OUT.png]
                       [--expect-note TEXT]...
  - the page is loaded from file:// with --dump-dom: the page's inline script marks
    <body data-images="ok"> when every <img> loaded with naturalWidth > 0 (an error event or a
    zero-size image gives "failed"); data-image-count must equal the <img> tags of the file,
    and every referenced image file must exist beside index.html;
  - no console output at all (--enable-logging=stderr: any "CONSOLE" line, e.g. "Uncaught ...");
  - the number of cards in the DOM equals what harvest.h5 holds: per layer min(N, subcomponents
    whose top list is non-empty);
  - a screenshot (1200x3000) is not blank: pixel standard deviation and the share of
    non-white pixels above small thresholds; every PNG plot is not blank either, every SVG drawing is
    well-formed with shapes in it.
"""
import argparse
import os
import re
import subprocess
import sys

import numpy as np


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


def chromium():
    for c in ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"):
        if os.path.exists(c):
            return c
    fail("no chromium: install Debian's chromium (tools/install-deps.sh)")


def run_chromium(args, url, timeout=180):
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
           "--enable-logging=stderr", "--v=0", "--virtual-time-budget=10000",
           ] + args + [url]
    import shutil
    import tempfile
    prof = tempfile.mkdtemp(prefix="vpd-report-chromium-")
    try:
        return subprocess.run(cmd[:1] + [f"--user-data-dir={prof}"] + cmd[1:], capture_output=True, text=True,
                              timeout=timeout)
    finally:
        shutil.rmtree(prof, ignore_errors=True)


def blank_stats(path):
    import matplotlib.image as mpimg
    a = mpimg.imread(path)
    if a.dtype != np.float32 and a.dtype != np.float64:
        a = a / 255.0
    rgb = a[..., :3]
    nonwhite = (rgb.min(-1) < 0.95).mean()
    return float(rgb.std()), float(nonwhite), a.shape


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("report_dir")
    ap.add_argument("--harvest")
    ap.add_argument("--max-cards", type=int, default=20)
    ap.add_argument("--screenshot")
    ap.add_argument("--expect-note", action="append", default=[])
    a = ap.parse_args()
    index = os.path.abspath(os.path.join(a.report_dir, "index.html"))
    if not os.path.exists(index):
        fail(f"{index}: missing")
    src = open(index, encoding="utf-8").read()
    for note in a.expect_note:
        if note not in src:
            fail(f"{index} does not say '{note}'")
    imgs = re.findall(r'<img src="([^"]+)"', src)
    for i in imgs:
        if "://" in i or i.startswith("/"):
            fail(f"image {i} is not a file beside index.html")
        if not os.path.exists(os.path.join(a.report_dir, i)):
            fail(f"image {i} missing from {a.report_dir}")
    if re.search(r'(src|href)="(https?:)?//', src):
        fail("the page references the network")
    url = "file://" + index
    p = run_chromium(["--dump-dom"], url)
    dom = p.stdout
    m = re.search(r"<body[^>]*>", dom)
    if p.returncode != 0 or not m:
        fail(f"chromium --dump-dom failed (exit {p.returncode}): {p.stderr[-2000:]}")
    body = m.group(0)
    st = re.search(r'data-images="(\w+)"', body)
    if not st:
        fail(f"the page's image check did not finish: {body}")
    if st.group(1) != "ok":
        fail(f"images did not load in chromium: {body}")
    n_img = int(re.search(r'data-image-count="(\d+)"', body).group(1))
    if n_img != len(imgs):
        fail(f"chromium saw {n_img} images, index.html has {len(imgs)}")
    console = [ln for ln in p.stderr.splitlines() if ":CONSOLE" in ln or "Uncaught" in ln]
    if console:
        fail("console output: " + " | ".join(console[:5]))
    for i in imgs:
        if i.endswith(".svg"):  # a drawing (vpd attrib's graph): well-formed SVG with shapes in it
            import xml.etree.ElementTree as ET
            try:
                root = ET.parse(os.path.join(a.report_dir, i)).getroot()
            except ET.ParseError as e:
                fail(f"drawing {i} is not well-formed SVG: {e}")
            shapes = [el for el in root.iter() if el.tag.split("}")[-1] in ("path", "ellipse", "polygon", "rect", "line", "circle", "text")]
            if len(shapes) < 3:
                fail(f"drawing {i} has {len(shapes)} shapes: looks empty")
            continue
        sd, nw, _ = blank_stats(os.path.join(a.report_dir, i))
        if sd < 0.02 or nw < 0.005:
            fail(f"plot {i} looks blank (pixel std {sd:.4f}, non-white share {nw:.4f})")
    cards = len(re.findall(r'<div class="card"', dom))
    if a.harvest:
        import h5py
        with h5py.File(a.harvest, "r") as f:
            layers = f.attrs["layers"]
            layers = (layers.decode() if isinstance(layers, bytes) else layers).split("\n")
            want = sum(min(a.max_cards, int((f["layers"][n]["top/n"][()] > 0).sum())) for n in layers)
        if cards != want:
            fail(f"{cards} cards rendered, harvest.h5 has {want} (max {a.max_cards} per layer)")
        if want == 0:
            fail("harvest.h5 yields no cards: the test would check nothing")
    print(f"dom: {len(imgs)} images loaded, {cards} cards, no console output")
    if a.screenshot:
        shot = os.path.abspath(a.screenshot)
        if os.path.exists(shot):
            os.remove(shot)
        p = run_chromium([f"--screenshot={shot}", "--window-size=1200,3000"], url)
        if not os.path.exists(shot):
            fail(f"no screenshot (exit {p.returncode}): {p.stderr[-2000:]}")
        sd, nw, shape = blank_stats(shot)
        if shape[0] < 2000 or shape[1] < 1000 or sd < 0.05 or nw < 0.02:
            fail(f"screenshot {shot} looks blank: {shape}, pixel std {sd:.4f}, non-white share {nw:.4f}")
        print(f"screenshot {shot}: {shape[1]}x{shape[0]}, pixel std {sd:.3f}, non-white {100 * nw:.1f}%")
    print("report ok")


if __name__ == "__main__":
    main()
