"""Hostile files in a runs folder: every loader refuses a planted pickle without running it and
names the file; damaged step outputs are found; locks, temp files and corrupt records are handled.

The planted payload creates a marker file when unpickled. Each test first checks that the payload
really runs under an unsafe load (so the test could fail), then that the library's path does not
run it and raises one error naming the file.
"""
import ast
import dataclasses
import json
import multiprocessing as mp
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from s2i_lib import load_config
from s2i_lib.config import Config
from s2i_lib.__main__ import main
from s2i_lib.artifacts import (BadFileError, atomic_path, damaged_file, file_manifest, load_array,
                               load_checkpoint, run_step, saved_state_for, step_lock, step_state)
from s2i_lib.pipeline import ensure, state

LIBRARY = Path(__file__).resolve().parent.parent / "s2i_lib"


class Payload:
    """Unpickling this opens (creates) ``marker``: the stand-in for arbitrary code."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def plant_checkpoint(path: Path, marker: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": Payload(marker), "meta": Payload(marker)}, path)
    # the control: an unsafe load of this file does run the payload
    torch.load(path, weights_only=False)
    assert marker.exists(), "the planted checkpoint is not hostile: the test could not fail"
    marker.unlink()
    return path


def plant_array(path: Path, marker: Path, npz_key: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    evil = np.array([Payload(marker)], dtype=object)
    if npz_key is None:
        np.save(path, evil, allow_pickle=True)
        np.load(path, allow_pickle=True)
    else:
        np.savez(path, **{npz_key: evil, "original": np.zeros((1, 4, 4, 3), np.uint8)})
        np.load(path, allow_pickle=True)[npz_key]
    assert marker.exists(), "the planted array is not hostile: the test could not fail"
    marker.unlink()
    return path


def assert_refused(call, path: Path, marker: Path, error=BadFileError):
    with pytest.raises(error) as e:
        call()
    assert not marker.exists(), "the planted payload ran"
    assert str(path) in str(e.value), f"the error does not name the file: {e.value}"
    assert "\n" not in str(e.value)


# ------------------------------------------------------------------------ the library's loaders
def test_the_library_never_unpickles():
    """No unsafe flag anywhere, and every torch.load / np.load goes through the two safe loaders."""
    offenders = []
    for root in (LIBRARY, LIBRARY.parent / "benchmarks", LIBRARY.parent / "data_scripts"):
        for py in root.rglob("*.py"):
            text = py.read_text()
            for flag in ("weights_only=False", "allow_pickle=True"):
                if flag in text:
                    offenders.append(f"{py}: {flag}")
            for node in ast.walk(ast.parse(text)):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and node.func.attr in ("load", "loads") and isinstance(node.func.value, ast.Name)
                        and node.func.value.id in ("torch", "np", "numpy", "pickle")
                        and not (py.name == "artifacts.py" and root == LIBRARY)):
                    offenders.append(f"{py}:{node.lineno}: {node.func.value.id}.{node.func.attr}")
    assert not offenders, "unsafe loads:\n" + "\n".join(offenders)


def test_load_checkpoint_and_load_array_refuse_a_payload(tmp_path):
    marker = tmp_path / "ran"
    ckpt = plant_checkpoint(tmp_path / "model.pt", marker)
    assert_refused(lambda: load_checkpoint(ckpt), ckpt, marker)
    npy = plant_array(tmp_path / "emb.npy", marker)
    assert_refused(lambda: load_array(npy), npy, marker)
    assert_refused(lambda: load_array(npy, mmap_mode="r"), npy, marker)
    npz = plant_array(tmp_path / "swaps.npz", marker, "swaps_json")
    assert_refused(lambda: load_array(npz), npz, marker)


@pytest.mark.parametrize("damage", [b"", b"\x80\x02garbage", b"PK\x03\x04 not a zip"])
def test_damaged_checkpoints_and_arrays_name_the_file(tmp_path, damage):
    for name, load in (("x.pt", load_checkpoint), ("x.npy", load_array), ("x.npz", load_array)):
        path = tmp_path / name
        path.write_bytes(damage)
        with pytest.raises(BadFileError, match=str(path)):
            load(path)


def test_a_truncated_checkpoint_names_the_file(tmp_path):
    path = tmp_path / "ok.pt"
    torch.save({"w": torch.randn(64, 64)}, path)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(BadFileError, match="ok.pt is damaged"):
        load_checkpoint(path)


def test_saved_state_for_rebuilds_over_a_payload(tmp_path):
    marker = tmp_path / "ran"
    ckpt = plant_checkpoint(tmp_path / "judge.pt", marker)
    assert saved_state_for(ckpt, {"format": 1}) is None   # a cache: rebuilt over, not trusted
    assert not marker.exists()


def test_is_classifier_and_attribute_judge_refuse_a_payload(tmp_path):
    from s2i_lib.evaluation.attribute_judge import load_attribute_judge
    from s2i_lib.evaluation.inception_score import load_is_classifier
    marker = tmp_path / "ran"
    for load in (load_is_classifier, load_attribute_judge):
        path = plant_checkpoint(tmp_path / f"{load.__name__}.pt", marker)
        assert_refused(lambda: load(path), path, marker)


def test_trained_model_files_refuse_a_payload(tmp_path, smoke_gan):
    from s2i_lib.sen.image_encoder import SenImageFeatures
    from s2i_lib.gan.trainer import load_generator
    from s2i_lib.inference import load_speech_encoder
    marker = tmp_path / "ran"
    sen_dir = tmp_path / "sen"
    for name in ("speech_encoder.pt", "image_encoder.pt"):
        plant_checkpoint(sen_dir / name, marker)
    gen = plant_checkpoint(tmp_path / "gan" / "generator.pt", marker)
    assert_refused(lambda: load_speech_encoder(sen_dir), sen_dir / "speech_encoder.pt", marker)
    assert_refused(lambda: SenImageFeatures(sen_dir, smoke_gan.cfg.sen), sen_dir / "image_encoder.pt", marker)
    assert_refused(lambda: load_generator(gen), gen, marker)


def test_colour_swap_and_generated_arrays_refuse_a_payload(tmp_path):
    from s2i_lib.reports.evaluation import load_generated, plot_colour_swaps
    marker = tmp_path / "ran"
    swaps = plant_array(tmp_path / "colour_swap_training_voices.npz", marker, "swaps")
    assert_refused(lambda: plot_colour_swaps(tmp_path), swaps, marker)
    generated = plant_array(tmp_path / "generated_training_voices.npz", marker, "images")
    assert_refused(lambda: load_generated(tmp_path), generated, marker)


def test_colour_swap_records_round_trip_as_json(tmp_path):
    """What the eval step writes, the notebook's plot reads (without unpickling)."""
    from s2i_lib.reports.evaluation import plot_colour_swaps
    from s2i_lib.evaluation.protocol import _save
    swaps = [{"caption": "a bird with a red belly", "old": "red", "new": "blue", "attribute": "belly_color",
              "mentions": {"belly_color": "red"}, "swapped": "a bird with a blue belly"}]
    images = np.zeros((1, 8, 8, 3), np.uint8)
    _save(tmp_path / "colour_swap_training_voices.npz", swaps_json=np.array(json.dumps(swaps)),
          original=images, swapped=images, success=np.array([True]))
    fig = plot_colour_swaps(tmp_path, n=1)
    assert fig.axes[1].get_title() == "red -> blue (belly)"


