"""``python -m gui``: the same as ``benchd-gui``."""

from .app import main

raise SystemExit(main())
