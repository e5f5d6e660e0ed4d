"""The studio's guards and its API, fast, with Starlette's TestClient and the tiny net:
the token, paths outside its folders, uploads, the queue, and the saved TOML repeating a
preview byte for byte in stage 2."""
from __future__ import annotations

import io
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="the studio's extra is not installed "
                    "(pip install 'dreamer[studio]', make venv-studio)")
pytest.importorskip("httpx", reason="Starlette's TestClient needs httpx (make venv-studio)")

from PIL import Image  # noqa: E402
with warnings.catch_warnings():  # (Starlette 1.x would have httpx2; httpx 0.28 works)
    warnings.filterwarnings("ignore", message="Using `httpx`")
    from starlette.testclient import TestClient  # noqa: E402

from conftest import ROOT, write_frames  # noqa: E402
from dreamer.config import DreamConfig  # noqa: E402
from dreamer.studio import form as forms  # noqa: E402
from dreamer.studio.app import MAX_UPLOAD, create_app  # noqa: E402
from dreamer.studio.film import Film, Refused, safe_path  # noqa: E402

TOKEN = "test-token-123"
WIDTH = 64


@pytest.fixture(scope="module")
def studio(tmp_path_factory, tiny_model):
    root = tmp_path_factory.mktemp("studio")
    frames = root / "film"
    write_frames(frames, 6, size=(96, 72))
    (root / "secret.txt").write_text("not for the page")
    film = Film.open(frames)
    choices = forms.model_choices(str(tiny_model))
    initial = forms.form_of(DreamConfig(seed=7, layers=("inception_4c/output",)), choices)
    app = create_app(film, TOKEN, choices, initial, WIDTH, first_look=False)
    with TestClient(app) as client:
        yield client, film, initial, root


def get(client, path, **kw):
    return client.get(path, headers={"X-Studio-Token": TOKEN}, **kw)


def post(client, path, **kw):
    return client.post(path, headers={"X-Studio-Token": TOKEN}, **kw)


