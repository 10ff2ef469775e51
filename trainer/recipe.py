"""``python -m trainer.recipe``: kept at the path the manifests and docs use; the code is ``trainer.recipes``."""

from trainer.recipes.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
