"""The command lines: `dreamvideo` and its sub-commands, stage 2's flags (made from the
settings schema), stages 1 and 3, the benchmark, the demo, the README's pictures, `doctor`,
the flags page, and the one place Ctrl-C and SIGTERM are handled (signals).
"""
