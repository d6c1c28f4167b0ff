"""The command line: steps, status, overrides and clear errors (run as a user would, in a subprocess)."""
import json
import subprocess
import sys

TINY = ["--set", "data.n_train_classes=2", "--set", "data.n_test_classes=1",
        "--set", "data.images_per_class=2", "--set", "data.workers=1"]


def cli(*args, runs_dir=None):
    cmd = [sys.executable, "-m", "s2i_lib", *args]
    if runs_dir is not None:
        cmd += ["--runs-dir", str(runs_dir)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def test_help_lists_every_step():
    out = cli("--help")
    assert out.returncode == 0
    for step in ("data", "speech", "sen", "gan", "eval", "all", "status"):
        assert step in out.stdout


def test_bad_override_is_a_clear_error_naming_the_key(tmp_path):
    out = cli("data", "--profile", "smoke", "--set", "data.imagesize=64", runs_dir=tmp_path)
    assert out.returncode == 2
    assert "unknown config key 'data.imagesize'" in out.stderr and "data.image_size" in out.stderr
    out = cli("data", "--profile", "nope", runs_dir=tmp_path)
    assert out.returncode == 2 and "unknown profile 'nope'" in out.stderr


def test_data_step_builds_skips_and_rebuilds(tmp_path):
    out = cli("data", "--profile", "smoke", *TINY, runs_dir=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    metrics = json.loads((tmp_path / "smoke" / "data" / "metrics.json").read_text())
    assert metrics["figures"]["counts"]["train"] == {"images": 4, "classes": 2}
    assert metrics["figures"]["counts"]["test"] == {"images": 2, "classes": 1}
    assert metrics["figures"]["instruments"]["time_s"] > 0   # the evaluation's instruments, built
    again = cli("data", "--profile", "smoke", *TINY, runs_dir=tmp_path)
    assert again.returncode == 0 and "up to date" in again.stdout
    assert json.loads((tmp_path / "smoke" / "data" / "metrics.json").read_text())["run_id"] == metrics["run_id"]
    forced = cli("data", "--profile", "smoke", *TINY, "--force", runs_dir=tmp_path)
    assert forced.returncode == 0 and "forced re-run" in forced.stdout
    changed = cli("data", "--profile", "smoke", *TINY[:-4], "--set", "data.images_per_class=1",
                  "--set", "data.workers=1", runs_dir=tmp_path)
    assert changed.returncode == 0 and "config changed" in changed.stdout
    # one image per class is a dataset, but too small to train the IS classifier on: said, not fatal
    instruments = json.loads((tmp_path / "smoke" / "data" / "metrics.json").read_text())["figures"]["instruments"]
    assert "IS classifier needs at least one training and one held-out image" in instruments["not_built"]
    assert "instruments were not built" in changed.stdout
    status = cli("status", "--profile", "smoke", *TINY[:-4], "--set", "data.images_per_class=1",
                 "--set", "data.workers=1", runs_dir=tmp_path)
    assert "data    done" in status.stdout and "speech  missing" in status.stdout


def test_notebooks_command_runs_a_notebook_with_papermill_and_writes_the_summary(tmp_path):
    out = cli("notebooks", "--profile", "smoke", "--only", "01_spoken_captions",
              "--output-dir", str(tmp_path / "outputs"), runs_dir=tmp_path / "runs")
    assert out.returncode == 0, out.stderr[-3000:]
    executed = json.loads((tmp_path / "outputs" / "notebooks" / "01_spoken_captions.ipynb").read_text())
    code = [c for c in executed["cells"] if c["cell_type"] == "code"]
    assert all(c["execution_count"] for c in code)
    injected = [c for c in executed["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    assert injected and "smoke" in "".join(injected[0]["source"])
    summary = (tmp_path / "outputs" / "summary.md").read_text()
    # notebook 01 builds the data and speech steps, nothing after them
    assert "| data | done |" in summary and "| gan | missing |" in summary and "profile `smoke`" in summary
