"""The fer-video command line: help, exit codes, one-line errors, real runs."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest

from fer_video import __version__
from fer_video.cli import main

from conftest import REPO, assert_no_traceback, output_files, run_unless_fifo_blocks


def run_main(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert_no_traceback(err)
    return lines[0]


def test_help_lists_examples_and_exit_codes(capsys):
    code, out, _ = run_main(capsys, "--help")
    assert code == 0
    assert "analyze" in out and "exit codes" in out and "130" in out and "--recursive" in out
    code, out, _ = run_main(capsys, "analyze", "--help")
    assert code == 0
    for word in ("examples:", "--out", "--fps", "--model", "--device", "--overwrite", "--quiet",
                 "--min-track", "--batch-size", "summary.csv", "exit codes", "130"):
        assert word in out, word


def test_version(capsys):
    code, out, _ = run_main(capsys, "--version")
    assert code == 0 and __version__ in out


def test_no_command_is_usage_error(capsys):
    code, _, err = run_main(capsys)
    assert code == 2 and "usage" in err.lower()


def test_missing_path_exit_2_one_line(capsys, tmp_path):
    code, _, err = run_main(capsys, "analyze", tmp_path / "missing.mp4", "--out", tmp_path / "o")
    assert code == 2
    assert "missing.mp4" in one_line(err)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("opt", [["--fps", "-1"], ["--fps", "abc"], ["--threshold", "2"],
                                 ["--device", "tpu"], ["--batch-size", "0"], ["--bogus"],
                                 ["--tta", "sixcrop"], ["--min-face", "0"], ["--smoothing", "-1"],
                                 ["--keyframe-every", "x"], ["--end", "inf"], ["--start", "nan"],
                                 ["--min-track", "1.5"], ["--executor", "dask"],
                                 ["--stall-timeout", "0"], ["--precision", "fp16"]])
def test_bad_option_exit_2_one_line(capsys, samples, opt):
    code, _, err = run_main(capsys, "analyze", samples / "pyfeat_single_face.mp4", *opt)
    assert code == 2
    one_line(err)


def test_analyze_options_are_the_settings_fields(capsys):
    """Each analyze setting is written once (settings.Settings): its flag, default and help
    make the option, and the parsed defaults are Settings' defaults."""
    from dataclasses import fields

    from fer_video.cli import build_parser
    from fer_video.settings import NOT_IN_RESULT, Settings, flag, settings_from_args

    assert main(["analyze", "--help"]) == 0
    text = capsys.readouterr().out
    options = [f for f in fields(Settings) if f.metadata.get("help")]
    assert len(options) == 16          # --backend (session 19) is the 16th
    for f in options:
        assert flag(f) in text
    args = build_parser().parse_args(["analyze", "x.mp4"])
    assert settings_from_args(args) == Settings()
    assert {f.name: getattr(args, f.name) for f in options} == \
        {f.name: f.default for f in options}
    assert NOT_IN_RESULT == {"device", "batch_size", "classify_batch_size", "model", "stall_timeout"}
    parsed = build_parser().parse_args(["analyze", "x.mp4", "--threshold", "0.5", "--smoothing",
                                        "2", "--min-track", "3", "--end", "4"])
    s = settings_from_args(parsed)
    assert (s.det_threshold, s.smoothing_window_s, s.min_track, s.end) == (0.5, 2.0, 3, 4.0)


def test_the_reuse_rule_ignores_the_speed_only_settings():
    from fer_video import report_folder
    from fer_video.settings import NOT_IN_RESULT

    assert set(report_folder._NOT_IN_RESULT) == set(NOT_IN_RESULT)


def test_end_before_start_is_usage_error(capsys, samples, model_path):
    code, _, err = run_main(capsys, "analyze", samples / "pyfeat_single_face.mp4", "--start", "3",
                            "--end", "2", "--model", model_path)
    assert code == 2 and "end" in one_line(err)


def test_missing_model_exit_3_one_line(capsys, samples, tmp_path):
    code, _, err = run_main(capsys, "analyze", samples / "pyfeat_single_face.mp4",
                            "--model", tmp_path / "none.safetensors", "--out", tmp_path)
    assert code == 3
    assert "none.safetensors" in one_line(err)


@pytest.mark.slow
def test_invalid_model_weights_exit_3_one_line(capsys, samples, model_path, tmp_path):
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"\0" * 64)
    (tmp_path / "broken.json").write_text(model_path.with_suffix(".json").read_text())
    code, _, err = run_main(capsys, "analyze", samples / "pyfeat_single_face.mp4", "--fps", "1",
                            "--model", bad, "--device", "cpu", "--out", tmp_path / "out")
    assert code == 3
    assert "broken.safetensors" in one_line(err)
    assert not (tmp_path / "out").exists() or not output_files(tmp_path / "out")


