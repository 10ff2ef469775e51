"""``python -m react_explorer.build_index``: kept at the documented path; the CLI is ``react_explorer.cli.build_index``."""

from react_explorer.cli.build_index import main

if __name__ == "__main__":
    raise SystemExit(main())
