"""`--params FILE` is outside input (dreamer/cli/params_file.py): bounded in size and in
nesting before it is parsed, every refusal one line, and an unknown key answered with the
setting it most likely meant."""
from __future__ import annotations

import json
import time

import pytest

from dreamer.cli.dream import parse_args
from dreamer.cli.params_file import load
from dreamer.errors import DreamerError

MAX_BYTES = 4 * 2**20  # (params_file.MAX_BYTES)


def refused(path) -> str:
    start = time.perf_counter()
    with pytest.raises(DreamerError) as e:
        load(str(path))
    message = str(e.value)
    assert time.perf_counter() - start < 5
    assert "\n" not in message and len(message) < 400, message
    return message


def test_dev_zero_ends_at_once_in_one_line():
    assert "is larger than 4 MB" in refused("/dev/zero")


def test_the_command_line_says_it_in_one_line(capsys):
    with pytest.raises(SystemExit) as e:
        parse_args(["--params", "/dev/zero", "-i", "in", "-o", "out"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(lines) == 1 and "larger than 4 MB" in lines[0]


def test_a_file_larger_than_the_bound_is_refused_unparsed(tmp_path):
    path = tmp_path / "big.toml"
    path.write_text("# " + "x" * MAX_BYTES + "\nzoom = 1.02\n")
    assert "is larger than 4 MB" in refused(path)


@pytest.mark.parametrize("name, text", [
    ("deep.json", '{"zoom": ' + "[" * 100_000 + "]" * 100_000 + "}"),
    ("open.json", "[" * 100_000),
    ("deep.toml", "zoom = " + "[" * 100_000 + "1" + "]" * 100_000 + "\n"),
    ("tables.toml", "zoom = " + "{a = " * 50_000 + "1" + "}" * 50_000 + "\n"),
])
def test_deeply_nested_json_or_toml_is_one_line_never_a_recursion_error(tmp_path, name,
                                                                         text):
    path = tmp_path / name
    path.write_text(text)
    assert "nest more than 32 deep" in refused(path)


def test_a_schedule_table_of_too_many_keys_is_refused_fast(tmp_path):
    path = tmp_path / "many.toml"
    path.write_text("[zoom]\n" + "".join(f"{k} = 1\n" for k in range(150_000)))
    assert "zoom has 150,000 keyframes; a schedule may have at most 100,000" in refused(path)


@pytest.mark.parametrize("key, meant", [
    ("itr", "'iterations' (the long name of -itr)"),    # not the 'jitter' it looks like
    ("-itr", "'iterations' (the long name of -itr)"),
    ("oct", "'octaves' (the long name of -oct)"),
    ("octs", "'octavescale' (the long name of -octs)"),
    ("j", "'jitter' (the long name of -j)"),
    ("jiter", "'jitter'"),
    ("flowblend", "'flow-blend'"),
])
def test_an_unknown_key_suggests_the_setting_short_flags_included(tmp_path, key, meant):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({key: 3}))
    assert f"unknown setting '{key}'; did you mean {meant}?" in refused(path)


def test_long_keys_and_values_are_cut_in_messages(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"zoom": "1:(" + "1+" * 20_000 + "1)"}))
    load(str(path))  # read as text: the schedule's syntax is checked with the run's range
    path.write_text(json.dumps({"k" * 25_000: 1}))
    assert "..." in refused(path)
    path.write_text(json.dumps({"preview": "x" * 25_000}))
    assert "..." in refused(path)
    path.write_text(json.dumps({"precision": "x" * 25_000}))
    assert "choose one of fp32" in refused(path)
    path.write_text(json.dumps({"zoom": {"1" * 5000: 1}}))
    assert "is not a frame number" in refused(path)


def test_a_key_of_a_hundred_thousand_dotted_parts_is_refused_at_once(tmp_path):
    """QA's a.a.a... = 1 of 200 KB filled 24 GB in Python's TOML reader before the old
    check could see it; dotted parts are counted first."""
    import time

    from dreamer.cli import params_file
    from dreamer.errors import DreamerError

    for name, text in (("deep4.toml", "a" + ".a" * 100_000 + " = 1\n"),
                       ("deep5.toml", "[" + "a." * 200_000 + "b]\nx = 1\n")):
        path = tmp_path / name
        path.write_text(text)
        started = time.monotonic()
        with pytest.raises(DreamerError, match="more than 32 dotted parts"):
            params_file.load(path)
        assert time.monotonic() - started < 5