def test_cuda_requested_without_cuda(capsys, samples, model_path, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    code, _, err = run_main(capsys, "analyze", samples / "pyfeat_single_face.mp4", "--device", "cuda",
                            "--model", model_path, "--out", tmp_path)
    assert code == 2 and "cuda" in one_line(err).lower()


@pytest.mark.slow
def test_analyze_one_video(capsys, samples, model_path, tmp_path):
    code, out, err = run_main(capsys, "analyze", samples / "pyfeat_single_face.mp4", "--fps", "2",
                              "--model", model_path, "--device", "cpu", "--out", tmp_path)
    assert code == 0, err
    assert_no_traceback(err)
    d = tmp_path / "pyfeat_single_face"
    assert sorted(p.name for p in output_files(tmp_path)) == [
        "pyfeat_single_face.frames.csv", "pyfeat_single_face.html", "pyfeat_single_face.json"]
    doc = json.loads((d / "pyfeat_single_face.json").read_text())
    assert doc["n_faces"] == 1 and doc["settings"]["fps"] == 2.0
    assert "pyfeat_single_face" in out      # the closing summary table
    # --quiet: nothing on stdout; the report is complete, so this run skips it
    code, out, err = run_main(capsys, "analyze", samples / "pyfeat_single_face.mp4", "--fps", "2",
                              "--model", model_path, "--device", "cpu", "--out", tmp_path, "--quiet")
    assert code == 0 and out == "" and err == ""


@pytest.mark.slow
def test_no_face_video_exit_0(capsys, samples, model_path, tmp_path):
    code, _, err = run_main(capsys, "analyze", samples / "pyfeat_no_face.mp4", "--fps", "1",
                            "--model", model_path, "--device", "cpu", "--out", tmp_path, "-q")
    assert code == 0, err
    doc = json.loads((tmp_path / "pyfeat_no_face" / "pyfeat_no_face.json").read_text())
    assert doc["faces"] == []


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["zero", "truncated", "text", "audio"])
def test_bad_input_one_line_error(capsys, bad_inputs, model_path, tmp_path, kind):
    path = bad_inputs[kind]
    code, _, err = run_main(capsys, "analyze", path, "--model", model_path, "--device", "cpu",
                            "--out", tmp_path, "-q")
    assert code == 1
    line = one_line(err)
    assert path.name in line
    assert not [p for p in output_files(tmp_path) if p.suffix == ".json"]


@pytest.mark.slow
def test_folder_with_bad_files_completes_the_rest(capsys, samples, bad_inputs, model_path, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for p in bad_inputs.values():
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "good.mp4").write_bytes((samples / "pyfeat_single_face.mp4").read_bytes())
    out_root = tmp_path / "out"
    code, out, err = run_main(capsys, "analyze", folder, "--fps", "1", "--model", model_path,
                              "--device", "cpu", "--out", out_root)
    assert code == 1
    assert_no_traceback(err)
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(errors) == len(bad_inputs)
    for p in bad_inputs.values():
        assert sum(p.name in ln for ln in errors) == 1
    rows = list(csv.DictReader(open(out_root / "summary.csv")))
    assert [os.path.basename(r["input"]) for r in rows] == sorted(
        [p.name for p in bad_inputs.values()] + ["good.mp4"])
    by_name = {os.path.basename(r["input"]): r for r in rows}
    assert by_name["good.mp4"]["status"] == "ok" and by_name["good.mp4"]["n_faces"] == "1"
    assert by_name["good.mp4"]["report"] == "good/good.html"
    for p in bad_inputs.values():
        assert by_name[p.name]["status"] == "failed" and by_name[p.name]["reason"]
    index = (out_root / "index.html").read_text()
    assert "good/good.html" in index
    assert (out_root / "good" / "good.json").is_file()


