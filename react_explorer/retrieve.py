"""``python -m react_explorer.retrieve``: kept at the documented path; the CLI is ``react_explorer.cli.retrieve``."""

from react_explorer.cli.retrieve import main

if __name__ == "__main__":
    raise SystemExit(main())
