"""Parameters that change over the film (issue 16): keyframe schedules, layer schedules and
guide videos in whole runs; chaining, resume and the --params file."""
from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import sys
import time

import pytest
from PIL import Image

from conftest import ROOT, demo_photo, run_dream
from dreamer.cli.demo import pan_zoom_frames
from dreamer.cli.dream import main
from dreamer.config import DreamConfig
from dreamer.values.keyframes import Keyframes
from dreamer.errors import DreamerError
from dreamer.run.manifest import Manifest
from dreamer.run.progress import Progress
from dreamer.run.sequence import dream_sequence
from dreamer.video import ffmpeg

LAYER_A, LAYER_B = "inception_4c/output", "inception_3a/output"
# Step schedules change at frames 21, 31 and 41, so a chain of runs over 1-20, 21-30,
# 31-40 and 41-60 with one value each is the same film.
SCHEDULED = dict(zoom="1:(1.0), 21:(1.04), 41:(1.0) @step", blend="1:(0.5), 31:(0.8) @step",
                 layers=(f"1:({LAYER_A}), 41:({LAYER_B})",))
CHAIN = [(1, 20, dict(zoom=1.0, blend="0.5", layers=(LAYER_A,))),
         (21, 30, dict(zoom=1.04, blend="0.5", layers=(LAYER_A,))),
         (31, 40, dict(zoom=1.04, blend="0.8", layers=(LAYER_A,))),
         (41, 60, dict(zoom=1.0, blend="0.8", layers=(LAYER_B,)))]


def demo_frames(folder, n=60, size=(64, 48)):
    """The demo clip's camera move over its photo."""
    folder.mkdir(parents=True)
    for k, img in enumerate(pan_zoom_frames(demo_photo(), n, size), 1):
        img.save(folder / f"{k:08d}.png")
    return folder


def test_the_demo_photo_is_matplotlibs_grace_hopper():
    photo = demo_photo()
    assert photo.name == "grace_hopper.jpg" and photo.parent.name == "sample_data"
    with Image.open(photo) as img:
        assert img.size == (512, 600)


def make_video(path, frames=3, rate=10, size="96x72"):
    exe = ffmpeg.find_ffmpeg()
    subprocess.run([exe, "-v", "error", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}",
                    "-frames:v", str(frames), "-pix_fmt", "yuv420p", str(path)], check=True)
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    root = tmp_path_factory.mktemp("scheduled clip")
    return demo_frames(root / "frames"), make_video(root / "guide 3.mp4")


def config(tiny_model, frames, out, **kw):
    base = dict(input=str(frames), output=str(out), model_path=str(tiny_model),
                model_name="tiny.caffemodel", octave_n=2, iter_n=2, seed=6, verbose=0)
    return DreamConfig(**{**base, **kw})


def frame_bytes(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.glob("0*.png"))}


def test_a_scheduled_run_is_the_chain_of_single_valued_runs(tiny_model, tmp_path, clip):
    frames, guide = clip
    dream_sequence(config(tiny_model, frames, tmp_path / "scheduled", guide_image=str(guide),
                          **SCHEDULED))
    for first, last, values in CHAIN:
        dream_sequence(config(tiny_model, frames, tmp_path / "chain", start_frame=first,
                              end_frame=last, guide_image=str(guide), **values))
    scheduled = frame_bytes(tmp_path / "scheduled")
    assert len(scheduled) == 60 and scheduled == frame_bytes(tmp_path / "chain")
    # the schedules did something: without them the film is another one
    dream_sequence(config(tiny_model, frames, tmp_path / "plain", guide_image=str(guide),
                          **CHAIN[0][2]))
    differ = [k for k in scheduled if scheduled[k] != frame_bytes(tmp_path / "plain")[k]]
    assert differ[0] == "00000021.png"

    manifest = Manifest(tmp_path / "scheduled")
    run = manifest.data["runs"][-1]
    assert run["dream"]["schedules"] == {
        "zoom": "1:(1.0), 21:(1.04), 41:(1.0) @step", "blend": "1:(0.5), 31:(0.8) @step",
        "layers": f"1:({LAYER_A}), 41:({LAYER_B})"}
    assert run["dream"]["guide"]["kind"] == "video" and run["dream"]["guide"]["frames"] == 3
    f = manifest.frames
    assert [f[k]["values"]["zoom"] for k in (20, 21, 40, 41)] == [1.0, 1.04, 1.04, 1.0]
    assert [f[k]["blend"] for k in (30, 31)] == [0.5, 0.8]
    assert [f[k]["layer"] for k in (40, 41)] == [LAYER_A, LAYER_B]
    assert [f[k]["guide_frame"] for k in range(1, 8)] == [1, 2, 3, 1, 2, 3, 1]
    assert "zoom 1→1.04→1 (keyframes 1:(1.0), 21:(1.04), 41:(1.0) @step)" in run["description"]
    assert "layers by keyframes" in run["description"]
    assert ("guided by the video guide 3.mp4 at 10 fps, one per frame, looping every 3 "
            "frames") in run["description"]


