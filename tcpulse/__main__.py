"""`python -m tcpulse`: the same as the `tcpulse` console script."""
import sys

from tcpulse.cli import main

sys.exit(main())
