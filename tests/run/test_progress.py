"""dreamer.run.progress: the tqdm bar on a terminal, one plain line a frame elsewhere."""
import gc
import io
import os
import re
import struct

import pytest

from dreamer.run.progress import Progress, Timer


class Tty(io.StringIO):
    """A terminal as far as the bar can tell."""

    def isatty(self):
        return True


@pytest.fixture
def sized_tty():
    """A Tty whose size is a real pseudo-terminal's (tqdm asks the stream's fileno)."""
    fcntl, termios = pytest.importorskip("fcntl"), pytest.importorskip("termios")
    master, slave = os.openpty()

    def make(columns):
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 25, columns, 0, 0))
        stream = Tty()
        stream.fileno = lambda: slave
        return stream

    yield make
    os.close(master)
    os.close(slave)


def frames(progress, seconds, first=1):
    for k, s in enumerate(seconds, first):
        progress.frame_done(k, s)


# --- not a terminal: one line a frame ---------------------------------------------------------

def test_a_log_gets_exactly_one_plain_line_a_frame_with_the_eta_of_the_mean_past_warm_up():
    p = Progress(5, verbose=1, stream=io.StringIO())
    frames(p, [10.0, 2.0, 2.0, 2.0, 2.0], first=7)
    # means 10, 6 (two frames cannot tell warm-up from the pace), then the 10 s warm-up
    # (over 3 x the median 2) is left out: 2 s; ETA = mean x frames left: 40, 18, 4, 2, 0
    assert p.stream.getvalue() == (
        "frame 00000007 done: 1/5 frames, 10.00 s/frame, ETA 40s\n"
        "frame 00000008 done: 2/5 frames, 6.00 s/frame, ETA 18s\n"
        "frame 00000009 done: 3/5 frames, 2.00 s/frame, ETA 4s\n"
        "frame 00000010 done: 4/5 frames, 2.00 s/frame, ETA 2s\n"
        "frame 00000011 done: 5/5 frames, 2.00 s/frame, ETA 0s\n")
    assert p.done == 5 and p.eta_seconds() == 0


def test_the_warm_up_frames_leave_the_mean_as_soon_as_the_pace_shows():
    p = Progress(120, stream=io.StringIO())
    frames(p, [60.0, 60.0] + [2.31] * 10)
    lines = p.stream.getvalue().splitlines()
    assert lines[-1] == "frame 00000012 done: 12/120 frames, 2.31 s/frame, ETA 4m09s"  # x 108
    assert p.eta_seconds() == pytest.approx(2.31 * 108)
    assert lines[1].endswith("60.00 s/frame, ETA 1h58m00s")
    assert lines[4].endswith("2.31 s/frame, ETA 4m26s")  # 3 frames of pace outvote 2; x 115


def test_a_slow_frame_later_in_the_run_is_pace_not_warm_up():
    p = Progress(100, stream=io.StringIO())
    frames(p, [2.0] * 6 + [20.0])
    assert p.seconds_per_frame() == pytest.approx(32 / 7)


def test_a_layer_loop_of_unequal_frames_keeps_a_steady_eta():
    """The issue's swing (2m46s, 1m22s, 2m48s): a loop over 12 layers whose frames cost
    1 s to 8 s. The mean of 10 frames moved with the loop's phase; 50 frames do not."""
    p = Progress(1000, stream=io.StringIO())
    loop = [1.0 + 7.0 * (k % 12) / 11 for k in range(12)]
    etas = []
    for k in range(1, 121):
        p.frame_done(k, loop[k % 12])
        etas.append(p.eta_seconds() / (1000 - k))  # the s/frame the ETA assumes
    late = etas[60:]
    assert max(late) / min(late) < 1.1
    assert sum(late) / len(late) == pytest.approx(4.5, rel=0.05)  # the loop's true mean


def test_bursts_of_frames_from_workers_keep_a_steady_eta():
    """4 workers deliver 4 frames within 0.1 s, then nothing for 8 s."""
    p = Progress(1000, stream=io.StringIO())
    burst = [7.7, 0.1, 0.1, 0.1]
    rates = []
    for k in range(1, 201):
        p.frame_done(k, burst[k % 4])
        rates.append(p.seconds_per_frame())
    assert max(rates[60:]) / min(rates[60:]) < 1.1
    assert rates[-1] == pytest.approx(2.0, rel=0.05)


def test_a_log_has_no_carriage_returns_or_bar_characters():
    p = Progress(30, stream=io.StringIO())
    for k in range(30):
        p.frame_done(k, 0.5)
        p.info(f"message {k}")
    p.info("after the last frame")
    text = p.stream.getvalue()
    assert "\r" not in text and "#" not in text and "|" not in text and "\x1b" not in text
    lines = text.splitlines()
    assert len(lines) == 61 and lines[-1] == "after the last frame"
    done = [int(m[1]) for m in map(re.compile(r"frame \d{8} done: (\d+)/30 frames").match,
                                   lines) if m]
    assert done == list(range(1, 31))


def test_eta_is_unknown_before_the_first_frame():
    p = Progress(3, stream=io.StringIO())
    assert p.eta_seconds() is None and p.done == 0 and p.total == 3 and p.verbose == 1


