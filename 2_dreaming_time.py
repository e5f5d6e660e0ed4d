#!/usr/bin/env python3
"""Stage 2 of DeepDreamVideo: dream on the frames that ./1_movie2frames.sh extracted.

    python 2_dreaming_time.py -i frames -o processed -it jpg --gpu 0

All the work is in the `dreamer` package (dreamer.dream_cli, dreamer.sequence).
"""
import sys

from dreamer.dream_cli import main

if __name__ == "__main__":
    sys.exit(main(prog="2_dreaming_time.py"))
