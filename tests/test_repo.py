"""Repository rules: clean notebooks with a parameters cell, pinned requirements, conda delegating."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
EXPECTED = ["01_spoken_captions", "02_speech_embedding_network", "03_generator_relation_supervisor",
            "04_evaluation", "05_interactive_demo"]


def test_the_five_notebooks_exist():
    assert [p.stem for p in NOTEBOOKS] == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_clean_with_python3_kernel_and_parameters(path):
    nb = json.loads(path.read_text())
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    dirty = [i for i, c in enumerate(code) if c.get("outputs") or c.get("execution_count")]
    assert not dirty, f"{path.name}: code cells {dirty} hold outputs or execution counts; clear them"
    first = code[0]
    assert "parameters" in first["metadata"].get("tags", []), f"{path.name}: first code cell not tagged"
    src = "".join(first["source"])
    assert 'profile = os.environ.get("S2I_PROFILE", "default")' in src


def test_requirements_are_exact_pins_with_the_verified_torch_trio():
    lines = [l.split("#")[0].strip() for l in (REPO / "requirements.txt").read_text().splitlines()]
    pins = [l for l in lines if l]
    bad = [l for l in pins if not re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[0-9][A-Za-z0-9.+\-]*", l)]
    assert not bad, f"not exact pins: {bad}"
    assert {"torch==2.14.1", "torchvision==0.29.1", "torchaudio==2.11.0"} <= set(pins)


def test_environment_yml_delegates_to_requirements_txt():
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    deps = env["dependencies"]
    conda_pkgs = [d for d in deps if isinstance(d, str)]
    assert sorted(conda_pkgs) == ["pip", "python=3.11"], f"conda packages must be only python and pip: {conda_pkgs}"
    pip_sections = [d["pip"] for d in deps if isinstance(d, dict)]
    assert len(pip_sections) == 1 and "-r requirements.txt" in pip_sections[0]
    assert all(x.startswith("-") for x in pip_sections[0]), "no package pins outside requirements.txt"


def test_readme_starts_with_the_two_commands():
    head = (REPO / "README.md").read_text()[:1500]
    assert head.index("make run") < head.index("make test")
    assert "LICENSE" in (REPO / "README.md").read_text()


def test_gitignore_covers_generated_folders():
    ignored = (REPO / ".gitignore").read_text().split()
    assert {".venv/", "runs/", "outputs/"} <= set(ignored)


def test_pytest_collects_nbval_items_for_every_notebook():
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "notebooks"],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    collected = {line.split("::")[0] for line in out.stdout.splitlines() if ".ipynb::" in line}
    assert collected == {f"notebooks/{n}.ipynb" for n in EXPECTED}, out.stdout[-2000:] + out.stderr[-2000:]