def test_colour_swap_plot_shows_successes_and_failures(tmp_path):
    """Whatever the success rate, the figure shows both kinds (here 2 successes among 10 swaps)."""
    from matplotlib.colors import to_hex
    from s2i_lib.reports.evaluation import plot_colour_swaps
    from s2i_lib.evaluation.protocol import _save
    colours = ["red", "blue", "green", "yellow", "white", "black", "brown", "grey", "orange", "pink"]
    swaps = [{"caption": f"a bird with a {c} belly", "old": c, "new": "blue", "attribute": "belly_color",
              "mentions": {"belly_color": c}, "swapped": "a bird with a blue belly"} for c in colours]
    images = np.zeros((10, 8, 8, 3), np.uint8)
    success = np.zeros(10, bool)
    success[[7, 9]] = True
    _save(tmp_path / "colour_swap_training_voices.npz", swaps_json=np.array(json.dumps(swaps)),
          original=images, swapped=images, success=success)
    fig = plot_colour_swaps(tmp_path, n=6)
    bottom = fig.axes[6:]                      # 2 rows of 6, filled row by row
    assert [ax.get_title().split(" ->")[0] for ax in bottom] == ["grey", "pink", "red", "blue", "green", "yellow"]
    assert [to_hex(ax.title.get_color()) for ax in bottom] == [to_hex("green")] * 2 + [to_hex("red")] * 4


