"""Progress bars: widgets in JupyterLab, plain text when the notebooks run headless.

``tqdm.auto`` draws a widget inside any Jupyter kernel, including the one papermill starts for
``make run``, and a widget prints nothing to the terminal: a long step would look hung. The
notebook runner sets ``S2I_TEXT_PROGRESS=1`` (and a long ``TQDM_MININTERVAL``, so a log gets a
line every few seconds, not a flood), and every progress bar of the library comes from here.
"""
import os

if os.environ.get("S2I_TEXT_PROGRESS"):
    from tqdm.std import tqdm
else:
    from tqdm.auto import tqdm

__all__ = ["tqdm"]
