"""The dream itself: google/deepdream's make_step and deepdream (render), the
objectives, the image transforms (jitter, zoom, octaves, blend), tiling and the
per-frame schedules.
"""