def test_interpolated_values_are_the_single_valued_runs_where_they_coincide(tiny_model,
                                                                          tmp_path, clip):
    """Every number that takes a schedule, interpolated each its own way: frame by frame
    the film equals runs of one frame with that frame's values."""
    frames, _ = clip
    schedules = dict(zoom="1:(1.0), 6:(1.05) @cubic", step_size="1:(1.0), 6:(t/2)",
                     iter_n="1:(1), 6:(3)", jitter="1:(0), 5:(8)", octave_n="1:(1), 3:(2) @step",
                     octave_scale="1:(1.3), 6:(1.5)", blend="1:(0.3), 6:(0.9) @cubic")
    dream_sequence(config(tiny_model, frames, tmp_path / "eased", end_frame=6, **schedules))
    keys = {name: Keyframes.parse(text, name, integer=name in ("iter_n", "jitter", "octave_n"))
            for name, text in schedules.items()}
    for k in range(1, 7):  # six runs of one frame each, each with that frame's values
        values = {name: key.at(k) for name, key in keys.items()}
        values["blend"] = str(values["blend"])
        dream_sequence(config(tiny_model, frames, tmp_path / "one by one", start_frame=k,
                              end_frame=k, **values))
    assert frame_bytes(tmp_path / "eased") == frame_bytes(tmp_path / "one by one")
    recorded = Manifest(tmp_path / "eased").frames
    assert [recorded[k]["values"]["octave_n"] for k in range(1, 7)] == [1, 1, 2, 2, 2, 2]
    assert [recorded[k]["values"]["iter_n"] for k in range(1, 7)] == [1, 1, 2, 2, 3, 3]


def test_a_flow_blend_schedule_carries_along_the_flow(tiny_model, tmp_path, clip):
    frames, _ = clip
    flow = dict(flow=True, end_frame=4, layers=(LAYER_A,))
    dream_sequence(config(tiny_model, frames, tmp_path / "sched",
                          flow_blend="1:(0.9), 3:(0.5) @step", **flow))
    dream_sequence(config(tiny_model, frames, tmp_path / "chain", **{**flow, "end_frame": 2}))
    dream_sequence(config(tiny_model, frames, tmp_path / "chain", start_frame=3,
                          flow_blend=0.5, **flow))
    assert frame_bytes(tmp_path / "sched") == frame_bytes(tmp_path / "chain")
    assert Manifest(tmp_path / "sched").frames[3]["values"] == {"flow_blend": 0.5}
    with pytest.raises(DreamerError, match="--flow-blend only applies with --flow"):
        dream_sequence(config(tiny_model, frames, tmp_path / "x", flow_blend="1:(0.5)"))


def test_a_guide_video_of_3_frames_guides_7_frames_looping(tiny_model, tmp_path, clip):
    frames, guide = clip
    dream_sequence(config(tiny_model, frames, tmp_path / "video", end_frame=7,
                          guide_image=str(guide)))
    decoded = sorted((tmp_path / "video" / ".dreamer" / "guide").glob("*/*.png"))
    assert len(decoded) == 3
    # the same film, each frame dreamed alone towards the guide frame it loops to
    for k in range(1, 8):
        dream_sequence(config(tiny_model, frames, tmp_path / "stills", start_frame=k,
                              end_frame=k, guide_image=str(decoded[(k - 1) % 3])))
    assert frame_bytes(tmp_path / "video") == frame_bytes(tmp_path / "stills")
    # and a folder of those frames guides exactly as the video did
    folder = tmp_path / "guide folder"
    folder.mkdir()
    for p in decoded:
        (folder / p.name).write_bytes(p.read_bytes())
    dream_sequence(config(tiny_model, frames, tmp_path / "folder", end_frame=7,
                          guide_image=str(folder)))
    assert frame_bytes(tmp_path / "folder") == frame_bytes(tmp_path / "video")


