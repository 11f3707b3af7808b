import csv
import json
import re
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from fer_video.aggregate import summarize_faces
from fer_video.records import FacePrediction, FaceSummary, Segment, VideoInfo
from fer_video.report import (MAX_CHART_POINTS, frames_table, SUMMARY_COLUMNS, SummaryRow, build_report_json,
                              csv_text, display_text, emotion_colors, format_label,
                              frames_dataframe, shown_name, write_frames_csv, write_html, write_index_html, write_json,
                              write_summary_csv)

CLASSES = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
NASTY = """/data/in & "quoted" 'clip' <img src=x onerror=alert(1)><b>bad.mp4"""


def info(path="/v/clip.mp4", duration=4.0, is_image=False):
    return VideoInfo(path=path, size_bytes=2048, container="mov,mp4,m4a,3gp,3g2,mj2",
                     codec="h264", width=640, height=360, rotation=90, fps=25.0,
                     duration_s=duration, is_image=is_image)


def predictions(n=8, faces=(2, 1), seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        for f in faces:
            p = rng.dirichlet(np.ones(len(CLASSES))).astype(np.float32)  # float32 like a model
            out.append(FacePrediction(face_id=f, frame_index=i * 12, time_s=i * 0.5 + 1e-4,
                                      box=(10.123, 20.0, 50.55, 70.0), det_score=0.987654,
                                      probs=tuple(float(x) for x in p)))
    return out


def summary(face_id=1, emotion="happy"):
    mean = {c: (0.4 if c == emotion else 0.1) for c in CLASSES}
    return FaceSummary(face_id=face_id, first_seen_s=0.0, last_seen_s=3.5, n_frames=8,
                       dominant_emotion=emotion, mean_probs=mean,
                       segments=[Segment(0.0, 2.0, emotion), Segment(2.0, 4.0, "sad")])


class TagBalance(HTMLParser):
    VOID = {"meta", "img", "br", "wbr", "hr", "input", "link", "rect", "line", "path", "stop"}

    def __init__(self):
        super().__init__()
        self.stack, self.errors, self.tags = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag):
        if tag in self.VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}>, open: {self.stack[-3:]}")
        else:
            self.stack.pop()


def parse(html: str) -> TagBalance:
    p = TagBalance()
    p.feed(html)
    p.close()
    assert not p.errors and p.stack == [], (p.errors, p.stack)
    return p


def no_external_refs(html: str):
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", html, re.I)
    assert "@import" not in html and "url(http" not in html


# ---------------------------------------------------------------- frames.csv

def test_frames_dataframe_columns_order_and_emotion():
    preds = predictions()
    df = frames_dataframe(preds, CLASSES)
    assert list(df.columns) == ["time_s", "frame_index", "face_id", "x1", "y1", "x2", "y2",
                                "det_score", *CLASSES, "emotion"]
    assert len(df) == 16
    assert list(df["face_id"][:2]) == [1, 2]                      # sorted by time, then face
    assert df["time_s"].is_monotonic_increasing
    np.testing.assert_allclose(df[CLASSES].sum(axis=1), 1.0, atol=1e-9)
    assert (df["emotion"] == df[CLASSES].idxmax(axis=1)).all()


def test_frames_csv_round_trip(tmp_path):
    path = tmp_path / "clip.frames.csv"
    write_frames_csv(frames_dataframe(predictions(), CLASSES), path)
    lines = path.read_text().splitlines()
    assert lines[0] == ",".join(["time_s", "frame_index", "face_id", "x1", "y1", "x2", "y2",
                                 "det_score", *CLASSES, "emotion"])
    first = lines[1].split(",")
    assert first[:8] == ["0.000", "0", "1", "10.1", "20.0", f"{50.55:.1f}", "70.0", "0.9877"]
    assert all(re.fullmatch(r"\d\.\d{6}", v) for v in first[8:8 + len(CLASSES)])
    back = pd.read_csv(path)
    assert list(back.columns) == lines[0].split(",")
    assert np.abs(back[CLASSES].sum(axis=1) - 1).max() < 1e-3
    assert set(back["emotion"]) <= set(CLASSES)
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))


