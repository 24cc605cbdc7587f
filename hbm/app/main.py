"""The ``hbm`` console command: a signal stops it with one line from its first instruction.

The command's modules take seconds to load (ArviZ, pandas, the parser's choices); the handlers
that turn SIGINT and SIGTERM into ``Interrupted`` are installed before they load, so a signal
then is answered like one during the command (``hbm.app.cli.main``), not with a traceback.
"""

from __future__ import annotations

import sys

from hbm.errors import Interrupted
from hbm.interrupts import ignore_further, raise_on_signals


def main() -> int:
    """Entry point of the ``hbm`` command."""
    raise_on_signals()
    try:
        from hbm.app import cli

        return cli.main()
    except Interrupted as exc:  # while loading, or before the command's own handling began
        ignore_further()
        command = next((a for a in sys.argv[1:] if not a.startswith("-")), "")
        print(f"hbm{' ' if command else ''}{command}: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
