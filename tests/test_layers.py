"""The import architecture (``.importlinter``): the layers, who reads a whole profile, the steps, the GAN's
independence from speech, and no import cycles, checked by import-linter; and that a bad import
does break them (on a copy of the package)."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

import s2i_lib

REPO = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"   # the venv's (requirements.txt)


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` on the package and ``.importlinter`` under ``root`` (not an installed copy)."""
    env = {**os.environ, "PYTHONPATH": str(root), "NO_COLOR": "1", "COLUMNS": "400"}   # one line a contract
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=root, env=env, capture_output=True,
                          text=True, timeout=120)


def test_every_import_contract_is_kept():
    out = lint_imports(REPO)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "5 kept, 0 broken" in out.stdout, out.stdout[-2000:]


@pytest.mark.parametrize("module, bad_import, contract", [
    # data reaching up into the pipeline
    ("data/layout.py", "from .. import pipeline", "Layers"),
    # a step calling another step
    ("steps/gan.py", "from . import sen", "Steps"),
    # the GAN reading speech
    ("gan/blocks.py", "from ..speech import tts", "GAN"),
    # model code importing a plot
    ("evaluation/protocol.py", "from ..reports import evaluation", "Layers"),
    # code below the steps reading a whole profile
    ("sen/training.py", "from ..config import Config", "Profiles"),
    # a cycle inside one package that no layer sees: tts <-> features
    ("speech/tts.py", "from . import features", "No cycles"),
], ids=["layers", "steps", "gan", "reports", "profile", "cycle"])
def test_a_bad_import_breaks_its_contract(tmp_path, module, bad_import, contract):
    shutil.copytree(REPO / "s2i_lib", tmp_path / "s2i_lib", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / ".importlinter", tmp_path)
    path = tmp_path / "s2i_lib" / module
    path.write_text(path.read_text() + f"\n\ndef _bad():\n    {bad_import}\n")   # inside a function: counted too
    out = lint_imports(tmp_path)
    assert out.returncode == 1, out.stdout[-4000:] + out.stderr[-2000:]
    broken = [line for line in out.stdout.splitlines() if line.rstrip().endswith(" BROKEN")]
    assert any(line.startswith(f"{contract}:") for line in broken), out.stdout[-4000:]


def test_no_module_of_s2i_lib_is_in_an_import_cycle():
    """Module by module (the contract above checks siblings package by package): for every import
    a -> b, b does not lead back to a."""
    assert Path(s2i_lib.__file__).resolve().parent == REPO / "s2i_lib", s2i_lib.__file__
    graph = grimp.build_graph("s2i_lib", cache_dir=None)
    cycles = []
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            back = graph.find_shortest_chain(importer=imported, imported=importer)
            if back:
                cycles.append(" -> ".join((importer,) + tuple(back)))
    assert not cycles, "import cycles:\n" + "\n".join(cycles)
