"""What a frame was made from, recorded so that nothing is trusted blindly: the input
frame's fingerprint (a re-run of stage 1 on another video changes it), and the sha1 of
what was written (a replaced or damaged file no longer matches its record)."""
from __future__ import annotations

import hashlib
from pathlib import Path


def sha1_bytes(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()[:20]


def of_file(path: Path) -> dict:
    """The file's fingerprint: its content's sha1, size and modification time (which
    spare re-reading an unchanged file when it is checked)."""
    st = path.stat()
    return {"sha1": sha1_bytes(path.read_bytes()), "size": st.st_size,
            "mtime_ns": st.st_mtime_ns}


def written(path: Path, data: bytes) -> dict:
    """The fingerprint of `data`, just written to `path` (not read back)."""
    st = path.stat()
    return {"sha1": sha1_bytes(data), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def matches(recorded, path: Path) -> bool:
    """Whether `path` holds what `recorded` (of_file's) was taken of. A record from before
    fingerprints (None) cannot tell: it matches."""
    if not isinstance(recorded, dict) or "sha1" not in recorded:
        return True
    try:
        st = path.stat()
    except OSError:
        return False
    if st.st_size != recorded.get("size"):
        return False
    if st.st_mtime_ns == recorded.get("mtime_ns"):
        return True  # untouched since it was recorded
    return sha1_bytes(path.read_bytes()) == recorded["sha1"]
