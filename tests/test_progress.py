"""The one progress bar: drawn on stderr only when stderr is a terminal, transient, counting units."""

import io
import sys

from rprm_lite.progress import ProgressBar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_without_a_terminal_nothing_is_drawn(monkeypatch):
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    with ProgressBar("scoring", 3) as bar:
        bar.advance()
        bar.update(2, 3)
    assert stderr.getvalue() == ""


def test_on_a_terminal_the_bar_counts_and_is_cleared(monkeypatch):
    stderr = Terminal()
    monkeypatch.setattr(sys, "stderr", stderr)
    with ProgressBar("scoring", 4) as bar:
        bar.advance(label="s1 step 1/2")
        bar.advance(2)
        bar._bar.refresh()
        drawn = stderr.getvalue()
        assert "s1 step 1/2" in drawn and "3/4" in drawn
        bar.update(1, 5)
        bar._bar.refresh()
        assert "1/5" in stderr.getvalue()[len(drawn):]
    assert stderr.getvalue().endswith("\x1b[2K")  # transient: the bar's line is erased at the end
