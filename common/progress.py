"""Progress bars with ETA for the long loops (training epochs, evaluation,
conversion, int8 calibration, benchmarks), drawn by ``tqdm``.

A bar is drawn only where someone watches it: the stream it draws on (standard
error by default) is a terminal, and this process is the chief. Everywhere
else (CI logs, ``nohup``, files, non-chief Horovod ranks) :func:`progress`
returns a :class:`NoProgress` that draws nothing, and the callers keep writing
their usual log lines. ``EFFDET_PROGRESS=0`` turns bars off on a terminal too;
``EFFDET_PROGRESS=1`` draws them on any stream (for tests and ``script``-like
recorders).

Usage::

    with progress(total=steps, desc="epoch 3/8", unit="step") as bar:
        for _ in range(steps):
            ...
            bar.update(1)
            bar.set_postfix(loss=0.41)   # shown beside the bar
    if not bar.enabled:
        logging.info(...)               # the plain log line where no bar was drawn
"""
import os
import sys
from typing import Optional

ENV = "EFFDET_PROGRESS"


def bars_wanted(stream=None, is_chief: bool = True) -> bool:
    """Whether a bar on ``stream`` (default ``sys.stderr``) would be seen.

    ``EFFDET_PROGRESS`` = ``0`` / ``1`` overrides the terminal test; a non-chief
    process never draws.
    """
    if not is_chief:
        return False
    setting = os.environ.get(ENV, "").strip().lower()
    if setting in ("0", "false", "no", "off"):
        return False
    if setting in ("1", "true", "yes", "on"):
        return True
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


class NoProgress:
    """The bar where none is drawn: every method does nothing."""

    enabled = False
    n = 0

    def update(self, n: int = 1):
        self.n += n

    def set_postfix(self, **values):
        del values

    def write(self, text: str):
        del text

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


class Progress(NoProgress):
    """A ``tqdm`` bar: ``n/total``, rate, elapsed and ETA, and postfix values.

    Args:
        total: number of units (None: unknown; then rate and count only).
        desc: text left of the bar.
        unit: name of one unit (``step``, ``image``, ``batch``...).
        stream: where to draw (default ``sys.stderr``).
        leave: keep the finished bar on screen as one summary line.
        initial: units already done (a resumed epoch).
    """

    enabled = True

    def __init__(self, total: Optional[int] = None, desc: str = "", unit: str = "it", stream=None,
                 leave: bool = True, initial: int = 0):
        from tqdm import tqdm

        self._bar = tqdm(total=total, desc=desc, unit=unit, file=stream or sys.stderr,
                         leave=leave, initial=initial, dynamic_ncols=True,
                         mininterval=0.2, smoothing=0.1)

    @property
    def n(self):
        return self._bar.n

    def update(self, n: int = 1):
        self._bar.update(n)

    def set_postfix(self, **values):
        shown = {k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in values.items()}
        self._bar.set_postfix(shown, refresh=False)

    def write(self, text: str):
        """Prints a line above the bar without breaking it."""
        self._bar.write(text, file=self._bar.fp)

    def close(self):
        self._bar.close()


def progress(total: Optional[int] = None, desc: str = "", unit: str = "it", stream=None,
             is_chief: bool = True, leave: bool = True, initial: int = 0):
    """A :class:`Progress` bar where :func:`bars_wanted`, else a :class:`NoProgress`."""
    if not bars_wanted(stream, is_chief):
        return NoProgress()
    return Progress(total, desc, unit, stream, leave, initial)
