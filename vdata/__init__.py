"""vdata: build, curate and verify training data for video reasoning with RL."""

__version__ = "0.1.0"
