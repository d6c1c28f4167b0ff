"""``python -m s2i_lib generate`` on hostile files and bad input (issue 19): every case exits with 2
and one ``error: ...`` line naming the file or option, without a traceback, and leaves nothing
behind (no image, no caption.wav, no temporary file, no --out folder it created).

The files are real: WAVs written with soundfile, checkpoints copied from the trained smoke model
and then damaged in a copy of its runs folder (the shared fixture's folder is never touched).
"""
import builtins
import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch


SR = 22050
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def tone(seconds: float = 1.0, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (amplitude * np.sin(2 * np.pi * 220 * t)).astype(np.float64)


@pytest.fixture
def speech_wav(tmp_path) -> Path:
    path = tmp_path / "input" / "tone.wav"
    path.parent.mkdir()
    sf.write(path, tone(), SR, subtype="PCM_16")
    return path


def listing(folder: Path) -> list[str]:
    """Every path under ``folder`` (hidden temporary files included), relative to it."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def assert_one_line(code: int, err: str, *named: object) -> str:
    """Exit code 2, a single ``error:`` line on stderr naming each of ``named``, no traceback."""
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for thing in named:
        assert str(thing) in lines[0], (thing, err)
    return lines[0]


# ------------------------------------------------------------------------------------ --out
def test_out_under_a_regular_file(generate, capsys, tmp_path, speech_wav):
    (tmp_path / "file.txt").write_text("notes")
    out = tmp_path / "file.txt" / "sub"
    before = listing(tmp_path)
    code, _, err = generate("--wav", speech_wav, "--out", out, capsys=capsys)
    line = assert_one_line(code, err, "--out", tmp_path / "file.txt")
    assert "not a folder" in line
    assert listing(tmp_path) == before and (tmp_path / "file.txt").read_text() == "notes"


@pytest.mark.parametrize("below", ["", "sub"])
def test_out_through_a_dangling_symlink(generate, capsys, tmp_path, speech_wav, below):
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "nowhere")
    out = link / below if below else link
    code, _, err = generate("--wav", speech_wav, "--out", out, capsys=capsys)
    line = assert_one_line(code, err, "--out", link)
    assert "does not exist" in line and "symbolic link" in line
    assert link.is_symlink() and not (tmp_path / "nowhere").exists()


@pytest.mark.skipif(IS_ROOT, reason="root may write into a read-only (chmod 555) folder: the "
                                    "permission check cannot fail; test_write_failure_* covers the "
                                    "PermissionError path as root")
def test_out_in_a_read_only_folder(generate, capsys, tmp_path, speech_wav):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        code, _, err = generate("--wav", speech_wav, "--out", ro / "sub", capsys=capsys)
        line = assert_one_line(code, err, "--out", ro)
        assert "not writable" in line
        assert listing(ro) == []
    finally:
        ro.chmod(0o755)


def test_a_folder_where_an_image_goes(generate, capsys, tmp_path):
    out = tmp_path / "out"
    (out / "image_1.png").mkdir(parents=True)
    (out / "keep.txt").write_text("mine")
    before = listing(out)
    code, _, err = generate("--text", "a bird with a red crown", "--n", "2", "--out", out,
                            capsys=capsys)
    line = assert_one_line(code, err, "--out", out / "image_1.png")
    assert "is a folder" in line
    # neither image_0.png nor caption.wav was written before the failure
    assert listing(out) == before


def refuse_to_write(monkeypatch, name: str, error: OSError) -> None:
    """The OS refuses to put file ``name`` in place (as a full disk or a permission change would)."""
    real_replace = os.replace

    def refuse(src, dst, *a, **k):
        if Path(dst).name == name:
            raise error
        return real_replace(src, dst, *a, **k)

    monkeypatch.setattr(os, "replace", refuse)


def test_write_failure_leaves_nothing_behind(generate, capsys, tmp_path, monkeypatch):
    """The OS refuses the last file (as a full disk or a permission change would): the files
    already written by this run and the folder it created are removed, no temporary is left."""
    out = tmp_path / "new" / "out"
    refuse_to_write(monkeypatch, "images_x4.png", PermissionError(13, "Permission denied", str(out / "images_x4.png")))
    code, _, err = generate("--text", "a bird with a red crown", "--out", out, capsys=capsys)
    monkeypatch.undo()
    line = assert_one_line(code, err, "--out", out / "images_x4.png")
    assert "Permission denied" in line
    assert listing(tmp_path) == []   # no caption.wav, no image_0.png, no temp, not even new/


def test_write_failure_keeps_the_files_that_were_there(generate, capsys, tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    refuse_to_write(monkeypatch, "image_0.png", OSError(28, "No space left on device", str(out / "image_0.png")))
    code, _, err = generate("--text", "a bird with a red crown", "--out", out, capsys=capsys)
    monkeypatch.undo()
    assert_one_line(code, err, out / "image_0.png", "No space left on device")
    assert listing(out) == ["keep.txt"] and (out / "keep.txt").read_text() == "mine"


# ------------------------------------------------------------------------------------ --wav
def test_wav_is_a_folder(generate, capsys, tmp_path):
    folder = tmp_path / "take1.wav"
    folder.mkdir()
    code, _, err = generate("--wav", folder, "--out", tmp_path / "out", capsys=capsys)
    assert_one_line(code, err, folder)
    assert not (tmp_path / "out").exists()


def test_wav_the_user_may_not_read(generate, capsys, tmp_path, speech_wav, monkeypatch):
    if IS_ROOT:
        # root reads a chmod 000 file: make open() fail for this file as the OS does for a user
        real_open = builtins.open

        def refuse(file, *a, **k):
            if str(file) == str(speech_wav):
                raise PermissionError(13, "Permission denied", str(file))
            return real_open(file, *a, **k)

        monkeypatch.setattr(builtins, "open", refuse)
    else:
        speech_wav.chmod(0)
    code, _, err = generate("--wav", speech_wav, "--out", tmp_path / "out", capsys=capsys)
    monkeypatch.undo()
    line = assert_one_line(code, err, speech_wav)
    assert "permission denied" in line.lower()
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("subtype, peak", [("FLOAT", 3e38), ("FLOAT", 1000.0), ("DOUBLE", 1e300)])
def test_float_wav_far_outside_the_unit_range(generate, capsys, tmp_path, subtype, peak):
    """Finite float samples near 3e38 overflowed the power spectrum: NaN features, a black image
    and exit 0. Such a file is refused, naming it."""
    path = tmp_path / f"loud_{subtype}.wav"
    sf.write(path, tone() / 0.3 * peak, SR, subtype=subtype)
    assert sf.info(path).subtype == subtype
    code, _, err = generate("--wav", path, "--out", tmp_path / "out", capsys=capsys)
    line = assert_one_line(code, err, path)
    assert "[-1, 1]" in line or "infinite" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")   # the point of the test
def test_draw_refuses_non_finite_features(smoke_gan, one_thread):
    """The check behind the audio reader's: whatever wave reaches the models, NaN never becomes a
    black image."""
    from s2i_lib.demo import draw
    from s2i_lib.steps.profile import speech_to_image
    s2i = speech_to_image(smoke_gan.cfg, smoke_gan.runs_dir)
    with pytest.raises(ValueError, match="not finite"):
        draw(s2i, (tone() / 0.3 * 3e38).astype(np.float32), 1, 0)


# ------------------------------------------------------------------------------------ checkpoints
def damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "random":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, len(data), np.uint8).tobytes())
    elif how == "foreign":   # a valid torch file, but not a model of this course
        torch.save({"hello": torch.zeros(3)}, path)
    elif how == "nan":       # a diverged training: the right keys, NaN weights
        state = torch.load(path, map_location="cpu", weights_only=True)
        weights = state["state_dict"]
        name = next(k for k, v in weights.items() if v.is_floating_point())
        weights[name] = torch.full_like(weights[name], float("nan"))
        torch.save(state, path)


@pytest.mark.parametrize("step, file, rebuild", [
    ("gan", "generator.pt", "python -m s2i_lib gan --profile smoke --force"),
    ("sen", "speech_encoder.pt", "python -m s2i_lib sen --profile smoke --force"),
])
@pytest.mark.parametrize("how", ["truncated", "empty", "random", "foreign", "nan"])
def test_damaged_checkpoint(generate, capsys, tmp_path, runs_copy, step, file, rebuild, how):
    path = runs_copy / "smoke" / step / file
    damage(path, how)
    code, _, err = generate("--text", "a bird with a red crown", "--out", tmp_path / "out",
                            runs_dir=runs_copy, capsys=capsys)
    line = assert_one_line(code, err, path, rebuild)
    assert "damaged" in line
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------ --seed
def test_seed_out_of_range(generate, capsys, tmp_path, speech_wav):
    code, _, err = generate("--wav", speech_wav, "--seed", 2**64, "--out", tmp_path / "out",
                            capsys=capsys)
    assert_one_line(code, err, "--seed", 2**63 - 1, 2**64)
    assert not (tmp_path / "out").exists()


def test_largest_seed_works(generate, capsys, tmp_path, speech_wav):
    code, _, err = generate("--wav", speech_wav, "--seed", 2**63 - 1, "--out", tmp_path / "out",
                            capsys=capsys)
    assert code == 0, err
    assert (tmp_path / "out" / "image_0.png").exists()


# ------------------------------------------------------------------------------------ config
@pytest.mark.parametrize("override, named", [
    ("gan.z_dim=32", "gan.z_dim: 16 -> 32"),
    ("sen.epochs=3", "sen.epochs: 2 -> 3"),
])
def test_config_other_than_the_trained_one(generate, capsys, tmp_path, speech_wav, smoke_gan,
                                           override, named):
    """A config that differs from the trained model's used the old model silently."""
    code, _, err = generate("--wav", speech_wav, "--set", override, "--out", tmp_path / "out",
                            capsys=capsys)
    line = assert_one_line(code, err, named, smoke_gan.runs_dir / "smoke" / "gan",
                           "python -m s2i_lib gan --profile smoke")
    assert "another config" in line
    assert not (tmp_path / "out").exists()


def test_gan_trained_on_another_run_of_the_sen_step(generate, capsys, tmp_path, runs_copy,
                                                    speech_wav):
    """The sen step re-run (same config) after the gan step: the generator was trained on the old
    encoder's embeddings, and drawing with the new one gave wrong images, silently."""
    path = runs_copy / "smoke" / "sen" / "metrics.json"
    metrics = json.loads(path.read_text())
    metrics["run_id"] = "rerun0000000"
    path.write_text(json.dumps(metrics))
    code, _, err = generate("--wav", speech_wav, "--out", tmp_path / "out", runs_dir=runs_copy,
                            capsys=capsys)
    assert_one_line(code, err, runs_copy / "smoke" / "gan", "another run of the sen step",
                    "python -m s2i_lib gan --profile smoke")
    assert not (tmp_path / "out").exists()
