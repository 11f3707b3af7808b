"""Open a generated report in real headless Chromium: offline, charts drawn, thumbnails loaded.

Needs the Debian ``chromium`` package (or ``FER_VIDEO_CHROMIUM=/path/to/chrome``) and the
Python ``playwright`` package (no ``playwright install``: we drive the system browser).
Skipped locally when either is missing; fails under ``CI=true`` so CI cannot pass silently.
"""
from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from fer_video.aggregate import summarize_faces
from fer_video.records import FacePrediction, VideoInfo
from fer_video.report import emotion_colors, frames_dataframe, write_html

CLASSES = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def _chromium_path() -> str | None:
    env = os.environ.get("FER_VIDEO_CHROMIUM")
    if env:
        return env if os.path.exists(env) else None
    for cand in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if cand and os.path.exists(cand):
            return cand
    return None


@pytest.fixture(scope="module")
def browser():
    missing = []
    exe = _chromium_path()
    if exe is None:
        missing.append("Chromium (apt-get install -y chromium, or set FER_VIDEO_CHROMIUM)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing.append("the playwright Python package (pip install playwright)")
    if missing:
        msg = "browser test needs " + " and ".join(missing)
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail(msg + " (CI=true: refusing to skip)")
        pytest.skip(msg)
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=exe, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def _jpeg(color, size=(96, 96)) -> bytes:
    from PIL import Image, ImageDraw
    img = Image.new("RGB", size, color)
    d = ImageDraw.Draw(img)
    d.ellipse((18, 14, 78, 86), fill=(236, 200, 170))
    d.ellipse((34, 38, 42, 46), fill=(40, 40, 40))
    d.ellipse((54, 38, 62, 46), fill=(40, 40, 40))
    d.arc((36, 52, 60, 72), 20, 160, fill=(120, 40, 40), width=3)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=85)
    return buf.getvalue()


def _predictions() -> list[FacePrediction]:
    step = 0.25
    out = []
    for i in range(40):                           # face 1: happy, turning sad halfway
        t = i * step
        logits = np.zeros(len(CLASSES))
        logits[3] = 3.0 * np.cos(np.pi * i / 39)
        logits[4] = -logits[3]
        logits[6] = 0.5
        p = np.exp(logits) / np.exp(logits).sum()
        out.append(FacePrediction(1, i * 6, t, (100.0, 80.0, 180.0, 170.0), 0.99, tuple(p)))
    for i in list(range(0, 14)) + list(range(22, 40)):   # face 2: a gap from 3.5 s to 5.5 s
        t = i * step
        logits = np.array([0.2, -1, 0.1, 0.3, 0.0, 2.0 * np.sin(i / 4), 1.2])
        p = np.exp(logits) / np.exp(logits).sum()
        out.append(FacePrediction(2, i * 6, t, (300.0, 90.0, 370.0, 175.0), 0.95, tuple(p)))
    return out


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    preds = _predictions()
    faces = summarize_faces(preds, CLASSES, sample_step_s=0.25, duration_s=10.0,
                            smoothing_window_s=1.0)
    path = tmp_path_factory.mktemp("report") / "clip.html"
    info = VideoInfo(path="/videos/clip.mp4", size_bytes=1234567, container="mov,mp4,m4a,3gp,3g2,mj2",
                     codec="h264", width=640, height=360, rotation=0, fps=24.0, duration_s=10.0)
    write_html(path, info=info, faces=faces, frames=frames_dataframe(preds, CLASSES),
               classes=CLASSES, thumbnails={1: _jpeg((70, 110, 160)), 2: _jpeg((150, 90, 60))},
               settings={"sample_step_s": 0.25, "smoothing_window_s": 1.0},
               model={"name": "test-model", "classes": CLASSES, "input_size": 48}, wall_s=3.2,
               detection={"keyframe_every": 5, "sampled_frames": 40, "keyframes": 9,
                          "roi_frames": 31, "shot_cuts": 0, "lost_tracks": 1,
                          "window_searches": 2},
               timings={"decode": 0.41, "detect": 1.9, "classify": 0.8})
    return path


def test_report_shows_how_faces_were_searched_and_stage_times(browser, report):
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.goto(report.as_uri(), wait_until="load")
    section = page.locator("#processing")
    assert section.is_visible()
    text = section.inner_text()
    page.close()
    assert "40 sampled frames: 9 searched as a whole" in text
    assert "1 where a tracked face was lost" in text and "31 searched only" in text
    assert "2 of them with a wider window search" in text
    assert "detect\t1.900" in text and "decode\t0.410" in text, text


