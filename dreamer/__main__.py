"""`python -m dreamer` is `dreamvideo`."""
import sys

from dreamer.cli.signals import starting

with starting():  # Ctrl-C while dreamer.cli.dreamvideo loads gives one line
    from dreamer.cli.dreamvideo import main

sys.exit(main())
