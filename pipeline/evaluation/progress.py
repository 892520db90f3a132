"""Progress lines of long offline work, on stderr so reports on stdout stay clean."""

import sys


def progress(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)
