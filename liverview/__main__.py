"""`python -m liverview` runs the liverview command."""

import sys

from liverview.cli import main

sys.exit(main())
