"""`python -m handlers.cli`: the `filequeue` command."""

from handlers.cli import main

raise SystemExit(main())
