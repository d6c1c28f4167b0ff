"""The notebooks' helpers: showing the library's own source beside an equation."""
import inspect

from s2i_lib.notebook_utils import show_source
from s2i_lib.sen.losses import matching_loss
from s2i_lib.speech.features import LogMel


def test_show_source_is_the_library_code_with_its_path():
    code = show_source(matching_loss).data
    assert code.splitlines()[0] == "# s2i_lib/sen/losses.py"
    assert code.split("\n", 1)[1] == inspect.getsource(matching_loss)
    part = show_source(matching_loss, lines=(1, 2)).data.splitlines()
    assert len(part) == 3 and part[1].startswith("def matching_loss(")


def test_show_source_unwraps_decorated_methods():
    code = show_source(LogMel.forward).data          # under @torch.no_grad()
    assert code.splitlines()[0] == "# s2i_lib/speech/features.py" and "def forward(" in code


def test_held_out_voice_table_reads_the_benchmark_of_this_profile_only(tmp_path, capsys):
    import json

    from s2i_lib.config import load_config
    from s2i_lib.notebook_utils import held_out_voice_table
    path = tmp_path / "bench_held_out_voice.json"
    cfg = load_config("smoke")
    assert held_out_voice_table(cfg, "P@10", path) is None and "not run yet" in capsys.readouterr().out
    rows = {"speech (training voices)": {"P@10, with": 0.4, "P@10, without": 0.42, "drawn, with": 0.45,
                                         "P@10 gap, with": 0.0, "P@10 gap, without": 0.0},
            "speech (piper:joe)": {"P@10, with": 0.3, "P@10, without": 0.08, "drawn, with": 0.39,
                                   "P@10 gap, with": -0.1, "P@10 gap, without": -0.34},
            "text": {"P@10, with": 0.41, "P@10, without": 0.41, "drawn, with": None}}
    path.write_text(json.dumps({"profile": "smoke", "voice": "piper:joe", "rows": rows}))
    table = held_out_voice_table(cfg, "P@10", path)
    assert list(table.columns) == ["P@10, with", "P@10, without", "P@10 gap, with", "P@10 gap, without"]
    assert table.loc["speech (piper:joe)", "P@10 gap, without"] == -0.34
    assert list(held_out_voice_table(cfg, "drawn", path).index) == ["speech (training voices)", "speech (piper:joe)"]
    assert held_out_voice_table(load_config("default"), "P@10", path) is None