def test_subprocess_user_error_has_no_traceback(tmp_path):
    """The real entry point, as a user runs it: one line, exit 2, no traceback."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    p = subprocess.run([sys.executable, str(REPO / "cli.py"), "analyze", str(tmp_path / "nope.mp4")],
                       capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 2
    assert "nope.mp4" in one_line(p.stderr)
    assert p.stdout == ""


@pytest.mark.slow
def test_a_fifo_given_directly_fails_at_once_instead_of_hanging(capsys, model_path, tmp_path):
    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)
    code = run_unless_fifo_blocks(lambda: main([
        "analyze", str(fifo), "--model", str(model_path), "--device", "cpu",
        "--out", str(tmp_path / "out"), "-q"]), fifo, 300)
    assert code == 1
    line = one_line(capsys.readouterr().err)
    assert "pipe.mp4" in line and "FIFO" in line


def _one_clip_folder(tmp_path, samples):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a.mp4", "b.mp4"):
        (folder / name).write_bytes((samples / "pyfeat_single_face.mp4").read_bytes())
    return folder


def test_out_that_is_a_file_is_a_usage_error_before_any_analysis(capsys, samples, model_path,
                                                                 tmp_path):
    folder = _one_clip_folder(tmp_path, samples)
    taken = tmp_path / "taken.txt"
    taken.write_text("not a folder\n")
    for out in (taken, taken / "sub"):
        code, _, err = run_main(capsys, "analyze", folder, "--fps", "1", "--model", model_path,
                                "--device", "cpu", "--out", out)
        assert code == 2
        assert "taken.txt" in one_line(err) and "not a folder" in err
    assert taken.read_text() == "not a folder\n"
    out = tmp_path / "out"
    (out / "summary.csv").mkdir(parents=True)
    code, _, err = run_main(capsys, "analyze", folder, "--fps", "1", "--model", model_path,
                            "--device", "cpu", "--out", out)
    assert code == 2 and "summary.csv" in one_line(err)
    assert [p.name for p in out.iterdir()] == ["summary.csv"]        # nothing was analysed


def test_out_where_no_file_can_be_created_is_a_setup_error(capsys, samples, model_path, tmp_path):
    """Tests run as root, whom permission bits do not stop: /proc takes no new files."""
    folder = _one_clip_folder(tmp_path, samples)
    code, _, err = run_main(capsys, "analyze", folder, "--fps", "1", "--model", model_path,
                            "--device", "cpu", "--out", "/proc/fer-video-test/out")
    assert code == 3
    assert "/proc" in one_line(err) and "cannot create files" in err


PYTHON_WORDS = ("IndexError", "RuntimeError", "Traceback", "test hook")


def _run_with_internal_error(where: str, args: list[str], tmp_path):
    """The real command with the test-only hook FER_VIDEO_TEST_INTERNAL_ERROR=<where>
    (``batch``: the batch runner raises RuntimeError; ``job``: each input's job raises
    IndexError), crash logs going to a temporary folder of the test's own."""
    logs = tmp_path / "tmp"
    logs.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO), "FER_VIDEO_TEST_INTERNAL_ERROR": where,
           "TMPDIR": str(logs)}
    p = subprocess.run([sys.executable, str(REPO / "cli.py"), "analyze", *args],
                       capture_output=True, text=True, env=env, timeout=300)
    return p, sorted(logs.glob("fer-video-crash-*.log"))


def test_an_unexpected_error_is_one_line_naming_a_crash_log_exit_70(samples, model_path,
                                                                    tmp_path):
    """The last resort: an exception nothing expected ends the command with exit code 70 and
    one line on stderr naming a crash log, which holds the traceback; no traceback on stderr."""
    p, logs = _run_with_internal_error(
        "batch", [str(samples / "pyfeat_no_face.mp4"), "--model", str(model_path),
                  "--device", "cpu", "--out", str(tmp_path / "out")], tmp_path)
    assert p.returncode == 70, p.stderr
    assert_no_traceback(p.stderr)
    line = one_line(p.stderr)
    assert line.startswith("fer-video: internal error in fer-video"), line
    assert not any(w in line for w in PYTHON_WORDS), line
    assert len(logs) == 1 and str(logs[0]) in line
    text = logs[0].read_text()
    assert "Traceback" in text and "RuntimeError: test hook" in text


def test_an_unexpected_error_in_one_input_fails_it_with_a_crash_log_reason(samples, model_path,
                                                                          tmp_path):
    """A bug met while analysing an input fails that input (exit 1, summary.csv written) with
    a reason naming its crash log, not the exception's text."""
    d = tmp_path / "in"
    d.mkdir()
    for name in ("a.mp4", "b.mp4"):
        (d / name).write_bytes((samples / "pyfeat_no_face.mp4").read_bytes())
    out = tmp_path / "out"
    p, logs = _run_with_internal_error(
        "job", [str(d), "--model", str(model_path), "--device", "cpu", "--out", str(out)],
        tmp_path)
    assert p.returncode == 1, p.stderr
    assert_no_traceback(p.stderr)
    rows = list(csv.DictReader(open(out / "summary.csv", newline="")))
    assert [r["status"] for r in rows] == ["failed", "failed"] and len(logs) == 2
    for r in rows:
        assert r["reason"].startswith("internal error in fer-video"), r
        assert not any(w in r["reason"] for w in PYTHON_WORDS), r
        assert any(str(log) in r["reason"] for log in logs)
    assert all("IndexError: test hook" in log.read_text() for log in logs)


