"""`python -m contactsync.cli`."""

import sys

from contactsync.cli import main

sys.exit(main())
