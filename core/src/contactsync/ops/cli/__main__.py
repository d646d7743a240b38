"""`python -m contactsync.ops.cli`."""

import sys

from contactsync.ops.cli import main

sys.exit(main())
