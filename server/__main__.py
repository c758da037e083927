from .cli import main

__all__ = ["main"]

raise SystemExit(main())
