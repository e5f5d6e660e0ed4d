"""Running a film: the stage-2 orchestrator (sequence), resume, the manifest,
progress, threads and devices, and all three stages in one go (pipeline).
"""
