"""le_ray: Localized Entropy vs BCE/focal CTR training, repeated as Ray tasks, answered with statistics."""

__version__ = "0.1.0"
