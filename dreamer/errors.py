"""The one error type a user sees: its message is a single line naming problem and fix."""


class DreamerError(Exception):
    """A problem with the user's input or environment, reported without a traceback."""


class Interrupted(DreamerError):
    """Ctrl-C or SIGTERM: the frames finished so far are complete and kept."""