def test_the_process_entry_freezes_the_heap_and_exits_at_once_after_the_atexit_handlers(
        samples, model_path, tmp_path):
    """``cli.py`` and the console script go through ``run``: the process ends with main's
    exit code, its reports whole, the heap frozen (the ~0.5 s saving) and the atexit
    handlers run, without returning to the caller (the quick exit); ``main`` itself, called
    in a process that goes on, freezes nothing; with another non-daemon thread alive,
    ``run`` returns for the normal exit."""
    probe = ("import atexit, gc, sys, threading; from fer_video.cli import run, main; "
             "n0 = gc.get_freeze_count(); rc0 = main(['--version']); n1 = gc.get_freeze_count(); "
             "print(rc0, n0 == n1 == 0, flush=True); "
             "atexit.register(lambda: print('atexit ran, frozen', gc.get_freeze_count() > 100000)); "
             "hold = threading.Event(); keep = sys.argv.pop(1) == 'keep'; "
             "t = threading.Thread(target=hold.wait) if keep else None; t and t.start(); "
             "rc = run(sys.argv[1:]); print('returned', rc); hold.set()")
    out = tmp_path / "out"
    args = ["analyze", str(samples / "pyfeat_single_face.mp4"), "--fps", "2", "--model", str(model_path),
            "--out", str(out), "--quiet"]
    p = subprocess.run([sys.executable, "-c", probe, "quick", *args], capture_output=True, text=True,
                       timeout=300, cwd=REPO)
    assert p.returncode == 0 and p.stdout.splitlines() == [
        f"fer-video {__version__}", "0 True", "atexit ran, frozen True"], \
        (p.stdout, p.stderr[-2000:])
    d = out / "pyfeat_single_face"
    rows = list(csv.DictReader(open(d / "pyfeat_single_face.frames.csv")))
    assert rows and json.loads((d / "pyfeat_single_face.json").read_text())["n_faces"] == 1
    missing = [sys.executable, "-c", probe, "quick", "analyze", str(tmp_path / "nope.mp4")]
    p = subprocess.run(missing, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert p.returncode == 2 and "returned" not in p.stdout and "nope.mp4" in p.stderr
    p = subprocess.run([sys.executable, "-c", probe, "keep", "--version"], capture_output=True, text=True,
                       timeout=300, cwd=REPO)
    assert p.returncode == 0 and "returned 0" in p.stdout and "atexit ran" in p.stdout, p.stderr
    entry = (REPO / "cli.py").read_text()
    assert "from fer_video.cli import run" in entry and "SystemExit(run())" in entry


def test_a_reader_that_goes_away_does_not_stop_the_batch(folder, model_path, tmp_path):
    """``fer-video analyze folder 2>&1 | head -1``: the pipe closes after the first line;
    the batch still writes every report and exits 0 (rich's own reaction, SystemExit(1),
    stopped it at the next line and said an input had failed)."""
    out = tmp_path / "out"
    cmd = [sys.executable, str(REPO / "cli.py"), "analyze", str(folder), "--fps", "2",
           "--model", str(model_path), "--out", str(out)]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=REPO)
    first = p.stdout.readline()
    p.stdout.close()                          # the reader goes away after one line
    assert p.wait(timeout=300) == 0 and first.strip()
    stems = sorted(d.name for d in out.iterdir() if d.is_dir())
    assert len(stems) == 3 and all((out / s / f"{s}.json").is_file() for s in stems)
    assert (out / "summary.csv").is_file() and (out / "index.html").is_file()


def test_under_a_profiler_the_exit_is_the_normal_one(tmp_path):
    """``python -m cProfile -o F cli.py ...`` still writes F: with a profiler (or tracer)
    set, the process entry takes the normal exit, where cProfile writes its results."""
    prof = tmp_path / "cli.prof"
    p = subprocess.run([sys.executable, "-m", "cProfile", "-o", str(prof), str(REPO / "cli.py"), "--version"],
                       capture_output=True, text=True, timeout=120, cwd=REPO)
    assert p.returncode == 0 and __version__ in p.stdout, p.stderr
    import pstats

    assert pstats.Stats(str(prof)).total_calls > 0
