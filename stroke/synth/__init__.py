"""Synthetic data: the head-CT phantom that serves as the embedded default dataset."""

from stroke.synth.phantom import PhantomConfig, generate_phantom

__all__ = ["PhantomConfig", "generate_phantom"]
