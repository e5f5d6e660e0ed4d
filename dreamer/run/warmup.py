"""Where a chunk of a distributed run starts dreaming, so that its first kept frame is
(almost) the frame an uninterrupted run makes.

A chunk cannot have the dream of the frame before it: another worker is still dreaming
that. So it starts W frames early from the raw frame and throws those W frames away.
What it lacks is the carried dream, and each frame keeps only part of it: frame j is
dreamed on (1 - b_j) * dream(j-1) + b_j * frame(j), so a difference in the carried dream
shrinks by (1 - b_j) each frame. Starting at frame s from the raw frame differs from the
uninterrupted run's start by at most 255 * (1 - b_s) grey levels, and at frame c by at
most 255 * prod_{j=s..c} m_j (m_j: the share of the old dream frame j keeps). The
default warm-up is the shortest one that brings this below one grey level (FADE).

With --flow the moved dream is kept with weight F (--flow-blend) where the flow is
reliable, and the dreamed frame is pulled a further S (--flow-smooth) towards it, so
the old dream keeps F + S (1 - F) of its weight (0.94 at the defaults): m_j is the larger
of that and 1 - b_j. Scene cuts, which drop the carried dream, are not counted: the
rule stays an upper bound on what the piece's input lacks.

The dream itself is chaotic, though: a difference of a fraction of a grey level in its
input grows into several in its output, as two runs that differ only in float rounding
show (docs/scale-out.md), so past a few frames a longer warm-up no longer shrinks the seam. Exact
seams come from frames that keep nothing of the dream before them (b = 1; -b loop has
one every 10 frames): a piece that starts at one is the uninterrupted run's, bit for bit,
and the warm-up reaches back up to EXACT_REACH frames further to start there.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

FADE = 1 / 255  # the carried dream's weight below which it moves no pixel a grey level
# The dream is chaotic: a difference far below a grey level in its input grows into one of
# several grey levels (measured: docs/scale-out.md), so a seam that fades is never quite gone, while
# one that starts at a frame keeping nothing of the dream (b = 1: -b loop, every 10 frames)
# is exact. Up to this many more warm-up frames are dreamed to start at such a frame.
EXACT_REACH = 10


def kept_share(values, flow: bool, flow_smooth: float) -> float:
    """m_j: the share of the previous dream frame j keeps (`values`: its FrameValues)."""
    share = 1.0 - values.blend
    if flow:
        f = values.flow_blend
        share = max(share, f + flow_smooth * (1.0 - f))
    return min(max(share, 0.0), 1.0)


def auto_start(keep: int, first: int, share: Callable[[int], float],
               fade: float = FADE, reach: int = EXACT_REACH) -> int:
    """The frame to start dreaming from the raw frame so that frame `keep` carries less
    than `fade` of what that start lacks; never before the range's `first` frame (a
    chunk that reaches it starts as the uninterrupted run does, exactly). A frame that
    keeps nothing of the dream before it (b = 1) up to `reach` frames further back is
    taken instead: from there the piece is the uninterrupted run's, bit for bit."""
    weight, start = 1.0, keep
    while start > first and weight > fade:
        weight *= share(start)
        start -= 1
    start = start + 1 if weight <= fade else first  # the last frame counted in
    if weight == 0.0 or start == first:
        return start  # exact already
    for j in range(start - 1, max(first + 1, start - reach) - 1, -1):
        if share(j) == 0.0:
            return j
    return start


def fixed_start(keep: int, first: int, warmup: int) -> int:
    """--warmup W: W frames before `keep`, or the range's first frame."""
    return max(first, keep - warmup)


@dataclass(frozen=True)
class Piece:
    """One stretch of a distributed run: frames `start`..`end` are dreamed, those from
    `keep` on are written. `state_from`: the frame whose saved dream `start` carries in
    (None: `start` begins from the raw frame)."""
    start: int
    keep: int
    end: int
    state_from: int | None

    @property
    def warmup(self) -> int:
        return self.keep - self.start


def split(todo: list[int], parts: int) -> list[tuple[int, int]]:
    """The frames to dream (sorted) as contiguous stretches (first, last): `parts` about
    equal shares, each cut where a frame between is already done."""
    if not todo:
        return []
    size, extra = divmod(len(todo), parts)
    shares, i = [], 0
    for p in range(parts):
        n = size + (p < extra)
        if n:
            shares.append(todo[i:i + n])
        i += n
    stretches = []
    for share in shares:
        begin = share[0]
        for prev, k in zip(share, share[1:]):
            if k != prev + 1:
                stretches.append((begin, prev))
                begin = k
        stretches.append((begin, share[-1]))
    return stretches


def plan_pieces(todo: list[int], parts: int, first: int, start_rule: Callable[[int], int],
                has_state: Callable[[int], bool]) -> list[Piece]:
    """Pieces for the frames `todo` of a range starting at `first`. A stretch whose
    previous frame's dream is on disk (`has_state`) carries it in, as a resumed run
    does; one that starts the range carries what an uninterrupted run would (the dream
    of frame first-1, when there is one); any other warms up from `start_rule(keep)`,
    from the latest frame on the way whose dream is on disk, if any."""
    pieces = []
    for keep, end in split(todo, parts):
        if keep == first or has_state(keep - 1):
            start = keep
        else:
            start = start_rule(keep)
        pieces.append(_seeded(start, keep, end, first, has_state))
    return pieces


def _seeded(start: int, keep: int, end: int, first: int,
            has_state: Callable[[int], bool]) -> Piece:
    for j in range(keep - 1, start - 2, -1):  # a saved dream within the warm-up: exact
        if j >= first and has_state(j):
            return Piece(j + 1, keep, end, j)
    if start == first and first > 1 and has_state(first - 1):
        return Piece(start, keep, end, first - 1)
    return Piece(start, keep, end, None)