def test_empty_frames_table_has_header(tmp_path):
    df = frames_dataframe([], CLASSES)
    assert len(df) == 0 and list(df.columns)[-1] == "emotion" and len(df.columns) == 8 + 7 + 1
    path = tmp_path / "x.frames.csv"
    write_frames_csv(df, path)
    assert path.read_text().splitlines() == [",".join(df.columns)]


def test_frames_table_is_the_dataframe_and_writes_the_same_bytes(tmp_path):
    """The report writers read a numpy FramesTable (no pandas import in analyze); it holds
    the DataFrame's rows in the same order, and frames.csv and the HTML written from either
    are byte for byte the same."""
    preds = predictions()
    table, df = frames_table(preds, CLASSES), frames_dataframe(preds, CLASSES)
    assert table.columns == list(df.columns) and len(table) == len(df) == 16
    for c in table.columns:
        assert list(table[c]) == list(df[c]), c
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    write_frames_csv(table, a)
    write_frames_csv(df, b)
    assert a.read_bytes() == b.read_bytes()
    faces = summarize_faces(preds, CLASSES, sample_step_s=0.2, duration_s=4.0)
    for name, frames in (("a.html", table), ("b.html", df)):
        write_html(tmp_path / name, info=info(), faces=faces, frames=frames, classes=CLASSES,
                   thumbnails={}, settings={"fps": 5.0}, model={"name": "m"}, wall_s=1.0)
    assert (tmp_path / "a.html").read_bytes() == (tmp_path / "b.html").read_bytes()