def test_guide_fps_samples_the_video_at_that_rate(tiny_model, tmp_path, clip):
    frames, _ = clip
    video = make_video(tmp_path / "ten.mp4", frames=10, rate=10)
    dream_sequence(config(tiny_model, frames, tmp_path / "half", end_frame=2,
                          guide_image=str(video), guide_fps=5))
    guide = Manifest(tmp_path / "half").data["runs"][-1]["dream"]["guide"]
    assert (guide["frames"], guide["fps"]) == (2, "5")  # only what frames 1..2 use
    dream_sequence(config(tiny_model, frames, tmp_path / "half", end_frame=7,
                          guide_image=str(video), guide_fps=5))
    guide = Manifest(tmp_path / "half").data["runs"][-1]["dream"]["guide"]
    assert (guide["frames"], guide["fps"]) == (5, "5")  # 1 s at 5 fps: then it loops
    with pytest.raises(DreamerError, match="--guide-fps must be above 0 and at most 1000"):
        dream_sequence(config(tiny_model, frames, tmp_path / "x", guide_image=str(video),
                              guide_fps=1e9))
    with pytest.raises(DreamerError, match="--guide-fps applies to a guide video"):
        dream_sequence(config(tiny_model, frames, tmp_path / "x", guide_image=str(frames),
                              guide_fps=5))


def test_a_guide_video_plays_at_the_films_rate_from_stage_1(tiny_model, tmp_path):
    from dreamer.video.extract import extract_frames

    film = make_video(tmp_path / "film.mp4", frames=10, rate=5, size="64x48")  # 2 s
    extract_frames(film, tmp_path / "film frames")
    guide = make_video(tmp_path / "guide.mp4", frames=10, rate=10)  # 1 s at 10 fps
    dream_sequence(config(tiny_model, tmp_path / "film frames", tmp_path / "out",
                          octave_n=1, iter_n=1, guide_image=str(guide)))
    record = Manifest(tmp_path / "out").data["runs"][-1]["dream"]["guide"]
    assert (record["fps"], record["frames"]) == ("5", 5)  # 1 s of guide is 1 s of film


