#!/usr/bin/env bash
# Stage 3 of DeepDreamVideo: numbered frames back into an H.264 mp4 with the original's
# sound, in sync with whatever run of frames is there (e.g. 101..250).
#
#   ./3_frames2movie.sh [ffmpeg|avconv|mplayer] FRAMES_DIR ORIGINAL_VIDEO [png|jpg] \
#       [-o OUT.mp4] [--overwrite] [--crf N]
#
# Default output: <FRAMES_DIR name>_done.mp4 in the current directory; an existing file is
# only replaced with --overwrite. All the work is in dreamer/stages.py.
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
exec "${python}" -m dreamer.stages assemble "$@"