def test_the_default_stream_is_stderr(capsys):
    p = Progress(2)
    p.info("hello")
    frames(p, [1.0, 1.0])
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == ["hello", "frame 00000001 done: 1/2 frames, 1.00 s/frame, "
                                         "ETA 1s", "frame 00000002 done: 2/2 frames, 1.00 "
                                         "s/frame, ETA 0s"]


# --- verbosity ----------------------------------------------------------------------------

@pytest.mark.parametrize("stream", [io.StringIO, Tty])
def test_verbose_0_writes_nothing_and_still_counts(stream):
    p = Progress(4, verbose=0, stream=stream())
    p.info("seed 1")
    frames(p, [5.0, 1.0, 1.0])
    p.info("octave", level=2)
    assert p.stream.getvalue() == ""
    assert p.done == 3 and p.eta_seconds() == pytest.approx(1.0)  # 5 s: warm-up
    frames(p, [1.0], first=4)
    p.close()
    assert p.stream.getvalue() == ""


@pytest.mark.parametrize("verbose, shown", [(1, ["run", "frame"]), (2, ["run", "octave", "frame"]),
                                            (3, ["run", "octave", "frame"])])
def test_messages_by_level(verbose, shown):
    p = Progress(1, verbose=verbose, stream=io.StringIO())
    p.info("run")
    p.info("octave", level=2)
    p.frame_done(1, 1.0)
    assert [line.split()[0] for line in p.stream.getvalue().splitlines()] == shown


# --- a terminal: tqdm's bar ---------------------------------------------------------------

def test_a_terminal_gets_a_bar_redrawn_in_place():
    p = Progress(10, stream=Tty())
    frames(p, [30.0, 2.0, 2.0])
    text = p.stream.getvalue()
    assert text.startswith("\r") and "\n" not in text  # one line, drawn again and again
    last = text.split("\r")[-1]
    # the 30 s warm-up is left out: 2 s a frame, 7 frames left: 14 s
    assert re.fullmatch(r" 30%\|###[# ]* *\| 3/10 frames \[00:0\d<00:14, 2\.00 s/frame\] "
                        r"last 00000003 *", last), last
    assert "1/10 frames" in text and "2/10 frames" in text


def test_the_bar_ends_its_line_when_the_last_frame_is_in_and_closing_again_is_harmless():
    p = Progress(3, stream=Tty())
    frames(p, [1.0, 1.0, 1.0])
    text = p.stream.getvalue()
    assert text.endswith("\n") and text.count("\n") == 1
    assert text.rstrip("\n").split("\r")[-1].startswith("100%|##########| 3/3 frames")
    p.close()
    p.close()
    p.info("summary")
    assert p.stream.getvalue() == text + "summary\n"


def test_messages_clear_the_bar_take_their_own_line_and_the_bar_comes_back():
    p = Progress(4, verbose=2, stream=Tty())
    p.info("seed 7")  # before the first frame: no bar yet
    assert p.stream.getvalue() == "seed 7\n"
    p.frame_done(1, 3.0)
    p.info("  frame 00000002 octave 1/2 64x64 0.10 s", level=2)
    text = p.stream.getvalue()
    bar, cleared = text[len("seed 7\n"):].split("\r")[1:3]
    assert "1/4 frames" in bar
    assert cleared.strip() == ""  # blanked, then the message from the line's start
    assert "\r  frame 00000002 octave 1/2 64x64 0.10 s\n\r" in text
    assert text.split("\n")[-1].startswith("\r 25%|")  # the bar again, under the message
    p.frame_done(2, 3.0)
    assert p.stream.getvalue().split("\n")[-1].split("\r")[-1].startswith(" 50%|")


def test_closing_an_unfinished_bar_leaves_it_on_its_line_and_later_frames_are_lines():
    p = Progress(5, stream=Tty())
    frames(p, [1.0, 1.0])
    p.close()  # e.g. before a message that ends the run
    text = p.stream.getvalue()
    assert text.endswith("\n") and "2/5 frames" in text.split("\r")[-1]
    p.frame_done(3, 1.0)
    assert p.stream.getvalue()[len(text):] == (
        "frame 00000003 done: 3/5 frames, 1.00 s/frame, ETA 2s\n")


def test_an_unfinished_bar_is_not_drawn_again_when_collected():
    # an interrupted run prints its message, then the bar is collected: it must not reappear
    stream = Tty()
    p = Progress(5, stream=stream)
    frames(p, [1.0, 1.0])
    stream.write("interrupted during frame 3\n")
    before = stream.getvalue()
    del p
    gc.collect()
    assert stream.getvalue() == before


def test_the_bar_fits_the_terminal(sized_tty):
    p = Progress(4, stream=sized_tty(161))
    frames(p, [1.0, 1.0])
    last = p.stream.getvalue().split("\r")[-1]
    bar = last.split("|")[1]
    assert len(last) == 160 and len(bar) == 101  # all the width the figures leave
    assert bar.startswith("#" * 50) and bar.endswith(" " * 50)


def test_a_terminal_that_says_it_is_0_wide_still_gets_the_whole_bar(sized_tty):
    p = Progress(4, stream=sized_tty(0))  # as some pseudo-terminals report before a resize
    frames(p, [1.0, 1.0])
    assert p.stream.getvalue().split("\r")[-1] == (
        " 50%|#####     | 2/4 frames [00:00<00:02, 1.00 s/frame] last 00000002")


def test_timer_laps():
    t = Timer()
    first, second = t.lap(), t.lap()
    assert 0 <= first < 5 and 0 <= second < 5
