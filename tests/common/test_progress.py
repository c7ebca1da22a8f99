"""Progress bars: drawn on a terminal by the chief only, never into logs or files."""
import io
import os
import pty
import sys
import threading

from common.progress import NoProgress, Progress, bars_wanted, progress
from dataset.converter_utils import parallel_map


class _FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_bars_only_where_someone_watches(monkeypatch):
    monkeypatch.delenv("EFFDET_PROGRESS", raising=False)
    assert not bars_wanted(io.StringIO())                 # a file, a pipe, CI
    assert bars_wanted(_FakeTerminal())
    assert not bars_wanted(_FakeTerminal(), is_chief=False)  # Horovod rank > 0
    monkeypatch.setenv("EFFDET_PROGRESS", "0")
    assert not bars_wanted(_FakeTerminal())
    monkeypatch.setenv("EFFDET_PROGRESS", "1")
    assert bars_wanted(io.StringIO())
    assert not bars_wanted(io.StringIO(), is_chief=False)


def test_no_bar_writes_nothing(monkeypatch):
    monkeypatch.delenv("EFFDET_PROGRESS", raising=False)
    stream = io.StringIO()
    with progress(3, "work", stream=stream) as bar:
        for _ in range(3):
            bar.update(1)
            bar.set_postfix(loss=0.5)
    assert isinstance(bar, NoProgress) and not bar.enabled and bar.n == 3
    assert stream.getvalue() == ""


def test_bar_shows_count_eta_and_postfix(monkeypatch):
    monkeypatch.delenv("EFFDET_PROGRESS", raising=False)
    stream = _FakeTerminal()
    with progress(4, "epoch 1/2", "step", stream=stream, initial=1) as bar:
        for _ in range(3):
            bar.update(1)
        bar.set_postfix(cls_loss=0.123456, img_s=12.0)
    assert isinstance(bar, Progress)
    text = stream.getvalue()
    assert "epoch 1/2" in text and "4/4" in text and "cls_loss=0.1235" in text, text


def test_conversion_counts_images_on_a_pseudo_terminal(monkeypatch):
    monkeypatch.delenv("EFFDET_PROGRESS", raising=False)
    master, slave = pty.openpty()
    terminal = os.fdopen(slave, "w", buffering=1)
    chunks = []

    def read():
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert list(parallel_map(str, [1, 2, 3, 4, 5], 1)) == ["1", "2", "3", "4", "5"]
    terminal.close()
    reader.join(10)
    os.close(master)
    screen = b"".join(chunks).decode()
    assert "converting" in screen and "5/5" in screen and "image" in screen, screen
