"""``python -m s2i_lib generate``: both inputs, what it writes, and bad input (exit 2, the file named)."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from s2i_lib.__main__ import main

REPO = Path(__file__).resolve().parent.parent
SR = 22050


def test_text_then_its_wav(generate, capsys, tmp_path):
    code, out, err = generate("--text", "a small bird with a red crown", "--n", "3", "--seed", "2",
                              "--out", tmp_path / "text", capsys=capsys)
    assert code == 0, err
    wav = tmp_path / "text" / "caption.wav"
    audio, rate = sf.read(wav)
    assert rate == SR and len(audio) > 0.5 * SR
    for i in range(3):
        assert Image.open(tmp_path / "text" / f"image_{i}.png").size == (64, 64)
    assert not (tmp_path / "text" / "image_3.png").exists()
    assert Image.open(tmp_path / "text" / "images_x4.png").size == (3 * 256, 256)
    assert "latency" in out and "generation" in out and "espeak:en-us" in out

    code, out, err = generate("--wav", wav, "--out", tmp_path / "wav", capsys=capsys)
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "wav").iterdir()) == ["image_0.png", "images_x4.png"]
    assert str(wav) in out and "latency" in out


def test_held_out_voice(generate, capsys, tmp_path, smoke_gan):
    voice = smoke_gan.cfg.speech.heldout_voices[0]
    code, out, err = generate("--text", "a bird with a blue belly", "--voice", voice, "--out", tmp_path,
                              capsys=capsys)
    assert code == 0, err
    assert voice in out and (tmp_path / "image_0.png").exists()


def bad_file(kind: str, folder: Path) -> Path:
    path = folder / {"missing": "missing.wav", "text": "notes.wav", "empty": "empty.flac",
                     "silent": "silent.wav", "long": "long.wav"}[kind]
    if kind == "text":
        path.write_text("not audio")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "silent":
        sf.write(path, np.zeros(SR, np.float32), SR)
    elif kind == "long":
        sf.write(path, np.full(31 * 8000, 0.1, np.float32), 8000)
    return path


@pytest.mark.parametrize("kind, message", [
    ("missing", "does not exist"), ("text", "not a readable audio file"), ("empty", "empty"),
    ("silent", "silent"), ("long", "31.0 s long"),
])
def test_bad_files_exit_2_naming_the_file(generate, capsys, tmp_path, kind, message):
    path = bad_file(kind, tmp_path)
    code, out, err = generate("--wav", path, "--out", tmp_path / "out", capsys=capsys)
    assert code == 2
    assert message in err and str(path) in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, message", [
    (["--text", "a red bird", "--wav", "x.wav"], "not allowed with"),
    ([], "one of the arguments --wav --text is required"),
    (["--text", "a red bird", "--voice", "espeak:en-us+m7"], "unknown voice 'espeak:en-us+m7'"),
    (["--text", "   "], "empty"),
    (["--text", "a red bird", "--n", "0"], "between 1 and 64"),
    (["--wav", "x.wav", "--voice", "espeak:en-us"], "--voice applies to --text only"),
])
def test_bad_arguments_exit_2(generate, capsys, tmp_path, args, message):
    code, out, err = generate(*args, "--out", tmp_path / "out", capsys=capsys)
    assert code == 2 and message in err


def test_out_must_be_a_folder(generate, capsys, tmp_path):
    (tmp_path / "file").write_text("")
    code, out, err = generate("--text", "a red bird", "--out", tmp_path / "file", capsys=capsys)
    assert code == 2 and str(tmp_path / "file") in err


def test_unbuilt_profile_says_what_to_build(capsys, tmp_path):
    code = main(["generate", "--profile", "smoke", "--runs-dir", str(tmp_path), "--text", "a red bird",
                 "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "generator.pt is missing" in err and "python -m s2i_lib gan --profile smoke" in err


def test_python_dash_m_entry_point(smoke_gan, tmp_path):
    cmd = [sys.executable, "-m", "s2i_lib", "generate", "--profile", "smoke",
           "--runs-dir", str(smoke_gan.runs_dir), "--text", "a bird with a yellow belly", "--out", str(tmp_path)]
    for o in smoke_gan.overrides:
        cmd += ["--set", o]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "latency" in out.stdout and (tmp_path / "image_0.png").exists() and (tmp_path / "caption.wav").exists()
