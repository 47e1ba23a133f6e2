"""GuideBench: a benchmark of guidance methods for pre-trained diffusion models."""

__version__ = "0.1.0"
