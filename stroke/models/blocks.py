"""Building blocks shared by the custom CNNs."""

from __future__ import annotations

from timm.layers import SelectAdaptivePool2d
from torch import nn

from stroke.errors import ConfigError


class ConvBlock(nn.Sequential):
    """3x3 convolution, optional batch norm, ReLU, optional 2x2 max-pool and dropout."""

    def __init__(
        self,
        in_chans: int,
        out_chans: int,
        *,
        batch_norm: bool = False,
        pool: bool = True,
        drop_rate: float = 0.0,
    ) -> None:
        layers: dict[str, nn.Module] = {
            "conv": nn.Conv2d(in_chans, out_chans, 3, padding=1, bias=not batch_norm)
        }
        if batch_norm:
            layers["bn"] = nn.BatchNorm2d(out_chans)
        layers["act"] = nn.ReLU(inplace=True)
        if pool:
            layers["pool"] = nn.MaxPool2d(2)
        if drop_rate > 0:
            layers["drop"] = nn.Dropout2d(drop_rate)
        super().__init__()
        for name, layer in layers.items():
            self.add_module(name, layer)


#: the head poolings of the custom CNNs (timm's SelectAdaptivePool2d types)
POOL_TYPES = ("avg", "max", "avgmax", "catavgmax")


class ClassifierHead(nn.Module):
    """Pooled features -> hidden dense layer -> dropout -> class logits.

    `pool` is timm's pool type: "avg" (the published heads), "max" (a small bright lesion
    anywhere in the image drives the feature), "avgmax" or "catavgmax" (both, summed or
    side by side); `pool_size` > 1 keeps a coarse grid of positions before the dense layer.
    """

    def __init__(
        self,
        in_features: int,
        hidden: int,
        num_classes: int,
        *,
        pool_size: int = 1,
        pool: str = "avg",
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if pool not in POOL_TYPES:
            raise ConfigError(
                f"model.backbone.head_pool={pool!r} is not a head pooling: "
                f"expected one of {', '.join(POOL_TYPES)}"
            )
        self.pool = SelectAdaptivePool2d(pool_size, pool_type=pool, flatten=True)
        in_features *= self.pool.feat_mult() * pool_size * pool_size
        self.hidden = nn.Linear(in_features, hidden)
        self.act = nn.ReLU(inplace=True)
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(hidden, num_classes) if num_classes > 0 else nn.Identity()

    def forward(self, x, pre_logits: bool = False):
        x = self.drop(self.act(self.hidden(self.pool(x))))
        return x if pre_logits else self.fc(x)
