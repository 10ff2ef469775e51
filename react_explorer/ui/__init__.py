"""The REACT explorer tab of ``python app.py``: pick an index, query it per class, inspect and export the subset."""
