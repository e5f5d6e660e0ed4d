#!/usr/bin/env bash
# Numbered frames into a looping GIF with a palette made for them, at the source's rate
# (from stage 1's frames.json, --original VIDEO, or --fps).
#
#   ./frames2gif.sh FRAMES_DIR [png|jpg] [--original VIDEO] [--fps R] [--width W] \
#       [-o OUT.gif] [--overwrite]
#
# Default output: <FRAMES_DIR name>.gif in the current directory. The work is in
# dreamer/stages.py.
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
exec "${python}" -m dreamer.stages gif "$@"
