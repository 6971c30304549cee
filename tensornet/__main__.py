"""``python -m tensornet`` runs the tensornet command line (see tensornet.cli)."""
from tensornet.cli import main

raise SystemExit(main())
