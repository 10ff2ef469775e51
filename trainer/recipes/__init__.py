"""The recipes that rebuild every committed model: shared step machinery, the foundation recipe and the LLaVA
recipe; ``python -m trainer.recipe`` runs them."""
