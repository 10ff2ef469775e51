"""clip-retrieval's ``/knn-service`` protocol over our indexes, and its FastAPI service."""
