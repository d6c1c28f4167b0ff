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