def test_analyze_writes_its_reports_without_importing_pandas(tmp_path):
    """pandas costs ~0.5 s of start-up; analyze's report path does not need it."""
    import subprocess
    import sys
    from pathlib import Path

    clip = Path(__file__).resolve().parents[1] / "sample_videos" / "pyfeat_single_face.mp4"
    code = ("import sys; from fer_video.cli import main; "
            f"rc = main(['analyze', {str(clip)!r}, '--out', {str(tmp_path)!r}, '--quiet']); "
            "print(rc, 'pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.stdout.split() == ["0", "False"], out.stderr[-2000:]
    assert (tmp_path / "pyfeat_single_face" / "pyfeat_single_face.frames.csv").is_file()


def test_class_name_clash_rejected():
    with pytest.raises(ValueError):
        frames_dataframe([], ["happy", "time_s"])


# ---------------------------------------------------------------- JSON

def test_report_json_fields_and_types(tmp_path):
    doc = build_report_json(
        info=info(), settings={"sample_step_s": np.float64(0.5), "window": 1.0},
        model={"name": "m", "classes": CLASSES, "input_size": 48, "sha256": "ab" * 32},
        faces=[summary(1), summary(2, "sad")], timings={"decode": 1.2345, "classify": np.float32(2)},
        wall_s=4.56789, versions={"fer_video": "0.1.0", "torch": "2.4"})
    path = tmp_path / "clip.json"
    write_json(doc, path)
    back = json.loads(path.read_text())
    assert back == doc
    inp = back["input"]
    for key, typ in [("path", str), ("size_bytes", int), ("container", str), ("codec", str),
                     ("width", int), ("height", int), ("rotation", int), ("fps", float),
                     ("duration_s", float)]:
        assert isinstance(inp[key], typ), key
    assert inp["rotation"] == 90
    assert back["settings"]["sample_step_s"] == 0.5
    assert back["model"]["classes"] == CLASSES
    assert back["versions"]["fer_video"] == "0.1.0"
    assert back["wall_s"] == 4.568
    assert set(back["timings_s"]) == {"decode", "classify"}
    assert back["timings_s"]["decode"] == pytest.approx(1.2345, abs=6e-4)
    assert back["timings_s"]["classify"] == 2.0
    assert back["n_faces"] == 2
    f = back["faces"][0]
    assert set(f) == {"face_id", "first_seen_s", "last_seen_s", "n_frames", "dominant_emotion",
                      "mean_probs", "segments"}
    assert isinstance(f["face_id"], int) and isinstance(f["n_frames"], int)
    assert isinstance(f["first_seen_s"], float) and isinstance(f["mean_probs"]["happy"], float)
    assert list(f["mean_probs"]) == CLASSES
    assert f["segments"][0] == {"start_s": 0.0, "end_s": 2.0, "emotion": "happy"}



def test_report_json_detection_counts():
    """``detection``: the setting, the frames sampled and every DetectionStats count, as
    plain ints, after the timings; left out when not given."""
    from fer_video.records import DetectionStats
    from fer_video.report import detection_to_json

    stats = DetectionStats(keyframes=np.int64(4), roi_frames=8, shot_cuts=1, lost_tracks=0)
    det = detection_to_json(stats, keyframe_every=5, sampled_frames=12)
    assert det == {"keyframe_every": 5, "sampled_frames": 12, "keyframes": 4, "roi_frames": 8,
                   "shot_cuts": 1, "lost_tracks": 0, "window_searches": 0}
    assert all(type(v) is int for v in det.values())
    kw = dict(info=info(), settings={}, model={}, faces=[], timings={}, wall_s=1.0, versions={})
    doc = build_report_json(**kw, detection=det)
    assert doc["detection"] == det
    assert list(doc).index("detection") == list(doc).index("timings_s") + 1
    assert "detection" not in build_report_json(**kw)

def test_detection_sentence_names_every_count():
    from fer_video.report_html import detection_sentence
    det = {"keyframe_every": 5, "sampled_frames": 40, "keyframes": 10, "roi_frames": 30,
           "shot_cuts": 1, "lost_tracks": 2, "window_searches": 4}
    assert detection_sentence(det) == (
        "40 sampled frames: 10 searched as a whole (7 scheduled: the first and then at most "
        "every 5th; 1 after a shot cut; 2 where a tracked face was lost), 30 searched only "
        "where tracked faces were expected (4 of them with a wider window search).")
    assert detection_sentence({**det, "shot_cuts": 0, "lost_tracks": 0, "window_searches": 0,
                               "keyframe_every": 2}) == (
        "40 sampled frames: 10 searched as a whole (10 scheduled: the first and then at most "
        "every 2nd), 30 searched only where tracked faces were expected.")
    every = {"keyframe_every": 1, "sampled_frames": 1, "keyframes": 1, "roi_frames": 0}
    assert detection_sentence(every) == "1 sampled frame, each searched as a whole."
    lost = {"keyframe_every": 5, "sampled_frames": 3, "keyframes": 3, "roi_frames": 0,
            "lost_tracks": 2}           # window_searches absent: a report before version 10
    assert detection_sentence(lost) == (
        "3 sampled frames: 3 searched as a whole (1 scheduled: the first and then at most "
        "every 5th; 2 where a tracked face was lost), 0 searched only where tracked faces "
        "were expected.")


def test_write_json_rejects_nothing_nonfinite(tmp_path):
    path = tmp_path / "x.json"
    write_json({"fps": float("nan"), "a": np.int64(3), "b": np.array([1.5])}, path)
    assert json.loads(path.read_text()) == {"fps": None, "a": 3, "b": [1.5]}


# ---------------------------------------------------------------- HTML

def render(tmp_path, *, faces, preds, path=NASTY, duration=4.0, is_image=False, thumbs=None):
    out = tmp_path / "r.html"
    write_html(out, info=info(path, duration, is_image), faces=faces,
               frames=frames_dataframe(preds, CLASSES), classes=CLASSES,
               thumbnails=thumbs if thumbs is not None else {},
               settings={"sample_step_s": 0.5, "note": "<i>x</i>"},
               model={"name": "m&m", "classes": CLASSES}, wall_s=1.0)
    return out.read_text()


def test_html_escapes_nasty_filename(tmp_path):
    html = render(tmp_path, faces=[summary(1), summary(2)], preds=predictions(),
                  thumbs={1: b"\xff\xd8\xff\xe0fakejpeg"})
    assert "<img src=x" not in html and "<b>bad" not in html and "<i>x" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;&lt;b&gt;bad.mp4" in html
    assert "/data/in &amp; &#34;quoted&#34; &#39;clip&#39; &lt;img" in html
    assert "m&amp;m" in html
    p = parse(html)
    title = re.search(r"<title>(.*?)</title>", html, re.S).group(1)
    assert title.startswith("in &amp; &#34;quoted&#34; &#39;clip&#39; &lt;img src=x")
    no_external_refs(html)
    imgs = [a for t, a in p.tags if t == "img"]
    assert len(imgs) == 1 and imgs[0]["src"].startswith("data:image/jpeg;base64,/9j/")
    assert html.count('class="timeline"') == 2
    # Consistent colours: the same class has the same fill in both charts.
    happy = emotion_colors(CLASSES)["happy"]
    assert html.count(f'fill="{happy}"') >= 2


BIDI_AND_CONTROLS = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c" \
    "\x00\x01\t\n\r\x1b\x7f\x80\x85\x9f\u2028\u2029"


def test_display_text_shows_controls_and_bidi_characters_as_visible_escapes():
    assert display_text("evil\u202egnp.mp4") == "evil⟨U+202E⟩gnp.mp4"
    assert display_text("a\nb\tc.mp4") == "a⟨U+000A⟩b⟨U+0009⟩c.mp4"
    shown = display_text("x" + BIDI_AND_CONTROLS + "y")
    assert shown == "x" + "".join(f"⟨U+{ord(c):04X}⟩" for c in BIDI_AND_CONTROLS) + "y"
    assert shown.isprintable()
    assert display_text("clip_\udcff.mp4") == "clip_\\xff.mp4"      # an undecodable byte
    for plain in ("plain.mp4", "caf\u00e9 \u65e5\u672c \u0645\u0644\u0641.mp4", "\u00a0 nbsp"):
        assert display_text(plain) == plain


def test_report_page_shows_a_bidi_name_visibly_in_title_heading_and_path(tmp_path):
    html = render(tmp_path, faces=[summary(1)], preds=predictions(faces=(1,)),
                  path="/v/sub\u2067dir/evil\u202egnp\n.mp4")
    assert "\u202e" not in html and "\u2067" not in html
    title = re.search(r"<title>(.*?)</title>", html, re.S).group(1)
    h1 = re.search(r"<h1>(.*?)</h1>", html, re.S).group(1)
    assert title.startswith("evil⟨U+202E⟩gnp⟨U+000A⟩.mp4 ") and h1 == "evil⟨U+202E⟩gnp⟨U+000A⟩.mp4"
    assert '<p class="path">/v/sub⟨U+2067⟩dir/evil⟨U+202E⟩gnp⟨U+000A⟩.mp4</p>' in html
    assert ">h264 / MP4<" in html


def test_format_label_names_the_family_member():
    mp4_family = "mov,mp4,m4a,3gp,3g2,mj2"
    assert format_label(mp4_family, "/v/clip.mp4") == "MP4"
    assert format_label(mp4_family, "/v/IMG_0001.MOV") == "MOV"
    assert format_label(mp4_family, "/v/clip.bin") == "MOV"     # unknown extension: the first name
    assert format_label("matroska,webm", "/v/a.webm") == "WEBM"
    assert format_label("avi", "/v/a.avi") == "AVI"
    assert format_label("image", "/v/still.png") == "IMAGE"
    assert format_label("", "/v/x") == "unknown"


def test_html_shows_codec_and_format(tmp_path):
    html = render(tmp_path, faces=[summary(1)], preds=predictions(faces=(1,)))
    assert 'title="FFmpeg demuxer: mov,mp4,m4a,3gp,3g2,mj2">h264 / MP4</dd>' in html


def test_html_no_faces_is_a_valid_report(tmp_path):
    html = render(tmp_path, faces=[], preds=[], path="/v/empty.mp4")
    parse(html)
    assert "No faces detected" in html
    assert "<svg" not in html
    assert "empty.mp4" in html


def test_html_still_image_has_share_but_no_timeline(tmp_path):
    preds = [p for p in predictions(n=1, faces=(1,))]
    html = render(tmp_path, faces=[summary(1)], preds=preds, duration=0.0, is_image=True)
    parse(html)
    assert 'class="share"' in html and 'class="timeline"' not in html
    assert "still image" in html


def test_html_crowd_stays_small(tmp_path):
    n_faces, n = 20, 4000
    rows = []
    rng = np.random.default_rng(1)
    for f in range(1, n_faces + 1):
        t = np.arange(n) * 0.1
        p = rng.dirichlet(np.ones(len(CLASSES)), size=n)
        d = pd.DataFrame(p, columns=CLASSES)
        d.insert(0, "face_id", f)
        d.insert(0, "time_s", t)
        rows.append(d)
    frames = pd.concat(rows, ignore_index=True)
    faces = [summary(f) for f in range(1, n_faces + 1)]
    out = tmp_path / "crowd.html"
    write_html(out, info=info(duration=400.0), faces=faces, frames=frames, classes=CLASSES,
               thumbnails={f: b"\xff\xd8" + bytes(3000) for f in range(1, n_faces + 1)},
               settings={}, model={}, wall_s=1.0)
    html = out.read_text()
    parse(html)
    assert html.count('class="timeline"') == n_faces
    assert len(html.encode()) < 1_500_000, len(html)
    # No path has more vertices than the point budget allows (+1 hold point, x2 for the outline).
    for d in re.findall(r'<path class="area" d="([^"]*)"', html):
        assert d.count("L") + 1 <= 2 * (MAX_CHART_POINTS + 1)


# ---------------------------------------------------------------- folders

def rows():
    return [SummaryRow(input="in/a&b <1>.mp4", status="ok", reason="", duration_s=12.3456,
                       n_faces=2, dominant="1:happy;2:neutral", report="a&b <1>/a&b <1>.html",
                       wall_s=3.21),
            SummaryRow(input="in/broken.mp4", status="failed",
                       reason="corrupt: <moov atom> not found", report="", wall_s=0.1)]


def test_summary_csv(tmp_path):
    path = tmp_path / "summary.csv"
    write_summary_csv(path, rows())
    with open(path, newline="") as f:
        got = list(csv.DictReader(f))
    assert list(got[0]) == SUMMARY_COLUMNS == ["input", "status", "reason", "duration_s",
                                               "n_faces", "dominant", "report", "wall_s"]
    assert got[0]["duration_s"] == "12.346" and got[0]["n_faces"] == "2"
    assert got[0]["dominant"] == "1:happy;2:neutral"
    assert got[1]["status"] == "failed" and got[1]["duration_s"] == "" and got[1]["report"] == ""


# Names a spreadsheet would evaluate (OWASP CSV injection), line breaks, separators, quotes.
HOSTILE = ["=HYPERLINK(\"http://x\",\"y\").mp4", "+1+1.mp4", "-x.mp4", "@SUM(1+1).mp4",
           "\t=1+1.mp4", "\r=1+1.mp4", "a\rb.mp4", "c\nd.mp4", "e\r\nf.mp4", "g,h;i\tj.mp4",
           'k "l".mp4', "'m.mp4", "'=n.mp4", "plain.mp4"]


def test_summary_csv_keeps_one_row_per_input_and_disarms_formulas(tmp_path):
    rows = [SummaryRow(input=name, status="failed", reason=f"-{name} failed", dominant="",
                       report=f"{name}/{name}.html", duration_s=-1.5, n_faces=0, wall_s=0.25)
            for name in HOSTILE]
    path = tmp_path / "summary.csv"
    write_summary_csv(path, rows)
    with open(path, newline="") as f:
        got = list(csv.reader(f))
    assert len(got) == 1 + len(HOSTILE)
    for name, cells in zip(HOSTILE, got[1:]):
        assert len(cells) == len(SUMMARY_COLUMNS)
        assert cells[0] == csv_text(name) and cells[6] == csv_text(f"{name}/{name}.html")
        assert cells[2] == "'-" + name + " failed"
        assert cells[3] == "-1.500" and cells[4] == "0" and cells[7] == "0.250"   # numbers as such
        for cell in (cells[0], cells[2], cells[6]):
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r"))
            unescaped = cell[1:] if cell.startswith("'") else cell          # the documented undo
            assert unescaped in (name, f"-{name} failed", f"{name}/{name}.html")
    assert got[-1][0] == "plain.mp4" and got[-2][0] == "''=n.mp4" and got[-3][0] == "''m.mp4"


def test_frames_csv_text_cells_are_disarmed_and_numbers_kept(tmp_path):
    classes = ["=1+1", "-sad", "happy"]
    preds = [FacePrediction(face_id=1, frame_index=0, time_s=0.0, box=(-3.25, -1.0, 5.0, 6.0),
                            det_score=0.9, probs=(0.7, 0.2, 0.1)),
             FacePrediction(face_id=1, frame_index=1, time_s=0.5, box=(1.0, 1.0, 5.0, 6.0),
                            det_score=0.9, probs=(0.1, 0.8, 0.1))]
    path = tmp_path / "x.frames.csv"
    write_frames_csv(frames_dataframe(preds, classes), path)
    with open(path, newline="") as f:
        header, first, second = list(csv.reader(f))
    assert header[8:] == ["'=1+1", "'-sad", "happy", "emotion"]
    assert first[3:5] == ["-3.2", "-1.0"] and first[-1] == "'=1+1" and second[-1] == "'-sad"


def test_index_html_links_and_escapes(tmp_path):
    path = tmp_path / "index.html"
    write_index_html(path, rows())
    html = path.read_text()
    p = parse(html)
    links = [a["href"] for t, a in p.tags if t == "a"]
    assert links == ["a%26b%20%3C1%3E/a%26b%20%3C1%3E.html"]
    assert "&lt;moov atom&gt;" in html and "<moov" not in html
    assert "1 ok, 1 failed" in html
    assert ">failed<" in html and ">ok<" in html
    no_external_refs(html)


def test_emotion_colors_distinct_and_stable():
    c = emotion_colors(CLASSES)
    assert len(set(c.values())) == len(CLASSES)
    assert emotion_colors(["happy", "x"])["happy"] == c["happy"]
    assert len(set(emotion_colors([f"c{i}" for i in range(12)]).values())) == 12


def test_index_html_lists_names_relative_to_the_batch_folder_and_visibly(tmp_path):
    root = tmp_path / "in"
    inputs = [root / "a" / "b" / "clip.mp4", root / "evil\u202egnp.mp4", tmp_path / "elsewhere.mp4",
              root / "clip_\udcff.mp4"]
    rows = [SummaryRow(input=str(p), status="ok", n_faces=0, report=f"r{k}/r{k}.html")
            for k, p in enumerate(inputs)]
    rows[1].report = "evil\u202egnp/evil\u202egnp.html"
    path = tmp_path / "index.html"
    write_index_html(path, rows, root=root)
    html = path.read_text(encoding="utf-8")
    p = parse(html)
    assert "\u202e" not in html
    cells = re.findall(r'<td class="name" title="([^"]*)">(.*?)</td>', html)
    shown = [re.sub(r"<[^>]+>", "", c) for _, c in cells]
    assert shown == ["a/b/clip.mp4", "evil⟨U+202E⟩gnp.mp4", str(tmp_path / "elsewhere.mp4"),
                     "clip_\\xff.mp4"]
    assert "a/<wbr>b/<wbr>clip.mp4" in cells[0][1]          # a line may break at each "/"
    assert cells[1][0] == str(root) + "/evil⟨U+202E⟩gnp.mp4"   # the tooltip: the full path
    links = [a["href"] for t, a in p.tags if t == "a"]
    assert links[1] == "evil%E2%80%AEgnp/evil%E2%80%AEgnp.html"
    assert f'names relative to <span class="root">{root}</span>' in html


def test_shown_name_is_relative_only_under_the_root(tmp_path):
    assert shown_name("/data/in/sub/x.mp4", "/data/in") == "sub/x.mp4"
    assert shown_name("/data/in/../other/x.mp4", "/data/in") == "/data/in/../other/x.mp4"
    assert shown_name("/data/inx/x.mp4", "/data/in") == "/data/inx/x.mp4"
    assert shown_name("x.mp4", None) == "x.mp4"
