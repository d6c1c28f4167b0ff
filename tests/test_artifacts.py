"""Atomic writes and the step cache: skip when up to date, rebuild when stale, resume partial runs."""
import json

import pytest

from s2i_lib.artifacts import (METRICS_FILE, atomic_path, atomic_write_json, json_once, run_step,
                               stable_hash, step_state)


def test_atomic_write_replaces_whole_file_and_leaves_no_temp(tmp_path):
    p = tmp_path / "a" / "x.json"
    atomic_write_json(p, {"v": 1})
    atomic_write_json(p, {"v": 2})
    assert json.loads(p.read_text()) == {"v": 2}
    assert [f.name for f in p.parent.iterdir()] == ["x.json"]


def test_failed_atomic_write_keeps_the_old_file(tmp_path):
    p = tmp_path / "x.txt"
    p.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(p) as tmp:
            tmp.write_text("half of the new cont")
            raise RuntimeError("killed")
    assert p.read_text() == "old"
    assert [f.name for f in tmp_path.iterdir()] == ["x.txt"]


def test_stable_hash_ignores_key_order():
    assert stable_hash({"a": 1, "b": [1, 2]}) == stable_hash({"b": [1, 2], "a": 1})
    assert stable_hash({"a": 1}) != stable_hash({"a": 2})


def _work(calls):
    def work(d):
        calls.append(d)
        (d / "out.txt").write_text("result")
        return {"n": len(calls)}
    return work


def test_run_step_skips_when_up_to_date_and_reruns_on_change_or_force(tmp_path):
    calls, logs = [], []
    d = tmp_path / "step"
    m1 = run_step(d, "s", "h1", {}, {}, _work(calls), log=logs.append)
    assert len(calls) == 1 and m1["figures"] == {"n": 1} and m1["config_hash"] == "h1"
    assert {"wall_time_s", "peak_rss_mb", "versions", "run_id"} <= set(m1)
    assert m1["peak_rss_mb"] > 1 and m1["versions"]["python"]
    m2 = run_step(d, "s", "h1", {}, {}, _work(calls), log=logs.append)
    assert len(calls) == 1 and m2["run_id"] == m1["run_id"] and "up to date" in logs[-1]
    m3 = run_step(d, "s", "h2", {}, {}, _work(calls), log=logs.append)
    assert len(calls) == 2 and m3["run_id"] != m1["run_id"]
    assert any("config changed" in line for line in logs)
    run_step(d, "s", "h2", {}, {}, _work(calls), force=True, log=logs.append)
    assert len(calls) == 3


def test_changed_config_removes_old_outputs(tmp_path):
    d = tmp_path / "step"
    run_step(d, "s", "h1", {}, {}, lambda p: {"bytes": (p / "old_only.txt").write_text("x")}, log=print)
    run_step(d, "s", "h2", {}, {}, lambda p: {}, log=print)
    assert not (d / "old_only.txt").exists()


def test_upstream_rerun_makes_step_stale(tmp_path):
    d = tmp_path / "step"
    run_step(d, "s", "h", {}, {"data": "run-a"}, lambda p: {}, log=print)
    assert step_state(d, "s", "h", {"data": "run-a"}).status == "done"
    st = step_state(d, "s", "h", {"data": "run-b"})
    assert st.status == "stale" and "upstream step 'data'" in st.reason


def _interrupt(d, config_hash, upstream):
    """A run of step ``s`` in ``d`` killed after writing ``part1``."""
    def interrupted(p):
        (p / "part1").write_text("done")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_step(d, "s", config_hash, {}, upstream, interrupted, log=print)


def _rerun_sees_part1(d, config_hash, upstream) -> bool:
    seen = []
    run_step(d, "s", config_hash, {}, upstream, lambda p: seen.append((p / "part1").exists()) or {}, log=print)
    assert (d / METRICS_FILE).exists()
    return seen == [True]


def test_interrupted_step_resumes_with_its_finished_files(tmp_path):
    d = tmp_path / "step"
    _interrupt(d, "h", {"sen": "run-a"})
    assert not (d / METRICS_FILE).exists()
    assert step_state(d, "s", "h", {}).status == "partial"
    assert _rerun_sees_part1(d, "h", {"sen": "run-a"})


def test_interrupted_step_with_other_config_is_not_resumed(tmp_path):
    d = tmp_path / "step"
    _interrupt(d, "h1", {})
    assert not _rerun_sees_part1(d, "h2", {})


def test_interrupted_step_is_not_resumed_after_an_upstream_rerun(tmp_path):
    d = tmp_path / "step"
    _interrupt(d, "h", {"sen": "run-a"})   # its files were made from the SEN's run-a
    assert not _rerun_sees_part1(d, "h", {"sen": "run-b"})


def test_finished_step_missing_an_extension_is_extended_in_place(tmp_path):
    d, logs = tmp_path / "step", []
    run_step(d, "s", "h", {"extra": False}, {"sen": "run-a"},
             lambda p: {"bytes": (p / "part1").write_text("done")}, log=logs.append)

    def missing(metrics):
        return None if metrics["config"]["extra"] else "extra asked for"
    assert step_state(d, "s", "h", {"sen": "run-a"}, missing).status == "partial"
    seen = []
    m = run_step(d, "s", "h", {"extra": True}, {"sen": "run-a"},
                 lambda p: seen.append((p / "part1").exists()) or {}, log=logs.append, missing=missing)
    assert seen == [True] and m["config"] == {"extra": True} and "extending the finished run" in logs[-2]
    assert step_state(d, "s", "h", {"sen": "run-a"}, missing).status == "done"
    # another config or upstream run still rebuilds from scratch
    assert not _rerun_sees_part1(d, "h", {"sen": "run-b"})


def test_json_once_computes_once_then_reads_back(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return {"IS": 4.5, "n": len(calls)}

    path = tmp_path / "done.json"
    assert json_once(path, compute) == {"IS": 4.5, "n": 1}
    assert json_once(path, compute) == {"IS": 4.5, "n": 1} and calls == [1]