# ------------------------------------------------------------- resuming from a planted checkpoint
def test_sen_resume_refuses_a_planted_checkpoint(smoke_gan, runs_copy, tmp_path, one_thread):
    marker = tmp_path / "ran"
    sen = runs_copy / "smoke" / "sen"
    (sen / "metrics.json").unlink()   # an interrupted run: it resumes from its checkpoint
    ckpt = plant_checkpoint(sen / "speech_checkpoint.pt", marker)
    assert_refused(lambda: ensure("sen", smoke_gan.cfg, runs_copy, log=lambda m: None), ckpt, marker)


def test_gan_resume_refuses_a_planted_checkpoint(smoke_gan, runs_copy, tmp_path, one_thread):
    marker = tmp_path / "ran"
    gan = runs_copy / "smoke" / "gan"
    (gan / "metrics.json").unlink()
    ckpt = plant_checkpoint(gan / "checkpoints" / "latest.pt", marker)
    assert_refused(lambda: ensure("gan", smoke_gan.cfg, runs_copy, log=lambda m: None), ckpt, marker)


def _cli(command: str, smoke_gan, runs_dir: Path) -> int:
    """``python -m s2i_lib <command>`` on the smoke profile's config, in this process: its exit code."""
    args = [command, "--profile", "smoke", "--runs-dir", str(runs_dir)]
    for o in smoke_gan.overrides:
        args += ["--set", o]
    return main(args)


def _foreign_checkpoints(latest: Path) -> dict:
    """Readable checkpoints that are not this run's: (what was changed, the state written)."""
    good = torch.load(latest, weights_only=True)
    wrong_shape = dict(good, generator={k: v[..., :1] if v.ndim else v for k, v in good["generator"].items()})
    other_settings = dict(good, meta=dict(good["meta"], seed=good["meta"]["seed"] + 1))
    return {"not a checkpoint": {"weights": torch.zeros(3)}, "keys missing": {"format": good["format"]},
            "shapes of another model": wrong_shape, "other settings": other_settings}


@pytest.mark.parametrize("kind", ["not a checkpoint", "keys missing", "shapes of another model", "other settings"])
def test_gan_resume_from_a_foreign_checkpoint_is_one_line_and_exit_2(smoke_gan, runs_copy, capsys, kind, one_thread):
    gan = runs_copy / "smoke" / "gan"
    latest = gan / "checkpoints" / "latest.pt"
    (gan / "metrics.json").unlink()   # an interrupted run: it resumes from latest.pt
    torch.save(_foreign_checkpoints(latest)[kind], latest)
    assert _cli("gan", smoke_gan, runs_copy) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and str(latest) in err and "\n" not in err
    assert ("other settings (seed)" in err) if kind == "other settings" else ("not a GAN checkpoint" in err)


# --------------------------------------------------------------------------- step records and status
def test_status_finds_a_truncated_checkpoint(smoke_gan, runs_copy, capsys):
    gen = runs_copy / "smoke" / "gan" / "generator.pt"
    assert state("gan", smoke_gan.cfg, runs_copy).status == "done"
    gen.write_bytes(gen.read_bytes()[:1000])
    st = state("gan", smoke_gan.cfg, runs_copy)
    assert st.status == "damaged" and str(gen) in st.reason and "1000 bytes" in st.reason
    assert _cli("status", smoke_gan, runs_copy) == 0
    out = capsys.readouterr().out
    assert "gan     damaged" in out and "eval    missing" in out


