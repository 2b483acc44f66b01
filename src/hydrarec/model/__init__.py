"""The trained object: ``MultiTaskRecommender`` and the ``Ensemble`` of them."""
