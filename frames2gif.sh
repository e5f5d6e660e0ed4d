#!/usr/bin/env bash
# Numbered frames into a looping GIF with a palette made for them, at the source's rate
# (from stage 1's frames.json, --original VIDEO, or --fps).
#
#   ./frames2gif.sh FRAMES_DIR [png|jpg] [--original VIDEO] [--fps R] [--width W] \
#       [-o OUT.gif] [--overwrite]
#
# Default output: <FRAMES_DIR name>.gif in the current directory. The work is in
# dreamer/video/gif.py.
set -euo pipefail

# This script's folder (with a trailing /, or none for the current one), in bash
# alone: dirname may not be on PATH.
me=${BASH_SOURCE[0]}
# shellcheck source=SCRIPTDIR/dreamer/cli/run_stage.sh
source "${me%"${me##*/}"}dreamer/cli/run_stage.sh"
run_stage gif "$@"
