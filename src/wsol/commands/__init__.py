"""CLI sub-commands. Each module here defines ``register(subparsers)``; ``wsol.cli`` finds them all.

``register`` adds one sub-parser and sets ``func=run`` on it, where ``run(args) -> int`` returns the
process exit code.
"""
