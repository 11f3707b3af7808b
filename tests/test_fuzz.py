"""The seeded mutation fuzzer (bench/fuzz.py) at test size: 30 mutated clips in folder
batches, analysed with --jobs 1 and --jobs 2 under --timeout, in real subprocesses."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _fuzz():
    spec = importlib.util.spec_from_file_location("fuzz", REPO / "bench" / "fuzz.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_mutators_are_seeded_and_change_the_file():
    import random

    fuzz = _fuzz()
    data = (REPO / "sample_videos" / "pyfeat_single_face.mp4").read_bytes()
    a = [fuzz.mutate(data, data, random.Random(7)) for _ in range(1)]
    b = [fuzz.mutate(data, data, random.Random(7)) for _ in range(1)]
    assert a == b
    outs = {fuzz.mutate(data, data, random.Random(s))[0] for s in range(20)}
    assert data not in outs and len(outs) == 20


def test_thirty_fuzz_cases_no_crash_hang_internal_reason_or_jobs_disagreement(tmp_path):
    fuzz = _fuzz()
    report = tmp_path / "fuzz.json"
    code = fuzz.main(["--cases", "30", "--batch", "15", "--seed", "3", "--timeout", "60",
                      "--batch-timeout", "600", "--keep", str(tmp_path / "findings"), "--json", str(report)])
    tally = json.loads(report.read_text())
    assert tally["cases"] == 30
    assert tally["ok"] + tally["failed"] == 30
    assert tally["failed"] > 0       # the mutations do break files: the check is not vacuous
    for key in ("crashes", "hangs", "missing_rows", "internal_exception_reasons", "jobs_disagreements"):
        assert tally[key] == 0, (key, tally["findings"])
    assert code == 0