def test_a_deleted_output_and_a_changed_folder_are_found(tmp_path):
    d = tmp_path / "step"
    (d / "wav").mkdir(parents=True)
    for i in range(100):   # more files than are recorded one by one
        (d / "wav" / f"{i}.wav").write_bytes(b"x" * i)
    (d / "wav" / "voice_a").mkdir()   # a subfolder of a many-file folder: recorded on its own
    (d / "wav" / "voice_a" / "x.wav").write_bytes(b"xyz")
    (d / "model.pt").write_bytes(b"m" * 10)
    (d / "cache").mkdir()
    (d / "cache" / "later.npy").write_bytes(b"c")   # another step's cache: not recorded
    manifest = file_manifest(d)
    assert manifest == {"model.pt": 10, "wav/": [100, sum(range(100))], "wav/voice_a/x.wav": 3}
    assert damaged_file(d, manifest) is None
    (d / "cache" / "later.npy").write_bytes(b"changed")
    assert damaged_file(d, manifest) is None
    (d / "wav" / "5.wav").write_bytes(b"")
    assert "wav changed since the step finished (100 files, 4945 bytes" in damaged_file(d, manifest)
    (d / "wav" / "5.wav").write_bytes(b"x" * 5)
    (d / "model.pt").unlink()
    assert damaged_file(d, manifest) == f"{d / 'model.pt'} is missing (the step finished with it)"
    # a hand-edited (hostile) record: damage, not a traceback, and nothing outside the step is read
    for bad in ({"x/": 5}, {"../../etc/passwd": 3}, {"/etc/passwd": 3}, {"model.pt": "10"}, ["model.pt"]):
        assert "malformed record of the step's files" in damaged_file(d, bad), bad
    # a step folder with many files at its root lists them one by one (metrics.json is not among them)
    for i in range(70):
        (d / f"root_{i}.txt").write_text("r")
    assert "root_69.txt" in file_manifest(d) and "./" not in file_manifest(d)


def test_a_corrupt_metrics_json_is_one_line_and_the_step_resumes(smoke_gan, runs_copy, capsys):
    metrics = runs_copy / "smoke" / "data" / "metrics.json"
    metrics.write_text('{"step": "data", "run_id": ')   # truncated
    args = ["status", "--profile", "smoke", "--runs-dir", str(runs_copy)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"data    partial  {metrics} is not valid JSON" in out
    # a step on top of it: the data step resumes (its files are there) and the rest follows
    st = step_state(metrics.parent, "data", smoke_gan.cfg.step_hash("data"), {})
    assert st.status == "partial" and st.metrics is None


def test_a_step_that_fails_on_a_damaged_file_exits_2_with_one_line(smoke_gan, runs_copy, capsys):
    emb = runs_copy / "smoke" / "sen" / "embeddings" / "speech_train.npy"
    (runs_copy / "smoke" / "gan" / "metrics.json").unlink()
    shutil.rmtree(runs_copy / "smoke" / "gan" / "checkpoints")
    # a damaged file that the sen step's record cannot see (the same size, other bytes)
    emb.write_bytes(b"\x00" * emb.stat().st_size)
    assert _cli("gan", smoke_gan, runs_copy) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and str(emb) in err and "\n" not in err


# ----------------------------------------------------------------------------- locks and temp files
def _hold_lock(step_dir: str, seconds: float, ready) -> None:
    with step_lock(Path(step_dir), log=lambda m: None):
        ready.set()
        time.sleep(seconds)


def test_a_second_run_of_a_step_waits_for_the_first(tmp_path):
    step_dir = tmp_path / "runs" / "smoke" / "data"
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(str(step_dir), 2.0, ready))
    holder.start()
    assert ready.wait(60)
    said = []
    t0 = time.perf_counter()
    with step_lock(step_dir, log=said.append):
        waited = time.perf_counter() - t0
    holder.join()
    assert waited > 0.5, "the second run did not wait for the first"
    assert len(said) == 1 and f"process {holder.pid}" in said[0] and ".data.lock" in said[0]


