"""`python -m dreamer` is `dreamvideo`."""
import signal
import sys

from dreamer.cli.oneline import interrupts_exit_at_once

# Ctrl-C while dreamer.cli.dreamvideo loads gives one line; then each command's own
# handling applies.
previous = interrupts_exit_at_once()
from dreamer.cli.dreamvideo import main  # noqa: E402

signal.signal(signal.SIGINT, previous)
sys.exit(main())
