#!/usr/bin/env bash
# Stage 1 of DeepDreamVideo: a video into numbered frames (00000001.png ...).
#
#   ./1_movie2frames.sh [ffmpeg|avconv|mplayer] VIDEO FRAMES_DIR [png|jpg]
#
# Writes FRAMES_DIR/frames.json (exact frame rate, size, audio) for stage 3. Only ever
# replaces its own earlier frames; a folder holding anything else is refused.
# All the work is in dreamer/video/extract.py; this script only finds a Python to run it.
set -euo pipefail

# This script's folder (with a trailing /, or none for the current one), in bash
# alone: dirname may not be on PATH.
me=${BASH_SOURCE[0]}
# shellcheck source=SCRIPTDIR/dreamer/cli/run_stage.sh
source "${me%"${me##*/}"}dreamer/cli/run_stage.sh"
run_stage extract "$@"
