"""`python -m clipdraw ...` is the `clipdraw` command (the plugin runs `python -m clipdraw engine`)."""
import sys

from .cli import main

sys.exit(main())
