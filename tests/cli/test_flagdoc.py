"""docs/flags.md is what the settings schema makes, and names every flag."""
from __future__ import annotations

from dreamer.cli import flagdoc
from dreamer.config import settings


def test_the_flags_page_is_up_to_date():
    assert flagdoc.PAGE.read_text(encoding="utf-8") == flagdoc.page(), (
        "docs/flags.md is stale: run python -m dreamer.cli.flagdoc")
    assert flagdoc.main(["--check"]) == 0


def test_the_page_names_every_flag_and_library_setting():
    text = flagdoc.page()
    for name, s in settings().items():
        for flag in s.flags:
            assert f"`{flag}`" in text, flag
        if not s.flags:
            assert f"`{name}`" in text, name


def test_check_fails_when_the_page_is_stale(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(flagdoc, "PAGE", tmp_path / "flags.md")
    assert flagdoc.main(["--check"]) == 1  # missing
    (tmp_path / "flags.md").write_text(flagdoc.page() + "an edit by hand\n")
    assert flagdoc.main(["--check"]) == 1
    assert "stale" in capsys.readouterr().err
    assert flagdoc.main([]) == 0 and flagdoc.main(["--check"]) == 0
