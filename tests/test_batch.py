"""Folder runs: discovery, output layout without collisions, resume, Ctrl-C."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fer_video.batch import batch_root, discover, run_batch
from fer_video.errors import UsageError

from conftest import REPO, assert_no_traceback, output_files


def touch(root: Path, *rels: str) -> None:
    for rel in rels:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")


def test_discover_sorted_filtered_and_recursive(tmp_path):
    touch(tmp_path, "b.mp4", "a.MOV", "c.jpg", "notes.txt", ".hidden.mp4", "sub/d.mkv",
          "sub/deeper/e.png", ".git/f.mp4")
    jobs, is_batch = discover([tmp_path])
    assert is_batch
    assert [Path(j.path).name for j in jobs] == ["a.MOV", "b.mp4", "c.jpg"]
    jobs, _ = discover([tmp_path], recursive=True)
    assert [j.out_subdir for j in jobs] == ["a", "b", "c", "sub/d", "sub/deeper/e"]


def test_same_stem_never_collides(tmp_path):
    touch(tmp_path, "x/clip.mp4", "y/clip.mp4", "clip.mp4", "clip.mov", "z/Clip.mp4")
    jobs, _ = discover([tmp_path], recursive=True)
    subdirs = [j.out_subdir for j in jobs]
    assert len(set(s.casefold() for s in subdirs)) == len(subdirs) == 5
    assert subdirs == ["clip_mov", "clip_mp4", "x/clip", "y/clip", "z/Clip"]
    # several file arguments with one stem
    jobs, is_batch = discover([tmp_path / "x/clip.mp4", tmp_path / "y/clip.mp4"])
    assert is_batch and len({j.out_subdir for j in jobs}) == 2


def test_single_file_and_missing_paths(tmp_path):
    touch(tmp_path, "movie.mp4", "README")
    jobs, is_batch = discover([tmp_path / "movie.mp4"])
    assert not is_batch and jobs[0].out_subdir == "movie"
    jobs, _ = discover([tmp_path / "README"])           # a file argument is tried whatever its name
    assert jobs[0].out_subdir == "README"
    with pytest.raises(UsageError, match="no such file"):
        discover([tmp_path / "nope.mp4"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no video or image"):
        discover([tmp_path / "empty"])


def test_output_folder_inside_input_is_skipped(tmp_path):
    touch(tmp_path, "a.mp4", "reports/a/old.jpg")
    jobs, _ = discover([tmp_path], recursive=True, out_root=tmp_path / "reports")
    assert [j.out_subdir for j in jobs] == ["a"]


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory, samples):
    """Four short real clips in a folder tree (two share a stem)."""
    d = tmp_path_factory.mktemp("clips")
    src = (samples / "pyfeat_single_face.mp4").read_bytes()
    for rel in ("a_first.mp4", "b_second.mp4", "sub/c_third.mp4", "sub2/a_first.mp4"):
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_bytes(src)
    return d


@pytest.mark.slow
def test_rerun_skips_complete_and_overwrite_redoes(clip_folder, settings_for, tmp_path, capsys):
    settings = settings_for(fps=1.0)
    out = tmp_path / "out"
    assert run_batch([clip_folder], settings, out_root=out, recursive=True, quiet=True) == 0
    jsons = sorted(out.rglob("*.json"))
    assert [p.relative_to(out).as_posix() for p in jsons] == [
        "a_first/a_first.json", "b_second/b_second.json", "sub/c_third/c_third.json",
        "sub2/a_first/a_first.json"]
    rows = list(csv.DictReader(open(out / "summary.csv")))
    assert [r["status"] for r in rows] == ["ok"] * 4
    mtimes = {p: p.stat().st_mtime_ns for p in jsons}
    # an incomplete report (no JSON) is redone; complete ones are skipped
    (out / "b_second" / "b_second.json").unlink()
    capsys.readouterr()
    assert run_batch([clip_folder], settings, out_root=out, recursive=True) == 0
    err = capsys.readouterr().err
    assert err.count("skipped") == 3
    for p, m in mtimes.items():
        assert (p.stat().st_mtime_ns == m) == (p.name != "b_second.json")
    assert run_batch([clip_folder], settings, out_root=out, recursive=True, quiet=True,
                     overwrite=True) == 0
    assert all(p.stat().st_mtime_ns != m for p, m in mtimes.items())
    assert [r["status"] for r in csv.DictReader(open(out / "summary.csv"))] == ["ok"] * 4


def _complete(out: Path) -> list[str]:
    return sorted(p.parent.relative_to(out).as_posix() for p in out.rglob("*.json"))


@pytest.mark.slow
def test_interrupted_batch_resumes(clip_folder, model_path, tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "fer_video.cli", "analyze", str(clip_folder), "--recursive",
           "--fps", "3", "--model", str(model_path), "--device", "cpu", "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 300
    while not (out.exists() and _complete(out)):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no report completed in time"
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, (stdout, stderr)
    assert_no_traceback(stderr)
    assert "interrupted" in stderr
    done = _complete(out)
    assert 1 <= len(done) < 4
    # nothing half-written under a final name, no temp files left
    for p in output_files(out):
        assert not p.name.endswith(".tmp"), p
        if p.suffix == ".json":
            json.loads(p.read_text())
        if p.suffix == ".html":
            assert p.read_text(encoding="utf-8").rstrip().endswith("</html>")
    for d in done:
        stem = Path(d).name
        assert {f.name for f in (out / d).iterdir()} == {f"{stem}.frames.csv", f"{stem}.html",
                                                         f"{stem}.json"}
    first = out / done[0] / f"{Path(done[0]).name}.json"
    before = first.stat().st_mtime_ns
    rerun = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert first.stat().st_mtime_ns == before                     # skipped, not redone
    assert _complete(out) == ["a_first", "b_second", "sub/c_third", "sub2/a_first"]
    rows = list(csv.DictReader(open(out / "summary.csv")))
    assert [r["status"] for r in rows] == ["ok"] * 4


@pytest.mark.slow
def test_progress_bars_and_summary_table(samples, settings_for, tmp_path, capsys):
    code = run_batch([samples / "pyfeat_single_face.mp4", samples / "pyfeat_no_face.mp4"],
                     settings_for(fps=1.0), out_root=tmp_path, progress=True)
    assert code == 0
    out, err = capsys.readouterr()
    assert "inputs" in err                                   # the folder bar
    assert "fer-video summary" in out and "no face" in out and "1:" in out
    assert (tmp_path / "summary.csv").is_file() and (tmp_path / "index.html").is_file()
    index = (tmp_path / "index.html").read_text(encoding="utf-8")   # names relative to samples/
    assert f'title="{samples / "pyfeat_no_face.mp4"}"><a href="pyfeat_no_face/pyfeat_no_face.html">' \
           f"pyfeat_no_face.mp4</a>" in index and f'<span class="root">{samples}</span>' in index


def test_batch_root_is_the_folder_the_index_lists_inputs_from(tmp_path, monkeypatch):
    """A folder argument itself, a file argument's folder; several: their deepest common
    folder; absolute, without resolving links."""
    touch(tmp_path, "a/x.mp4", "a/b/y.mp4", "c/z.mp4")
    monkeypatch.chdir(tmp_path)
    assert batch_root(["a"]) == str(tmp_path / "a")
    assert batch_root(["a/x.mp4"]) == str(tmp_path / "a")
    assert batch_root(["a/b", "a/x.mp4"]) == str(tmp_path / "a")
    assert batch_root(["a", "c/z.mp4"]) == str(tmp_path)
    os.symlink(tmp_path / "a", tmp_path / "link")
    assert batch_root(["link"]) == str(tmp_path / "link")


def _odd_entries(d: Path) -> None:
    """Entries named like videos that are not regular files."""
    (d / "folder.mp4").mkdir()
    os.symlink(d / "gone.mp4", d / "broken.mp4")
    os.symlink(d / "loop.mp4", d / "loop.mp4")
    os.mkfifo(d / "pipe.mp4")
    os.symlink("/dev/null", d / "null.mp4")


def test_discover_lists_entries_that_are_not_regular_files(tmp_path):
    touch(tmp_path, "a.mp4", "sub/b.mp4")
    _odd_entries(tmp_path)
    os.symlink(tmp_path / "sub", tmp_path / "linked_dir.mp4")
    jobs, _ = discover([tmp_path])
    assert [Path(j.path).name for j in jobs] == [
        "a.mp4", "broken.mp4", "folder.mp4", "linked_dir.mp4", "loop.mp4", "null.mp4", "pipe.mp4"]
    jobs, _ = discover([tmp_path], recursive=True)   # folder.mp4 is walked: a folder, not an input
    assert [j.out_subdir for j in jobs] == [
        "a", "broken", "linked_dir", "loop", "null", "pipe", "sub/b"]
    jobs, _ = discover([tmp_path / "broken.mp4"])    # a broken link given directly is an input too
    assert [j.out_subdir for j in jobs] == ["broken"]


@pytest.mark.slow
def test_entries_that_are_not_regular_files_fail_in_the_summary(tmp_path, samples, settings_for,
                                                                capsys):
    d = tmp_path / "in"
    d.mkdir()
    (d / "clip.mp4").write_bytes((samples / "pyfeat_single_face.mp4").read_bytes())
    _odd_entries(d)
    out = tmp_path / "out"
    assert run_batch([d], settings_for(fps=1.0), out_root=out, quiet=True) == 1
    err = capsys.readouterr().err
    assert_no_traceback(err)
    rows = {Path(r["input"]).name: r for r in csv.DictReader(open(out / "summary.csv", newline=""))}
    assert rows.pop("clip.mp4")["status"] == "ok"
    assert {name: r["reason"] for name, r in rows.items()} == {
        "broken.mp4": f"broken symbolic link: its target {d / 'gone.mp4'} does not exist",
        "folder.mp4": "is a directory, not a video file",
        "loop.mp4": "symbolic link loop: the link leads back to itself",
        "null.mp4": "not a regular file: a character device",
        "pipe.mp4": "not a regular file: a FIFO (named pipe)",
    }
    assert all(r["status"] == "failed" and r["report"] == "" for r in rows.values())
    assert len([ln for ln in err.splitlines() if ln.startswith("error: ")]) == 5


@pytest.mark.slow
def test_hostile_and_long_names_each_get_one_summary_row_and_a_report(tmp_path, samples,
                                                                     settings_for, monkeypatch):
    """Real copies of a clip under names a spreadsheet would evaluate, with line breaks, with
    ':' (FFmpeg URL syntax), and of 250 characters (two alike but for their last one); beside
    them a text file named ``file:clip.mp4`` next to ``clip.mp4``. Run from inside the folder
    (``analyze .``), so the ``input`` cells begin with the names themselves."""
    from fer_video.report import csv_text

    d = tmp_path / "in"
    d.mkdir()
    clip = (samples / "pyfeat_single_face.mp4").read_bytes()
    long_a, long_b = "L" * 249 + "a", "L" * 249 + "b"
    names = ["=HYPERLINK(\"http:x\").mp4", "+1+1.mp4", "-x.mp4", "@SUM(1+1).mp4", "a\rb.mp4",
             "c\nd.mp4", "2024-01-01T10:30:00.mp4", "clip.mp4", long_a + ".mp4", long_b + ".mp4"]
    for name in names:
        (d / name).write_bytes(clip)
    (d / "file:clip.mp4").write_text("a text file, not a video\n" * 20)
    out = tmp_path / "out"
    monkeypatch.chdir(d)
    assert run_batch(["."], settings_for(fps=1.0), out_root=out, quiet=True) == 1
    with open(out / "summary.csv", newline="") as f:
        header, *rows = list(csv.reader(f))
    assert len(rows) == len(names) + 1
    by_input = {r[0]: dict(zip(header, r)) for r in rows}
    assert set(by_input) == {csv_text(n) for n in names + ["file:clip.mp4"]}
    text = by_input.pop("file:clip.mp4")
    assert text["status"] == "failed" and "text" in text["reason"]
    reports = set()
    for row in by_input.values():
        assert row["status"] == "ok" and row["n_faces"] == "1", row
        rel = row["report"][1:] if row["report"].startswith("'") else row["report"]
        assert (out / rel).is_file() and (out / rel).with_suffix(".json").is_file()
        reports.add(rel)
    assert len(reports) == len(names)
    long_reports = [r for r in reports if r.startswith("L")]
    assert len(long_reports) == 2 and all(len(Path(r).name) < 200 for r in long_reports)
    # a rerun finds the shortened reports again: nothing is redone
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*.json")}
    assert run_batch(["."], settings_for(fps=1.0), out_root=out, quiet=True) == 1
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.json")} == mtimes


def test_long_stems_are_shortened_stably_and_never_collide():
    from fer_video.batch import MAX_STEM_BYTES, report_stem

    assert report_stem("clip") == "clip" and report_stem("x" * MAX_STEM_BYTES) == "x" * MAX_STEM_BYTES
    long = ["L" * 249 + c for c in "ab"] + ["é" * 120, "é" * 119 + "e"]
    short = [report_stem(s) for s in long]
    assert len(set(short)) == len(long)
    assert short == [report_stem(s) for s in long]                       # stable across calls
    assert all(len(os.fsencode(s)) <= MAX_STEM_BYTES and "~" in s for s in short)
    assert short[0].startswith("L" * 100) and short[2].startswith("é" * 50)


def _same_size_pair(d: Path, samples: Path) -> tuple[Path, Path]:
    """``a.mp4`` (one face) and ``b.mp4`` (no face): two different real clips of one size
    (the smaller one padded with an MP4 ``free`` box, which players skip) and one mtime."""
    one = (samples / "pyfeat_single_face.mp4").read_bytes()
    none = (samples / "pyfeat_no_face.mp4").read_bytes()
    pad = len(one) - len(none)
    assert pad > 8
    (d / "a.mp4").write_bytes(one)
    (d / "b.mp4").write_bytes(none + pad.to_bytes(4, "big") + b"free" + b"\0" * (pad - 8))
    assert (d / "a.mp4").stat().st_size == (d / "b.mp4").stat().st_size
    t = (d / "a.mp4").stat().st_mtime_ns
    for name in ("a.mp4", "b.mp4"):
        os.utime(d / name, ns=(t, t))
    return d / "a.mp4", d / "b.mp4"


@pytest.mark.slow
def test_resume_redoes_same_size_inputs_swapped_and_reuses_an_unchanged_folder(
        tmp_path, samples, settings_for):
    """The reuse key is the input's identity, not its size: two different clips of one size
    and one mtime swapped between runs (a <-> b) are both analysed again and each gets its
    own result; a folder left as it was is reused whole."""
    d = tmp_path / "in"
    d.mkdir()
    a, b = _same_size_pair(d, samples)
    out = tmp_path / "out"
    settings = settings_for(fps=1.0)

    def rows() -> dict[str, dict]:
        return {Path(r["input"]).name: r for r in csv.DictReader(open(out / "summary.csv", newline=""))}

    def json_mtimes() -> dict[Path, int]:
        return {p: p.stat().st_mtime_ns for p in out.rglob("*.json")}

    assert run_batch([d], settings, out_root=out, quiet=True) == 0
    assert {k: r["n_faces"] for k, r in rows().items()} == {"a.mp4": "1", "b.mp4": "0"}
    first = json_mtimes()
    assert run_batch([d], settings, out_root=out, quiet=True) == 0     # unchanged: all reused
    assert json_mtimes() == first
    tmp = d / "swap.tmp"
    a.rename(tmp)
    b.rename(a)
    tmp.rename(b)
    assert run_batch([d], settings, out_root=out, quiet=True) == 0
    assert {k: r["n_faces"] for k, r in rows().items()} == {"a.mp4": "0", "b.mp4": "1"}
    assert all(m != first[p] for p, m in json_mtimes().items())        # both redone
    swapped = json_mtimes()
    assert run_batch([d], settings, out_root=out, quiet=True) == 0
    assert json_mtimes() == swapped
    key = json.loads((out / "a" / "a.json").read_text())["reuse_key"]
    assert key["input"]["rel_path"] == "a.mp4" and len(key["input"]["head_tail_sha256"]) == 64


@pytest.mark.slow
def test_a_name_that_is_not_utf8_gets_its_row_and_report(tmp_path, samples, model_path):
    """A real clip named b'clip_\\xff.mp4' (not UTF-8) in a folder batch, run as a real
    command: the batch completes with no traceback, summary.csv (valid UTF-8) has its row
    with the byte shown as \\xff, its report exists on disk under the name's own bytes and
    index.html links it; a rerun reuses it."""
    d = tmp_path / "in"
    d.mkdir()
    raw = os.path.join(os.fsencode(d), b"clip_\xff.mp4")
    with open(raw, "wb") as f:
        f.write((samples / "pyfeat_no_face.mp4").read_bytes())
    (d / "plain.mp4").write_bytes((samples / "pyfeat_no_face.mp4").read_bytes())
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "fer_video.cli", "analyze", str(d), "--fps", "1",
           "--model", str(model_path), "--device", "cpu", "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONIOENCODING": "utf-8", "LC_ALL": "C.UTF-8"}
    run = subprocess.run(cmd, capture_output=True, env=env, timeout=600)
    stderr = run.stderr.decode("utf-8")
    assert run.returncode == 0, stderr
    assert_no_traceback(stderr)
    assert "\\xff" in run.stdout.decode("utf-8")            # the summary table shows it
    rows = list(csv.DictReader(open(out / "summary.csv", newline="", encoding="utf-8")))
    assert [(Path(r["input"]).name, r["status"]) for r in rows] == [
        ("clip_\\xff.mp4", "ok"), ("plain.mp4", "ok")]
    assert rows[0]["report"] == "clip_\\xff/clip_\\xff.html"
    report = os.path.join(os.fsencode(out), b"clip_\xff", b"clip_\xff.html")
    assert os.path.isfile(report) and os.path.isfile(report[:-5] + b".json")
    obj = json.loads(open(report[:-5] + b".json", encoding="utf-8").read())
    assert obj["input"]["path"].endswith("clip_\\xff.mp4")
    assert 'href="clip_%FF/clip_%FF.html"' in (out / "index.html").read_text(encoding="utf-8")
    before = os.stat(report[:-5] + b".json").st_mtime_ns
    assert subprocess.run(cmd, capture_output=True, env=env, timeout=600).returncode == 0
    assert os.stat(report[:-5] + b".json").st_mtime_ns == before


def test_terminal_lines_show_hostile_names_as_they_are(tmp_path, samples, settings_for, capsys,
                                                       monkeypatch):
    """Names with a bidi override, a line feed, an escape sequence and rich markup, printed
    by a non-quiet batch (per-input lines on stderr, the summary table on stdout): each shows
    as its characters (``⟨U+202E⟩`` ...), on its own line, and markup in a name is never
    interpreted (the path ``.../x[/red].mp4``, a folder ``x[`` holding ``red].mp4``, ended the
    run in a MarkupError traceback after every input was analysed)."""
    from fer_video.atomic import display_text

    d = tmp_path / "in" / "x["
    d.mkdir(parents=True)
    real = "[bold]ok\u202egnp.mp4"
    (d / real).write_bytes((samples / "pyfeat_single_face.mp4").read_bytes())
    bad = ["red].mp4", "[red]y.mp4", "two\nlines.mp4", "esc\x1b[31mred.mp4", "evil\u202egnp.mp4"]
    for name in bad:
        (d / name).write_text("a text file, not a video\n")
    monkeypatch.setenv("COLUMNS", "1000")      # one table line per input
    assert run_batch([d], settings_for(fps=1.0), out_root=tmp_path / "out", progress=False) == 1
    out, err = capsys.readouterr()
    assert_no_traceback(err)
    for text in (out, err):
        assert "\u202e" not in text and "\x1b" not in text
    lines = err.splitlines()
    for name in bad:
        shown = display_text(str(d / name))
        assert sum(ln.startswith(f"error: {shown}: ") for ln in lines) == 1, (name, lines)
    assert display_text(name) == "evil⟨U+202E⟩gnp.mp4" and "two⟨U+000A⟩lines.mp4" in err
    assert sum(ln.startswith("[") and display_text(str(d / real)) + ": 1 face" in ln for ln in lines) == 1
    rows = [ln for ln in out.splitlines() if ln.startswith("│ ")]
    assert len(rows) == len(bad) + 1
    for name in bad + [real]:      # ".../x[/red].mp4" among them
        assert sum(f"│ {display_text(str(d / name))} " in ln for ln in rows) == 1, (name, rows)