def test_guide_mistakes_are_refused_before_the_first_frame(tiny_model, tmp_path, clip):
    frames, guide = clip
    with pytest.raises(DreamerError, match="--guide-fps only applies with a guide video"):
        dream_sequence(config(tiny_model, frames, tmp_path / "x", guide_fps=5))
    folder = tmp_path / "guides"
    folder.mkdir()
    Image.new("RGB", (64, 64), (10, 200, 30)).save(folder / "a.png")
    (folder / "b.png").write_bytes(b"not a png")
    with pytest.raises(DreamerError, match="cannot read guide image .*b.png.*move it out"):
        dream_sequence(config(tiny_model, frames, tmp_path / "y", guide_image=str(folder)))
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_a_guide_video_cut_short_is_refused_before_the_first_frame(tiny_model, tmp_path,
                                                                  clip, capsys):
    """A download that stopped halfway: refused in one line naming it and the fix (it was
    a guide of the frames that survived, looping, exit 0)."""
    frames, _ = clip
    whole = make_video(tmp_path / "guide.mkv", frames=30)
    cut = tmp_path / "cut guide.mkv"
    cut.write_bytes(whole.read_bytes()[:whole.stat().st_size // 2])
    code, lines = stage2(capsys, "-i", frames, "-o", tmp_path / "out", "-t", tiny_model,
                         "-m", "tiny.caffemodel", "-oct", "1", "-itr", "1", "-ef", "3",
                         "-gi", cut)
    refusals = [line for line in lines if "cut short" in line]
    assert code != 0 and len(refusals) == 1 and refusals[0] == lines[-1], lines
    assert str(cut) in refusals[0] and "guide_fixed.mp4" in refusals[0]
    assert not list((tmp_path / "out").glob("0*.png"))


def test_the_description_counts_and_summarises_every_schedule(tiny_model, tmp_path, clip):
    frames, _ = clip
    result = dream_sequence(config(tiny_model, frames, tmp_path / "o", end_frame=3, iter_n=1,
                                   octave_n="1:(1), 3:(2)", blend="1:(0.6), 3:(0.2)"))
    text = result.description
    assert "octaves 1→2 (keyframes 1:(1), 3:(2)) at scale 1.4" in text
    assert "1 iteration, step size 1.5" in text
    assert "blend 0.6→0.2 (keyframes 1:(0.6), 3:(0.2)) (weight of each new frame)" in text


def test_a_changed_schedule_is_other_parameters_and_the_same_one_resumes(tiny_model, tmp_path,
                                                                        clip):
    frames, _ = clip
    first = config(tiny_model, frames, tmp_path / "o", end_frame=4, zoom="1:(1), 4:(1.1)")
    dream_sequence(first)
    with pytest.raises(DreamerError, match="other parameters.*zoom"):
        dream_sequence(dataclasses.replace(first, zoom="1:(1), 4:(1.2)"))
    # the same schedule spelled otherwise is the same run: nothing to do
    again = dream_sequence(dataclasses.replace(first, zoom=" 1 :( 1 ),4:(1.1) @linear",
                                               seed=None), progress=Progress(1, 0))
    assert again.seed == 6


def stage2(capsys, *argv):
    """Stage 2's command line in this process: (exit status, stderr lines)."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:  # a usage error, as argparse exits
        code = e.code
    return code, capsys.readouterr().err.strip().splitlines()


def test_bad_schedules_on_the_command_line_are_one_line(tiny_model, tmp_path, clip, capsys):
    frames, _ = clip
    base = ["-i", frames, "-o", tmp_path / "out", "-t", tiny_model, "-m", "tiny.caffemodel"]
    for flags, part in [(["-z", "1:(1), 30:(1.04"], "never closed"),
                        (["-itr", "1:(2), 50:(-3)"], "iterations must be 0 or more (got -1 "
                                                     "at frame 26 of -itr"),
                        (["-itr", "2.5"], "'2.5' is not a whole number"),
                        (["-l", "1:(inception_4c/output), 5:(nope)"], "nope")]:
        code, lines = stage2(capsys, *base, *flags)
        assert code != 0 and len(lines) == 1, lines
        assert part in lines[0] and "Traceback" not in lines[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("kind", ["toml", "json"])
def test_a_params_file_holds_a_whole_run(tiny_model, tmp_path, clip, kind, capsys):
    frames, guide = clip
    settings = {"input": str(frames), "model_path": str(tiny_model),
                "model_name": "tiny.caffemodel", "octaves": 2, "iterations": 2, "seed": 6,
                "end-frame": 5, "zoom": {"1": 1.0, "5": "1 + 0.01*t", "interpolation": "cubic"},
                "blend": "1:(0.5), 4:(0.9)", "layers": [f"1:({LAYER_A}), 3:({LAYER_B})"],
                "guide_image": str(guide), "verbose": 0}
    path = tmp_path / f"run.{kind}"
    if kind == "json":
        path.write_text(json.dumps(settings))
    else:
        lines = [f"{key} = {json.dumps(value)}" for key, value in settings.items()
                 if not isinstance(value, dict)]
        lines += ["[zoom]", '1 = 1.0', '5 = "1 + 0.01*t"', 'interpolation = "cubic"']
        path.write_text("\n".join(lines) + "\n")
    assert stage2(capsys, "--params", path, "-o", tmp_path / "from file") == (0, [])
    flags = ["-i", frames, "-o", tmp_path / "from flags", "-t", tiny_model, "-m",
             "tiny.caffemodel", "-oct", "2", "-itr", "2", "--seed", "6", "-ef", "5",
             "-z", "1:(1.0), 5:(1 + 0.01*t) @cubic", "-b", "1:(0.5), 4:(0.9)",
             "-l", f"1:({LAYER_A}), 3:({LAYER_B})", "-gi", guide, "-v", "0"]
    assert stage2(capsys, *flags) == (0, [])
    assert frame_bytes(tmp_path / "from file") == frame_bytes(tmp_path / "from flags")
    # a flag given on the command line wins over the file
    code, _ = stage2(capsys, "--params", path, "-o", tmp_path / "seed 7", "--seed", "7",
                     "-ef", "1")
    assert code == 0 and Manifest(tmp_path / "seed 7").frames[1]["seed"] == 7


@pytest.mark.parametrize("text,part", [
    ('octave = 3\n', "unknown setting 'octave'; did you mean 'octaves'?"),
    ('octaves = 2.5\n', "octaves = 2.5: '2.5' is not a whole number"),
    ('flow = "yes"\n', "flow is on or off; write flow = true or false"),
    ('[zoom]\nfirst = 1.0\n', "'first' is not a frame number"),
    ('zoom = [1, 2]\n', "zoom takes one value"),
    ('precision = "fp64"\n', "precision = 'fp64'; choose one of fp32, tf32, bf16"),
    ('zoom = \n', "is not valid TOML"),
    ('seed = 1.5\n', "seed = 1.5 is not a whole number"),
    ('guide-fps = "x"\n', "guide-fps = 'x' is not a number"),
    ('seed = true\n', "seed = true: seed takes a value, not on or off"),
    ('[zoom]\n', "zoom is an empty table; give it frame = value pairs"),
])
def test_a_bad_params_file_is_one_line_naming_the_setting(tmp_path, text, part, capsys):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    code, lines = stage2(capsys, "--params", path, "-i", tmp_path, "-o", tmp_path / "out")
    assert code == 2 and len(lines) == 1, lines
    assert part in lines[0] and str(path) in lines[0]
    code, lines = stage2(capsys, "--params", tmp_path / "missing.toml", "-i", tmp_path, "-o",
                         tmp_path / "o")
    assert code == 2 and "not found; check --params" in lines[0]


def test_the_params_file_runs_from_the_shell_as_users_run_it(tiny_model, tmp_path, clip):
    """One run in a child process, as the README shows it."""
    frames, _ = clip
    path = tmp_path / "run.toml"
    path.write_text(f'input = {json.dumps(str(frames))}\nmodel-path = '
                    f'{json.dumps(str(tiny_model))}\nmodel_name = "tiny.caffemodel"\n'
                    'octaves = 1\niterations = 1\nend_frame = 2\nzoom = "1:(1), 2:(1.1)"\n')
    r = run_dream("--params", path, "-o", tmp_path / "shell", "-v", "0")
    assert r.returncode == 0, r.stderr
    assert Manifest(tmp_path / "shell").frames[2]["values"] == {"zoom": 1.1}


@pytest.mark.slow
def test_a_scheduled_guided_run_resumes_byte_exactly_after_kill_9(tiny_model, tmp_path, clip):
    frames, guide = clip
    cmd = [sys.executable, "2_dreaming_time.py", "-i", str(frames), "-t", str(tiny_model),
           "-m", "tiny.caffemodel", "-oct", "2", "-itr", "8", "-v", "0", "--seed", "9",
           "-z", SCHEDULED["zoom"], "-b", SCHEDULED["blend"], "-l", SCHEDULED["layers"][0],
           "-s", "1:(1.5), 60:(2.5) @cubic", "-gi", str(guide)]
    whole = subprocess.run(cmd + ["-o", str(tmp_path / "whole")], cwd=ROOT,
                           capture_output=True, text=True)
    assert whole.returncode == 0, whole.stderr
    out = tmp_path / "killed"
    for stop_at in (15, 35):  # killed twice: inside the second and the fourth segment
        log = tmp_path / f"stderr {stop_at}.txt"
        with open(log, "w") as err:
            proc = subprocess.Popen(cmd + ["-o", str(out)], cwd=ROOT, stderr=err)
            deadline = time.time() + 300  # a busy CI machine: slow, never stuck
            while (len(list(out.glob("0*.png"))) < stop_at and time.time() < deadline
                   and proc.poll() is None):
                time.sleep(0.01)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        assert stop_at <= len(list(out.glob("0*.png"))) < 60, log.read_text()
    again = subprocess.run(cmd + ["-o", str(out)], cwd=ROOT, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert frame_bytes(out) == frame_bytes(tmp_path / "whole")


def test_other_parameters_name_the_flags_and_the_values_the_frames_were_made_with(
        tiny_model, tmp_path, clip):
    """What to add to resume them: the flag and its old value (a default that changed
    between versions, such as --flow-smooth, shows here too)."""
    frames, _ = clip
    first = config(tiny_model, frames, tmp_path / "o", end_frame=2, iter_n=1, jitter=4)
    dream_sequence(first)
    with pytest.raises(DreamerError, match=r"\(--iterations was 1 \(now 2\), --jitter was 4 "
                                           r"\(now 5\)\)"):
        dream_sequence(dataclasses.replace(first, iter_n=2, jitter=5))
