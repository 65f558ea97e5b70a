"""CLI sub-commands. Each module here defines ``register(subparsers)``; ``wsol.cli`` finds them all.

``register`` adds one sub-parser and sets ``func=run`` on it, where ``run(args) -> int`` returns the
process exit code.
"""

from __future__ import annotations

import os
from pathlib import Path


def output_dir_problem(out: Path) -> str | None:
    """Create the output folder ``out``; return why it cannot be used (a message), or None if it is writable."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"cannot create output folder {out}: {exc.strerror or exc}"
    if not os.access(out, os.W_OK):
        return f"output folder {out} is not writable"
    return None
