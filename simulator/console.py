"""The ``progress-sim`` console script: one clear line when the ``sim`` extra is missing.

``pip install progress-sdk`` installs the script but not click, rich or fakeredis (job
code stays light); without this check the command would die with a traceback.
"""

from __future__ import annotations

import importlib.util
import sys

__all__ = ["main"]

_NEEDED = ("click", "rich", "fakeredis")


def main() -> None:
    """Run the CLI, or say which extra to install."""
    missing = [name for name in _NEEDED if importlib.util.find_spec(name) is None]
    if missing:
        sys.stderr.write(
            f"error: progress-sim needs the simulator's dependencies ({', '.join(missing)} "
            "missing): pip install 'progress-sdk[sim]'\n"
        )
        sys.exit(2)
    from .cli import main as cli_main  # noqa: PLC0415 - only once they are known to exist

    cli_main()