def wait(client, job_id, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = {j["id"]: j for j in get(client, "/api/state").json()["jobs"]}
        if jobs[job_id]["state"] not in ("queued", "running"):
            return jobs[job_id]
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish")


@pytest.mark.parametrize("path", ["/", "/api/state", "/api/init", "/static/studio.js",
                                  "/files/frames/00000001.png", "/api/thumb/1",
                                  "/media/result.mp4"])
def test_every_request_needs_the_token(studio, path):
    client = studio[0]
    assert client.get(path).status_code == 403
    assert client.get(path, params={"token": "wrong"}).status_code == 403
    assert client.get(path, headers={"X-Studio-Token": TOKEN[:-1]}).status_code == 403
    assert client.post("/api/preview", json={}).status_code == 403
    assert client.post("/api/upload", content=b"x").status_code == 403


def test_the_token_opens_the_page(studio):
    client = studio[0]
    page = client.get("/", params={"token": TOKEN})
    assert page.status_code == 200 and TOKEN in page.text
    assert get(client, "/files/frames/00000001.png").status_code == 200
    assert get(client, "/static/studio.js").status_code == 200


@pytest.mark.parametrize("path", [
    "/files/frames/%2e%2e/secret.txt",
    "/files/frames/..%2fsecret.txt",
    "/files/studio/%2e%2e/%2e%2e/secret.txt",
    "/files/frames//etc/passwd",
    "/files/frames/%2fetc%2fpasswd",
])
def test_dots_and_absolute_paths_are_refused(studio, path):
    response = get(studio[0], path)
    assert response.status_code == 403, response.text
    assert "not for the page" not in response.text


def test_symbolic_links_are_refused(studio):
    client, film, _, root = studio
    (film.frames_dir / "link.txt").symlink_to(root / "secret.txt")
    (film.frames_dir / "linked").symlink_to(root)
    try:
        for path in ("/files/frames/link.txt", "/files/frames/linked/secret.txt"):
            response = get(client, path)
            assert response.status_code == 403 and "not for the page" not in response.text
    finally:
        (film.frames_dir / "link.txt").unlink()
        (film.frames_dir / "linked").unlink()


def test_safe_path(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "b.png").write_bytes(b"x")
    assert safe_path(tmp_path, "a/b.png") == tmp_path / "a" / "b.png"
    for bad in ("../x", "a/../../x", "/etc/passwd", "C:/x", "", "a/\0"):
        with pytest.raises(Refused):
            safe_path(tmp_path, bad)


def test_a_100_mb_upload_is_refused(studio):
    client = studio[0]
    big = b"\0" * (100 * 2**20)
    response = post(client, "/api/upload", content=big)
    assert response.status_code == 413 and "MB" in response.json()["error"]

    def chunks():  # no Content-Length: refused once the body passes the limit
        for _ in range(100):
            yield b"\0" * 2**20

    response = post(client, "/api/upload", content=chunks())
    assert response.status_code == 413
    assert MAX_UPLOAD < 100 * 2**20


def test_an_upload_must_be_an_image(studio):
    client, film = studio[:2]
    response = post(client, "/api/upload", content=b"#!/bin/sh\necho not an image\n")
    assert response.status_code == 415 and "not an image" in response.json()["error"]
    png = io.BytesIO()
    Image.new("RGB", (20, 10), "red").save(png, format="PNG")
    response = post(client, "/api/upload", content=png.getvalue())
    assert response.status_code == 200, response.text
    value = response.json()["value"]
    assert (film.studio_dir / value.removeprefix("studio/")).is_file()


def test_a_bad_setting_is_one_line_naming_its_widget(studio):
    client, _, initial, _ = studio
    response = post(client, "/api/check", json={"form": {**initial, "octave_n": "many"}})
    assert response.status_code == 400
    assert response.json()["errors"]["octave_n"].startswith("-oct many: not a number")
    response = post(client, "/api/check", json={"form": {**initial, "guide_image": "/etc/passwd"}})
    assert response.status_code == 400 and "guide_image" in response.json()["errors"]
    response = post(client, "/api/check", json={"form": {**initial, "zoom": "1:(1), 6:(1.05)"}})
    assert response.status_code == 200
    (curve,) = response.json()["curves"]
    assert curve["name"] == "zoom" and curve["values"][0] == 1 and curve["values"][-1] == 1.05


def test_two_clicks_queue_not_crash(studio):
    client, _, initial, _ = studio
    body = {"form": initial, "frame": 2, "width": WIDTH}
    first = post(client, "/api/preview", json=body)
    second = post(client, "/api/preview", json=body)
    assert first.status_code == second.status_code == 200
    a, b = first.json(), second.json()
    assert a["id"] != b["id"]
    states = {j["id"]: j for j in get(client, "/api/state").json()["jobs"]}
    assert states[b["id"]]["state"] in ("queued", "running", "done")
    if states[a["id"]]["state"] == "running":  # one at a time: the second waits its turn
        assert states[b["id"]]["state"] == "queued" and states[b["id"]]["position"] == 1
    done_a, done_b = wait(client, a["id"]), wait(client, b["id"])
    assert done_a["state"] == done_b["state"] == "done", (done_a["message"], done_b["message"])
    assert done_a["octaves"] and done_a["result"]["seed"] == 7
    # the same settings, the same dream
    image_a = get(client, "/files/" + done_a["result"]["image"]).content
    assert image_a == get(client, "/files/" + done_b["result"]["image"]).content
    assert get(client, f"/api/job/{a['id']}/octave/0").headers["content-type"] == "image/jpeg"


def test_cancel_a_waiting_job(studio):
    client, _, initial, _ = studio
    body = {"form": initial, "frame": 1, "width": WIDTH}
    jobs = [post(client, "/api/preview", json=body).json() for _ in range(3)]
    post(client, f"/api/cancel/{jobs[2]['id']}")
    assert wait(client, jobs[2]["id"])["state"] == "cancelled"
    assert wait(client, jobs[1]["id"])["state"] == "done"


def test_the_saved_toml_repeats_the_preview_in_stage_2(studio, tmp_path):
    client, film, initial, _ = studio
    form = {**initial, "octave_n": "3", "iter_n": "4", "zoom": "1:(1), 6:(1.04)", "seed": "4242"}
    job = post(client, "/api/preview", json={"form": form, "frame": 3, "width": WIDTH}).json()
    done = wait(client, job["id"])
    assert done["state"] == "done", done["message"]
    preview = get(client, "/files/" + done["result"]["image"]).content
    saved = post(client, "/api/save", json={"form": form, "frame": 3, "width": WIDTH}).json()
    toml = Path(saved["path"])
    assert toml == film.toml_path and "seed = 4242" in toml.read_text()
    assert "--params" in saved["commands"]["preview"]
    out = tmp_path / "check"
    run = subprocess.run([sys.executable, str(ROOT / "2_dreaming_time.py"), "--params", str(toml),
                          "-i", str(film.frames_dir), "-o", str(out), "-p", str(WIDTH),
                          "-sf", "3", "-ef", "3", "-v", "0"],
                         capture_output=True, text=True, timeout=300, env=os.environ)
    assert run.returncode == 0, run.stderr
    assert (out / "00000003.png").read_bytes() == preview


def test_a_stretch_measures_its_flicker(studio):
    client, _, initial, _ = studio
    job = post(client, "/api/stretch", json={"form": initial, "frame": 2, "n": 3,
                                             "width": WIDTH}).json()
    done = wait(client, job["id"])
    assert done["state"] == "done", done["message"]
    result = done["result"]
    assert len(result["frames"]) == 3 and result["first"] == 2
    assert result["strength"] > 0 and result["added"] is not None


def test_the_schema_gives_every_widget_its_flags_and_help(studio):
    data = get(studio[0], "/api/init").json()
    widgets = {w["name"]: w for g in data["schema"]["groups"] for w in g["widgets"]}
    assert widgets["octave_n"]["flags"] == ["-oct", "--octaves"]
    assert "octaves" in widgets["octave_n"]["help"] and "%(default)" not in widgets["octave_n"]["help"]
    assert widgets["zoom"]["schedule"] and widgets["flow"]["kind"] == "bool"
    assert "input" not in widgets and "workers" not in widgets
    assert data["film"]["count"] == 6


def test_the_command_refuses_bad_input_in_one_line(capsys, tmp_path):
    from dreamer.studio.cli import main

    assert main([str(tmp_path / "missing.mp4")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "does not exist" in err
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty")]) == 2
    assert "no frames" in capsys.readouterr().err
    assert main([str(tmp_path / "empty"), "--port", "70000"]) == 2


def test_a_render_stops_and_resumes(studio):
    """Stage 2 in the background: stopped from the page, its frames are kept and its
    manifest says so; Render again resumes from there (no video: stage 3 is left out)."""
    client, film, initial, _ = studio
    slow = {**initial, "octave_n": "2", "iter_n": "40", "preview": str(WIDTH)}
    body = {"form": slow, "first": 1, "last": 4}
    job = post(client, "/api/render", json=body).json()
    assert post(client, "/api/render", json=body).status_code == 400  # one render at a time
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        render = get(client, "/api/state").json()["render"]
        if render["progress"].get("done", 0) >= 1:
            break
        time.sleep(0.05)
    post(client, f"/api/cancel/{job['id']}")
    stopped = wait(client, job["id"])
    assert stopped["state"] == "stopped", stopped["message"]
    assert "interrupted" in stopped["message"] and "run the same" in stopped["message"]
    kept = sorted(p.name for p in film.dreamed_dir.glob("0*.png"))
    assert kept and len(kept) < 4
    again = post(client, "/api/render", json=body).json()
    done = wait(client, again["id"], timeout=300)
    assert done["state"] == "done", done["message"]
    assert "stage 3 was left out" in done["message"]
    assert sorted(p.name for p in film.dreamed_dir.glob("0*.png")) == [
        f"{k:08d}.png" for k in range(1, 5)]
    # other settings over the same frames: refused, unless the page says replace them
    other = {"form": {**initial, "preview": str(WIDTH)}, "first": 1, "last": 2}
    refused = wait(client, post(client, "/api/render", json=other).json()["id"])
    assert refused["state"] == "failed" and "--overwrite" in refused["message"]
    replaced = wait(client, post(client, "/api/render",
                                 json={**other, "overwrite": True}).json()["id"])
    assert replaced["state"] == "done", replaced["message"]