def _run_data_force(runs_dir: str, queue) -> None:
    try:
        cfg = load_config("smoke")
        ensure("data", cfg, runs_dir, force=True, log=lambda m: None)
        queue.put("ok")
    except BaseException as e:   # what the issue saw: FileNotFoundError in one of the two
        queue.put(f"{type(e).__name__}: {e}")


def test_two_forced_runs_of_a_step_at_once_both_finish(tmp_path):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    runs = [ctx.Process(target=_run_data_force, args=(str(tmp_path), queue)) for _ in range(2)]
    for p in runs:
        p.start()
    results = [queue.get(timeout=300) for _ in runs]
    for p in runs:
        p.join()
    assert results == ["ok", "ok"]
    assert state("data", load_config("smoke"), tmp_path).status == "done"


def test_temp_files_of_a_killed_write_are_gone_after_the_resumed_run(tmp_path):
    step_dir = tmp_path / "step"

    def interrupted(d: Path) -> dict:
        (d / "part.json").write_text("{}")
        # what SIGKILL leaves behind in the middle of atomic_path (its finally never runs)
        (d / ".loss_history.0123abcd.tmp.json").write_text("{half")
        (d / "sub").mkdir(exist_ok=True)
        (d / "sub" / ".w.89abcdef.tmp.npy").write_bytes(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_step(step_dir, "demo", "h1", {}, {}, interrupted, log=lambda m: None)
    assert (step_dir / ".loss_history.0123abcd.tmp.json").exists()

    def finish(d: Path) -> dict:
        assert (d / "part.json").exists(), "the resumed run lost the finished part"
        with atomic_path(d / "out.json") as tmp:
            tmp.write_text("{}")
        return {}

    metrics = run_step(step_dir, "demo", "h1", {}, {}, finish, log=lambda m: None)
    left = sorted(p.name for p in step_dir.rglob("*tmp*"))
    assert left == [], f"temporary files left: {left}"
    assert set(metrics["files"]) == {"part.json", "out.json"}


# ------------------------------------------------------------------------------- config bounds
@pytest.mark.parametrize("override, message", [
    ("gan.batch_size=100000000000000000000000", "'gan.batch_size' = 100000000000000000000000: must be at most"),
    ("gan.kl_coeff=.inf", "'gan.kl_coeff' = inf: must be a finite number"),
    ("gan.rs_coeff=.nan", "'gan.rs_coeff' = nan: must be a finite number"),
    ("sen.lr=-.inf", "'sen.lr' = -inf: must be a finite number"),
    ("data.workers=100000", "'data.workers' = 100000: must be at most 256"),
    ("seed=18446744073709551616", "'seed' = 18446744073709551616: must be at most 4294967295"),
    ("gan.iterations=1000000000000", "'gan.iterations' = 1000000000000: must be at most"),
    ("gan.stage_sizes=[2048, 4096, 8192]", "the last stage must be at most 1024 px"),
])
def test_config_refuses_absurd_values(override, message, capsys):
    assert main(["status", "--profile", "smoke", "--set", override]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_config_refuses_a_float_batch_size_from_a_notebook():
    from s2i_lib.config import ConfigError
    with pytest.raises(ConfigError, match="'gan.batch_size' = 1e\\+23: must be an integer"):
        load_config("smoke", {"gan.batch_size": 1e23})


def test_workers_are_capped_by_the_cores(monkeypatch, tmp_path):
    """data.workers above the core count is allowed in a profile (paper profiles say 8) but only as
    many processes as there are cores are started."""
    import s2i_lib.steps.data as data_step
    seen = {}
    monkeypatch.setattr(data_step, "cpu_count", lambda: 2)
    def record(*args):
        seen["workers"] = args[-1]
        return {"name": "toybirds", "counts": {}, "captions_per_image": 10}

    monkeypatch.setattr(data_step, "build_toy_dataset", record)
    data_step.build_data_step(load_config("smoke", ["data.workers=64"]), tmp_path, {})
    assert seen["workers"] == 2


# --------------------------------------------------------------------- the paper profiles' recipe
# What the paper (and its code, where the paper is silent) specifies, written out here by hand so
# that a change of a profile or of a config default cannot slip a non-paper setting in.
PAPER = {
    "seed": 200,
    "speech.sample_rate": 22050, "speech.n_mels": 40, "speech.win_ms": 25.0, "speech.hop_ms": 10.0,
    "speech.captions_per_image": 10,
    "sen.backbone": "inception_v3_torchvision", "sen.embed_dim": 1024, "sen.conv_channels": [64, 128],
    "sen.gru_hidden": 512, "sen.gru_layers": 2, "sen.attention_hidden": 128, "sen.batch_size": 128,
    "sen.epochs": 150, "sen.lr": 1e-3, "sen.betas": [0.95, 0.999], "sen.weight_decay": 1e-3,
    "sen.lr_decay_every": 50, "sen.gamma": 10.0, "sen.distinctive_loss": True,
    "sen.backbone_input_size": None,
    "gan.stage_sizes": [64, 128, 256], "gan.gf_dim": 64, "gan.df_dim": 64, "gan.z_dim": 100,
    "gan.condition_dim": 128, "gan.res_blocks": 2, "gan.dense": True, "gan.relation_supervisor": True,
    "gan.rs_mode": "cooperative", "gan.condition_on": "speech", "gan.batch_size": 24,
    "gan.lr": 2e-4, "gan.betas": [0.5, 0.999], "gan.kl_coeff": 2.0, "gan.rs_coeff": 1.0,
    "gan.ema_decay": 0.999,
    # not in the paper: must be off
    "gan.rescale_embedding": False, "gan.rs_cached_views": False, "gan.d_projection": False,
    "gan.contrastive_coeff": 0.0, "speech.augment_share": 0.0,
    "eval.is_splits": 10,
}
PAPER_PER_DATASET = {
    "paper_cub": {"data.dataset": "cub", "data.image_size": 256, "gan.iterations": 600 * (8855 // 24)},
    "paper_oxford": {"data.dataset": "oxford", "data.image_size": 256, "gan.iterations": 600 * (7034 // 24)},
}


def test_the_config_defaults_are_the_papers_values():
    """A profile states only where it departs from the paper (the CPU profiles, with a comment
    for each): what it leaves out is the paper's value."""
    flat = {}
    for key, value in dataclasses.asdict(Config()).items():
        if isinstance(value, dict):
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    expected = {**PAPER, **PAPER_PER_DATASET["paper_cub"]}
    wrong = {k: (flat[k], v) for k, v in expected.items() if flat[k] != v}
    assert not wrong, f"config defaults that are not the paper's (default, paper value): {wrong}"


@pytest.mark.parametrize("profile", sorted(PAPER_PER_DATASET))
def test_paper_profiles_run_the_papers_recipe(profile):
    cfg = load_config(profile)
    flat = {}
    for key, value in dataclasses.asdict(cfg).items():
        if isinstance(value, dict):
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    expected = {**PAPER, **PAPER_PER_DATASET[profile]}
    wrong = {k: (flat[k], v) for k, v in expected.items() if flat[k] != v}
    assert not wrong, f"{profile} differs from the paper (profile value, paper value): {wrong}"


def test_a_damaged_image_cache_is_rebuilt(smoke_gan, runs_copy):
    """data/cache/ is shared by the later steps and not in the data step's record: a damaged cache
    file there is rebuilt over, not a failure of every run."""
    from s2i_lib.data.layout import read_dataset
    from s2i_lib.data.torch_datasets import image_cache
    index = read_dataset(runs_copy / "smoke" / "data")
    good = np.array(image_cache(index, "test", 32))
    path = runs_copy / "smoke" / "data" / "cache" / "images_test_32.npy"
    for damage in (b"", b"\x93NUMPY garbage", path.read_bytes()[:200]):
        path.write_bytes(damage)
        assert np.array_equal(image_cache(index, "test", 32), good)
