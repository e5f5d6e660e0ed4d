"""The output folders a run creates: removed again when the run is refused or fails before
writing into them, so a refused run leaves nothing behind."""
from __future__ import annotations

from pathlib import Path

from dreamer.run.resume import STATE_DIR


def created_by_run(output: str | Path) -> list[Path]:
    """The folders a run into `output` may create that do not exist yet, deepest first:
    `output`'s missing parents, and the work folders a run makes inside it."""
    created = missing_folders(Path(output))
    if created:
        state = created[0] / STATE_DIR
        created = [state / "guide", state, *created]
    return created


def missing_folders(folder: Path) -> list[Path]:
    """`folder` and those of its parents that do not exist yet, deepest first."""
    missing = []
    folder = folder.absolute()
    for path in (folder, *folder.parents):
        if path.exists() or path.is_symlink():
            break
        missing.append(path)
    return missing


def remove_empty(folders: list[Path]) -> None:
    """Removes the folders a failed run created, as long as they are still empty: whatever
    holds a file stays."""
    for folder in folders:
        try:
            folder.rmdir()
        except FileNotFoundError:
            continue
        except OSError:
            return
