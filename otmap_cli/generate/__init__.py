"""`otmap sample`: a Brenier generator for MNIST (brenier), the models it is compared with (models),
the data (mnist) and the evaluation (classifier, metrics)."""
