"""The output folders a run creates: removed again when the run is refused or fails before
writing into them, so a refused run leaves nothing behind."""
from __future__ import annotations

from pathlib import Path

from dreamer.run.resume import STATE_DIR
from dreamer.video.frames import missing_folders


def created_by_run(output: str | Path) -> list[Path]:
    """The folders a run into `output` may create that do not exist yet, deepest first:
    `output`'s missing parents, and the work folders a run makes inside it."""
    created = missing_folders(Path(output))
    if created:
        state = created[0] / STATE_DIR
        created = [state / "guide", state, *created]
    return created
