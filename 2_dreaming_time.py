#!/usr/bin/env python3
"""Stage 2 of DeepDreamVideo: dream on the frames that ./1_movie2frames.sh extracted.

    python 2_dreaming_time.py -i frames -o processed -it jpg --gpu 0

All the work is in the `dreamer` package (dreamer.cli.dream, dreamer.run.sequence).
"""
import os
import signal
import sys


def _interrupted(signum, frame):
    # dreamer.cli.signals.exit_at_once's twin, in place before dreamer itself is read:
    # in a fresh clone compiling even the light modules takes a moment
    os.write(2, b"\nerror: interrupted\n")
    os._exit(130)


if __name__ == "__main__":
    # Before any other import: Ctrl-C while PyTorch loads (seconds) gives one line, not a
    # traceback; dreamer.cli.dream's main takes over from there.
    signal.signal(signal.SIGINT, _interrupted)
    from dreamer.cli.dream import main  # (main keeps Ctrl-C at one line while torch loads)

    sys.exit(main(prog="2_dreaming_time.py"))
