"""``python -m wsol`` runs the command line (also what ``torchrun -m wsol`` starts)."""

from wsol.cli import main

raise SystemExit(main())
