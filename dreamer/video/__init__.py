"""Video in and out: ffmpeg, stage 1 (extract), stage 3 (assemble), GIFs and the
numbered frames on disk.
"""
