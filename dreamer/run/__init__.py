"""Running a film: stage 2's one protocol (sequence: prepare, plan, dream with an engine,
write, report), its two engines (serial, distributed on Ray), resume and the manifest,
progress, threads and devices; the library's calls (api) and all three stages in one go
(pipeline).
"""
