# shellcheck shell=bash
# Sourced by 1_movie2frames.sh, 3_frames2movie.sh and frames2gif.sh, which all need the
# same thing: a Python that can run DeepDreamVideo, to run one command of dreamer/cli/stages.py.
set -euo pipefail

# run_stage COMMAND [ARG...]: replaces the shell by `python -m dreamer.cli.stages COMMAND ARG...`
# with the repository on PYTHONPATH (it need not be installed). The Python is
# $DREAMER_PYTHON, else the repository's .venv, else python3; one without numpy and Pillow
# is refused up front in one line rather than with a traceback from deep inside.
run_stage() {
    local src=${BASH_SOURCE[0]} here python
    # The repository: two folders above this file's. In bash alone (dirname may not be on
    # PATH), and never relative to a folder in $CDPATH.
    [[ ${src} == /* ]] || src=./${src}
    here=$(cd -- "${src%/*}/../.." && pwd)
    python=${DREAMER_PYTHON:-}
    if [[ -z ${python} ]]; then
        python=python3
        if [[ -x ${here}/.venv/bin/python ]]; then
            python=${here}/.venv/bin/python
        fi
    fi
    if ! "${python}" -c 'import numpy, PIL' 2>/dev/null; then
        echo "error: ${python} cannot run DeepDreamVideo (missing or without its packages); run 'make venv' in ${here}, or set DREAMER_PYTHON" >&2
        exit 2
    fi
    export PYTHONPATH="${here}${PYTHONPATH:+:${PYTHONPATH}}"
    # The name usage and error lines start with: the script's, not python's.
    export DREAMER_PROG=${0##*/}
    exec "${python}" -m dreamer.cli.stages "$@"
}
