"""How fast a preview appears: `python -m dreamer.studio.bench_preview FRAMES [MODEL_DIR]
[--width 400]` dreams frames 1, 2 and 3 of FRAMES (copied to a temporary folder) through the
studio's own API with the default settings, and prints when each one's first octave and
whole frame arrived, as the page sees them (docs/studio.md, "How fast")."""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from starlette.testclient import TestClient

from dreamer.config import DreamConfig
from dreamer.studio import form as forms
from dreamer.studio.app import create_app
from dreamer.studio.film import Film

TOKEN = "bench"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dreamer.studio.bench_preview",
                                 description=__doc__)
    ap.add_argument("frames")
    ap.add_argument("model", nargs="?", help="a model folder (default: the usual search)")
    ap.add_argument("--width", type=int, default=400)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="dreamer-bench-") as tmp:
        shutil.copytree(args.frames, Path(tmp) / "film")
        film = Film.open(Path(tmp) / "film")
        choices = forms.model_choices(args.model)
        initial = forms.form_of(DreamConfig(), choices)
        app = create_app(film, TOKEN, choices, initial, args.width, first_look=False)
        with TestClient(app) as client:
            for k in (1, 2, 3):
                print(_timed(client, initial, k, args.width), flush=True)
    return 0


def _timed(client, form: dict, k: int, width: int) -> str:
    headers = {"X-Studio-Token": TOKEN}
    started = time.monotonic()
    job = client.post("/api/preview", headers=headers,
                      json={"form": form, "frame": k, "width": width}).json()
    first = None
    while True:
        state = {j["id"]: j for j in client.get("/api/state", headers=headers).json()["jobs"]}
        mine = state[job["id"]]
        if first is None and mine.get("octaves"):
            first = time.monotonic() - started
        if mine["state"] not in ("queued", "running"):
            break
        time.sleep(0.02)
    whole = time.monotonic() - started
    size = "x".join(map(str, mine["result"]["size"])) if mine.get("result") else "?"
    return (f"frame {k} ({size}): {mine['state']}, first octave {first or 0:.2f} s, "
            f"whole {whole:.2f} s")


if __name__ == "__main__":
    raise SystemExit(main())
