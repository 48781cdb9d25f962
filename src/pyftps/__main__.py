"""``python -m pyftps`` runs the command-line interface."""

from pyftps.cli import main

raise SystemExit(main())
