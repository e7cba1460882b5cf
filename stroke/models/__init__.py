"""Model zoo: `create_model(name, ...)` builds custom stroke CNNs and timm models alike."""

from stroke.models import custom  # noqa: F401  (registers the custom CNNs with timm)
from stroke.models.factory import create_model, list_backbones

__all__ = ["create_model", "list_backbones"]
