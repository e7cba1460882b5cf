"""stroke: a Lightning + Hydra framework for brain CT/MRI stroke classification."""

from stroke.config import register_resolvers

__version__ = "0.1.0"

# importing any part of stroke makes the configs' resolvers known (`${stroke_home:}`, ...)
register_resolvers()