def test_report_renders_offline_with_charts_and_thumbnails(browser, report, tmp_path):
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(report.as_uri(), wait_until="load")

    # 1. No request other than the file itself (data: URIs are inline, not network).
    others = [u for u in requests if u != report.as_uri() and not u.startswith("data:")]
    assert others == [], f"report made requests: {others}"
    assert report.as_uri() in requests

    # 2. Charts: each face has a timeline SVG with visibly drawn area paths.
    charts = page.evaluate("""() => [...document.querySelectorAll('svg.timeline')].map(svg =>
        [...svg.querySelectorAll('path.area')].map(p => {
            const b = p.getBBox();
            return {len: p.getTotalLength(), w: b.width, h: b.height,
                    fill: getComputedStyle(p).fill};
        }))""")
    assert len(charts) == 2
    for paths in charts:
        assert len(paths) >= 2
        drawn = [p for p in paths if p["len"] > 50 and p["w"] > 100 and p["h"] > 5]
        assert len(drawn) >= 2, paths
    share_rects = page.evaluate(
        "() => [...document.querySelectorAll('svg.share rect')].map(r => r.getBBox().width)")
    assert len(share_rects) >= 2 and max(share_rects) > 50

    # 3. Thumbnails decoded.
    imgs = page.evaluate("""() => [...document.querySelectorAll('img.thumb')].map(i =>
        ({complete: i.complete, w: i.naturalWidth, h: i.naturalHeight}))""")
    assert len(imgs) == 2
    assert all(i["complete"] and i["w"] == 96 and i["h"] == 96 for i in imgs), imgs

    # 4. The first chart has coloured pixels on screen, in the report's emotion colours.
    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    box = page.locator("svg.timeline").first.bounding_box()
    page.close()
    assert box and box["width"] > 300 and box["height"] > 80
    from PIL import Image
    with Image.open(shot) as im:
        chart = np.asarray(im.convert("RGB").crop(
            (int(box["x"]), int(box["y"]), int(box["x"] + box["width"]),
             int(box["y"] + box["height"]))), dtype=np.int16)
    saturation = chart.max(axis=2) - chart.min(axis=2)
    coloured = saturation > 60
    assert coloured.mean() > 0.2, f"only {coloured.mean():.1%} of the chart is coloured"
    # The dominant colours of face 1 (happy, sad) must be present.
    colors = emotion_colors(CLASSES)
    for name in ("happy", "sad"):
        rgb = np.array([int(colors[name][k:k + 2], 16) for k in (1, 3, 5)])
        near = (np.abs(chart - rgb).sum(axis=2) < 40).mean()
        assert near > 0.02, f"{name} colour {colors[name]} covers only {near:.1%} of the chart"
    if os.environ.get("FER_VIDEO_KEEP_SCREENSHOT"):
        shutil.copy(shot, os.environ["FER_VIDEO_KEEP_SCREENSHOT"])


def _index(tmp_path: Path) -> tuple[Path, list[str]]:
    """index.html of a batch rooted at ``tmp_path/in`` with a 250-character name, one 30
    folders deep, a name with a right-to-left override, a failed one and a plain one."""
    from fer_video.report import SummaryRow, write_index_html

    root = tmp_path / "in"
    deep = "/".join(f"folder_{k:02d}_with_a_longish_name" for k in range(30))
    rels = ["L" * 246 + ".mp4", f"{deep}/clip.mp4", "evil\u202egnp.mp4", "plain.mp4"]
    rows = [SummaryRow(input=str(root / rel), status="ok", duration_s=12.5, n_faces=2,
                       dominant="1:happy;2:neutral", report=f"{Path(rel).stem}/x.html", wall_s=3.0)
            for rel in rels]
    rows.insert(3, SummaryRow(input=str(root / ("F" * 200 + ".mov")), status="failed",
                              reason="corrupt QuickTime container: " + "x" * 300, wall_s=0.1))
    path = tmp_path / "out" / "index.html"
    write_index_html(path, rows, root=root)
    return path, rels


_MEASURE = """() => {
    const vw = document.documentElement.clientWidth;
    const rows = [...document.querySelectorAll('table.inputs tbody tr')].map(tr => {
        const cells = [...tr.cells].map(td => td.getBoundingClientRect());
        return {name: tr.cells[0].textContent, href: tr.querySelector('a') ?
                    tr.querySelector('a').getAttribute('href') : null,
                state_right: cells[1].right, last_right: cells[cells.length - 1].right,
                state_width: cells[1].width};
    });
    return {vw, scroll: document.documentElement.scrollWidth, rows};
}"""


def test_index_keeps_status_columns_on_a_1280px_screen_and_shows_bidi_visibly(browser, tmp_path):
    """With a 250-character name, a deep folder and a right-to-left override among the
    inputs, every row's status (and last) column ends inside a 1280-px viewport, the page
    does not scroll sideways, names are relative to the batch folder, and the bidi name
    shows its override as ⟨U+202E⟩ (the link keeps the real bytes). Without the wrapping
    rules the same page would push the status column off the screen (the control)."""
    path, rels = _index(tmp_path)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(path.as_uri(), wait_until="load")
    got = page.evaluate(_MEASURE)
    assert got["vw"] == 1280 and got["scroll"] <= got["vw"], got["scroll"]
    for row in got["rows"]:
        assert row["state_right"] <= got["vw"] and row["last_right"] <= got["vw"], row
        assert row["state_width"] >= 60, row              # the status text fits, unsqueezed
    names = [r["name"] for r in got["rows"]]
    assert names[0] == rels[0] and names[1] == rels[1]   # relative to the batch folder
    assert not any(str(tmp_path) in n for n in names)
    bidi = got["rows"][2]
    assert bidi["name"] == "evil⟨U+202E⟩gnp.mp4" and "\u202e" not in bidi["name"]
    assert bidi["href"] == "evil%E2%80%AEgnp/x.html"
    header = page.locator("header").inner_text()
    assert str(tmp_path / "in") in header
    # the control: the same page with the names' wrapping rules undone overflows
    page.add_style_tag(content="table.inputs td.name { overflow-wrap: normal !important;"
                               " word-break: normal !important; }")
    worse = page.evaluate(_MEASURE)
    page.close()
    assert max(r["state_right"] for r in worse["rows"]) > worse["vw"]
