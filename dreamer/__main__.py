"""`python -m dreamer` is `dreamvideo`."""
import sys

from dreamer.cli import main

sys.exit(main())
