"""The command lines: `dreamvideo` and its sub-commands, stage 2's flags, stages 1
and 3, the benchmark, the demo, the README's pictures and `doctor`.
"""
