"""``analyze --executor ray``: a real local Ray cluster gives the same reports as the
in-process run; a killed worker or a hung task fails only its input; resume works.

Ray is the optional extra ``fer-video[ray]``; ``make test`` (and so CI) installs it. Outside
CI a missing Ray skips these tests; under ``CI=true`` it is an error, never a silent skip.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fer_video.batch import run_batch
from fer_video.cli import main

from test_parallel import _alive, _cmdline, _descendants, _summary, assert_same_reports

if os.environ.get("CI") == "true":
    import ray  # noqa: F401  # CI installs the extra: a missing Ray must fail, not skip
else:
    pytest.importorskip("ray", reason="Ray not installed: pip install -e '.[ray]'")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory):
    """``ray start --head --block`` on 127.0.0.1 (2 CPUs); yields its address.

    Its own process group, killed at the end (Ray's daemons and workers die with their
    parent), so the test never touches another Ray instance on the machine."""
    port = _free_port()
    ray_cli = Path(sys.executable).with_name("ray")
    log = open(tmp_path_factory.mktemp("ray") / "ray_start.log", "w")
    proc = subprocess.Popen(
        [str(ray_cli), "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
         "--port", str(port), "--num-cpus", "2", "--num-gpus", "0", "--include-dashboard", "false",
         "--disable-usage-stats"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"ray start failed; see {log.name}")
                time.sleep(0.5)
        yield address
    finally:
        for sig, wait_s in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=wait_s)
                break
            except subprocess.TimeoutExpired:
                continue
        log.close()
        # `ray stop` would remove this pointer to the cluster; a stale one misleads ray.init()
        current = Path("/tmp/ray/ray_current_cluster")
        try:
            if current.read_text().strip().endswith(f":{port}"):
                current.unlink()
        except OSError:
            pass


@pytest.mark.slow
def test_ray_local_cluster_gives_the_same_reports_as_jobs_1(folder, serial_reports,
                                                            settings_for, tmp_path, monkeypatch):
    """No --address: the run starts a local Ray instance (ray.init) and stops it at the end."""
    import ray

    monkeypatch.delenv("RAY_ADDRESS", raising=False)

    out = tmp_path / "ray"
    assert run_batch([folder], settings_for(fps=2.0), out_root=out, quiet=True,
                     executor="ray") == 0
    assert not ray.is_initialized()
    assert_same_reports(serial_reports, out, folder)


@pytest.mark.slow
def test_ray_cluster_killed_worker_and_timeout_fail_only_their_input(
        folder, serial_reports, ray_head, model_path, tmp_path, monkeypatch, capsys):
    """On a running cluster (--address): one task's worker calls os._exit, one task hangs past
    --timeout; the third completes. A second run (no faults) redoes only the failed two."""
    out = tmp_path / "out"
    args = ["analyze", str(folder), "--executor", "ray", "--address", ray_head, "--fps", "2",
            "--model", str(model_path), "--device", "cpu", "--out", str(out), "--quiet"]
    with monkeypatch.context() as m:
        m.setenv("FER_VIDEO_TEST_CRASH_ON", "pyfeat_no_face.mp4")
        m.setenv("FER_VIDEO_TEST_SLEEP_ON", "liveportrait_d19.mp4")
        m.setenv("FER_VIDEO_TEST_SLEEP_S", "120")
        assert main(args + ["--timeout", "8"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    rows = {Path(r["input"]).name: r for r in _summary(out)}
    assert rows["pyfeat_single_face.mp4"]["status"] == "ok"
    assert rows["pyfeat_no_face.mp4"]["status"] == "failed"
    assert rows["pyfeat_no_face.mp4"]["reason"].startswith("worker process died (")
    assert rows["liveportrait_d19.mp4"]["status"] == "failed"
    assert rows["liveportrait_d19.mp4"]["reason"] == "timed out after 8 s"
    assert "worker process died" in err and "timed out after 8 s" in err
    assert not (out / "liveportrait_d19" / "liveportrait_d19.json").exists()
    assert not (out / "pyfeat_no_face" / "pyfeat_no_face.json").exists()

    done = out / "pyfeat_single_face" / "pyfeat_single_face.json"
    before = done.stat().st_mtime_ns
    assert main(args) == 0                 # resume: only the two failed inputs run again
    assert done.stat().st_mtime_ns == before
    assert_same_reports(serial_reports, out, folder)


def _killed_driver(folder: Path, model_path: Path, out: Path, address: str | None):
    """Run ``analyze FOLDER --executor ray`` as its own process, one input's task asleep;
    once the other two reports are complete, SIGKILL the driver (no clean-up can run).
    Returns (the driver's descendants, the Ray task processes, each as pid -> start time,
    and every such process's command line), all taken just before the kill."""
    env = {**os.environ, "FER_VIDEO_TEST_SLEEP_ON": "liveportrait_d19.mp4", "FER_VIDEO_TEST_SLEEP_S": "600"}
    env.pop("RAY_ADDRESS", None)
    cmd = [sys.executable, str(Path(__file__).resolve().parents[1] / "cli.py"), "analyze", str(folder),
           "--executor", "ray", "--fps", "1", "--model", str(model_path), "--device", "cpu",
           "--out", str(out), "--quiet"] + (["--address", address] if address else [])
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.monotonic() + 600
        while not all((out / s / f"{s}.json").is_file() for s in ("pyfeat_single_face", "pyfeat_no_face")):
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "no report completed in time"
            time.sleep(0.3)
        time.sleep(1)
        tree = _descendants(proc.pid)
        everyone = _descendants(1)
        names = {p: _cmdline(p).strip() for p in everyone}
        tasks = {p: started for p, started in everyone.items()
                 if names[p].startswith(("ray::ray_task", "ray::StartLog"))}
        proc.kill()
        proc.wait(timeout=30)
        return tree, tasks, names
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_local_ray_instance_dies_with_its_killed_driver(folder, model_path, tmp_path):
    """No --address: the driver started Ray (GCS, raylet, agents, workers). SIGKILL it while
    a task runs: 5 s later none of those processes is alive (Ray's agents used to live on
    for minutes; fer_video.executors.reaper takes them down)."""
    tree, _, names = _killed_driver(folder, model_path, tmp_path / "out", None)
    try:
        assert any(names[p].startswith("ray::ray_task") for p in tree), {p: names[p] for p in tree}
        assert any(names[p].startswith("ray::DashboardAgent") for p in tree), {p: names[p] for p in tree}
        time.sleep(5)
        left = _alive(tree)
        assert not left, {p: names[p] for p in left}
    finally:
        for p in _alive(tree):
            os.kill(p, signal.SIGKILL)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_tasks_on_a_cluster_die_with_their_killed_driver(folder, ray_head, model_path, tmp_path):
    """--address: the cluster lives on, the job's tasks (the sleeping one included) and its
    start-log actor do not: Ray ends a dead driver's job; 5 s later none is alive."""
    _, tasks, names = _killed_driver(folder, model_path, tmp_path / "out", ray_head)
    assert any(names[p].startswith("ray::ray_task") for p in tasks), tasks
    time.sleep(5)
    left = _alive(tasks)
    assert not left, {p: names[p] for p in left}


def test_ray_missing_is_a_setup_error_saying_how_to_install(folder, model_path, tmp_path,
                                                          monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)          # "import ray" raises ImportError
    code = main(["analyze", str(folder), "--executor", "ray", "--model", str(model_path),
                 "--out", str(tmp_path / "o")])
    assert code == 3
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "pip install 'fer-video[ray]'" in err
    assert not (tmp_path / "o").exists()


def test_unreachable_ray_address_fails_fast_in_one_line(folder, model_path, tmp_path,
                                                       capsys):
    port = _free_port()                     # nothing listens there
    t0 = time.monotonic()
    code = main(["analyze", str(folder), "--executor", "ray", "--address", f"127.0.0.1:{port}",
                 "--model", str(model_path), "--out", str(tmp_path / "o")])
    assert code == 3
    assert time.monotonic() - t0 < 60       # not Ray's endless reconnect loop
    err = capsys.readouterr().err.strip()
    assert err.startswith("fer-video: error: cannot connect to the Ray cluster at 127.0.0.1:")
    assert err.count("\n") == 0


def test_ray_options_without_ray_executor_are_usage_errors(folder, capsys):
    assert main(["analyze", str(folder), "--address", "auto"]) == 2
    assert "--executor ray" in capsys.readouterr().err
    assert main(["analyze", str(folder), "--executor", "ray", "--gpus-per-task", "2"]) == 2


@pytest.mark.parametrize("cluster, device, per_task, expect", [
    ({"CPU": 16.0}, "auto", None, (0.0, 16)),                      # no GPU: one task per CPU
    ({"CPU": 16.0, "GPU": 1.0}, "auto", None, (0.25, 4)),           # 4 tasks share the GPU
    ({"CPU": 16.0, "GPU": 2.0}, "cuda", 0.5, (0.5, 4)),
    ({"CPU": 2.0, "GPU": 1.0}, "auto", None, (0.25, 2)),            # CPUs bound it
    ({"CPU": 16.0, "GPU": 1.0}, "cpu", None, (0.0, 16)),            # --device cpu: no GPU asked
    ({"CPU": 16.0, "GPU": 1.0}, "auto", 0.0, (0.0, 16)),            # --gpus-per-task 0
])
def test_ray_tasks_ask_for_a_gpu_share_only_when_the_cluster_has_gpus(cluster, device, per_task, expect):
    from fer_video.executors.ray_tasks import task_resources

    assert task_resources(cluster, device, per_task) == expect
