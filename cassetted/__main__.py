"""`python -m cassetted` behaves like the `cassetted` console script."""

from cassetted.cli import main

raise SystemExit(main())
