"""The rebuild's progress: a live bar on a terminal, plain lines anywhere else."""

import io

from workers.progress import EventProgress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_elsewhere_than_a_terminal_a_line_per_tenth_ends_on_the_final_count():
    out = io.StringIO()
    with EventProgress("rebuild", out) as progress:
        for done in range(0, 1001, 50):
            progress(done, 1000)
        progress(1003, 1003)  # what arrived during the rebuild, folded at the end
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue() and len(lines) == 12
    assert lines[0].startswith("rebuild: 0/1,000 events (0%)")
    assert lines[-1].startswith("rebuild: 1,003/1,003 events (100%), ")


def test_on_a_terminal_a_bar_is_drawn_and_ends_on_the_final_count():
    out = Terminal()
    with EventProgress("rebuild", out) as progress:
        progress(500, 1000)
        progress(1000, 1000)
    assert "1000/1000" in out.getvalue() and "━" in out.getvalue()
