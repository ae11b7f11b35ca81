"""The model zoo: the seed models, their data generators, training and checkpoints."""
