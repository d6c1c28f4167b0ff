"""Fixtures shared by the test modules."""
import pytest
import torch


@pytest.fixture(autouse=True)
def fp32_unless_a_step_chooses():
    """Every test starts in the library's default precision (fp32); a pipeline step a test runs
    sets the profile's (``select_device``), and it is undone afterwards, so that no test's numbers
    depend on which tests ran before it."""
    from s2i_lib import device
    before = device.precision()
    device._precision = device.Precision()
    yield
    device._precision = before


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run on one thread: with two, every small op (a GRU time step) waits at an
    OpenMP barrier, which on a busy 2-core machine costs a scheduler slice (measured: 0.26 s vs
    0.6 ms per forward of a tiny GRU)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# A 2-iteration GAN without the relation supervisor: the tests of what runs trained models (the
# demo, `generate`) need real artifacts with the profile's shapes, not good images.
SMOKE_GAN_OVERRIDES = ["gan.iterations=2", "gan.checkpoint_every=2", "gan.sample_every=2",
                       "gan.relation_supervisor=false"]


@pytest.fixture(scope="session")
def smoke_gan(tmp_path_factory):
    """The smoke profile built up to the gan step in a temporary runs folder (once per session):
    ``.cfg``, ``.runs_dir`` and the ``.overrides`` that give the same config on the command line."""
    from types import SimpleNamespace

    from s2i_lib import load_config
    from s2i_lib.pipeline import ensure
    cfg = load_config("smoke", SMOKE_GAN_OVERRIDES)
    runs_dir = tmp_path_factory.mktemp("runs")
    ensure("gan", cfg, runs_dir=runs_dir)
    return SimpleNamespace(cfg=cfg, runs_dir=runs_dir, overrides=list(SMOKE_GAN_OVERRIDES))


@pytest.fixture
def runs_copy(smoke_gan, tmp_path):
    """A private copy of the trained smoke runs folder, to damage at will."""
    import shutil
    copy = tmp_path / "runs"
    shutil.copytree(smoke_gan.runs_dir, copy, symlinks=True)
    return copy


@pytest.fixture(scope="module")
def generate(smoke_gan, one_thread):
    """Runs ``python -m s2i_lib generate`` in this process on the smoke model: (exit code, stdout,
    stderr). ``runs_dir`` replaces the fixture's runs folder (e.g. a damaged copy)."""
    from s2i_lib.__main__ import main

    def run(*args, capsys, runs_dir=None):
        argv = ["generate", "--profile", "smoke", "--runs-dir", str(runs_dir or smoke_gan.runs_dir)]
        for o in smoke_gan.overrides:
            argv += ["--set", o]
        try:
            code = main(argv + [str(a) for a in args])
        except SystemExit as e:   # argparse's own errors
            code = e.code
        out = capsys.readouterr()
        return code, out.out, out.err
    return run
