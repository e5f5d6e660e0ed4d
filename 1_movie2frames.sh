#!/usr/bin/env bash
# Stage 1 of DeepDreamVideo: a video into numbered frames (00000001.png ...).
#
#   ./1_movie2frames.sh [ffmpeg|avconv|mplayer] VIDEO FRAMES_DIR [png|jpg]
#
# Writes FRAMES_DIR/frames.json (exact frame rate, size, audio) for stage 3. Only ever
# replaces its own earlier frames; a folder holding anything else is refused.
# All the work is in dreamer/stages.py; this script only finds a Python to run it.
set -euo pipefail

src=${BASH_SOURCE[0]}
[[ ${src} == */* ]] || src=./${src}
here=$(cd -- "${src%/*}" && pwd)
python=${DREAMER_PYTHON:-}
if [[ -z ${python} ]]; then
    python=python3
    [[ -x ${here}/.venv/bin/python ]] && python=${here}/.venv/bin/python
fi
if ! "${python}" -c 'import numpy, PIL' 2>/dev/null; then
    echo "error: ${python} cannot run DeepDreamVideo (missing or without its packages); run 'make venv' in ${here}, or set DREAMER_PYTHON" >&2
    exit 2
fi
export PYTHONPATH="${here}${PYTHONPATH:+:${PYTHONPATH}}"
export DREAMER_PROG=${0##*/}
exec "${python}" -m dreamer.stages extract "$@"
