#!/usr/bin/env bash
# Stage 3 of DeepDreamVideo: numbered frames back into an H.264 mp4 with the original's
# sound, in sync with whatever run of frames is there (e.g. 101..250).
#
#   ./3_frames2movie.sh [ffmpeg|avconv|mplayer] FRAMES_DIR ORIGINAL_VIDEO [png|jpg] \
#       [-o OUT.mp4] [--overwrite] [--crf N]
#
# Default output: <FRAMES_DIR name>_done.mp4 in the current directory; an existing file is
# only replaced with --overwrite. All the work is in dreamer/video/assemble.py.
set -euo pipefail

# This script's folder (with a trailing /, or none for the current one), in bash
# alone: dirname may not be on PATH.
me=${BASH_SOURCE[0]}
# shellcheck source=SCRIPTDIR/dreamer/cli/run_stage.sh
source "${me%"${me##*/}"}dreamer/cli/run_stage.sh"
run_stage assemble "$@"
