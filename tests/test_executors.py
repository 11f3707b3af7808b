"""The executor registry: ``--executor`` offers exactly its names, and an engine added in one
class and one registry line runs real jobs end to end through the CLI."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest

from fer_video.cli import main
from fer_video.executors import EXECUTORS, Executor, Options, get
from fer_video.job import JobResult


def _help(capsys) -> str:
    assert main(["analyze", "--help"]) == 0
    return " ".join(capsys.readouterr().out.split())


def test_executor_choices_come_from_the_registry(monkeypatch, capsys):
    assert "--executor {" + ",".join(EXECUTORS) + "}" in _help(capsys)
    monkeypatch.setitem(EXECUTORS, "toy", ToyExecutor)
    text = _help(capsys)
    assert "--executor {" + ",".join(EXECUTORS) + "}" in text and text.count(",toy}") >= 1
    assert "toy: in this process, backwards" in text


def test_options_an_executor_does_not_take_are_usage_errors():
    from fer_video.errors import UsageError

    with pytest.raises(UsageError, match="--address goes with --executor ray"):
        get("local", Options(address="auto"))
    with pytest.raises(UsageError, match="--timeout goes with --executor local or "
                                         "--executor processes or --executor ray"):
        get("inline", Options(timeout=5))
    assert type(get("local", Options())).__name__ == "Inline"
    assert type(get("local", Options(jobs=2))).__name__ == "Processes"
    assert type(get("local", Options(timeout=3))).__name__ == "Processes"


class ToyExecutor(Executor):
    """An engine in one class: the jobs in this process, last first (results in input order)."""
    help = "in this process, backwards"
    ran: list[str] = []

    def run(self, jobs, out_root, settings, options: Options) -> list[JobResult]:
        from fer_video.executors.worker import run_one
        from fer_video.threads import plan_threads

        results: list = [None] * len(jobs)
        for i in reversed(range(len(jobs))):
            ToyExecutor.ran.append(Path(jobs[i].path).name)
            results[i] = run_one(i, jobs[i], str(out_root), settings, options.overwrite,
                                 plan_threads(workers=1))
            options.done(i, results[i])
        return results


@pytest.mark.slow
def test_a_toy_executor_registered_in_one_line_runs_a_real_batch(folder, serial_reports,
                                                                  model_path, tmp_path,
                                                                  monkeypatch):
    from test_parallel import assert_same_reports

    monkeypatch.setitem(EXECUTORS, "toy", ToyExecutor)     # the one registry line
    ToyExecutor.ran = []
    out = tmp_path / "toy"
    assert main(["analyze", str(folder), "--executor", "toy", "--fps", "2", "--model", str(model_path),
                 "--device", "cpu", "--out", str(out), "--quiet"]) == 0
    assert ToyExecutor.ran == sorted(ToyExecutor.ran, reverse=True) and len(ToyExecutor.ran) == 3
    assert_same_reports(serial_reports, out, folder)        # the same reports as --jobs 1
    rows = list(csv.DictReader(open(out / "summary.csv", newline="")))
    assert [r["status"] for r in rows] == ["ok"] * 3
    # and the CLI refuses options it does not take, in one line
    assert main(["analyze", str(folder), "--executor", "toy", "--jobs", "2"]) == 2
