"""The custom CNNs of published stroke papers, registered with timm so that
`timm.create_model("cnn_small", num_classes=2, in_chans=1)` builds them like any other model.
"""

from __future__ import annotations

import torch
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from torch import nn

from stroke.models.blocks import ClassifierHead, ConvBlock


class StrokeCNN(nn.Module):
    """A plain stack of ConvBlocks with a dense head; timm's model interface."""

    def __init__(
        self,
        channels: tuple[int, ...],
        hidden: int,
        *,
        num_classes: int = 2,
        in_chans: int = 1,
        batch_norm: bool = False,
        block_drop_rate: float = 0.0,
        drop_rate: float = 0.0,
        head_pool_size: int = 1,
        head_pool: str = "avg",
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.num_features = hidden
        blocks, prev = [], in_chans
        for width in channels:
            blocks.append(ConvBlock(prev, width, batch_norm=batch_norm, drop_rate=block_drop_rate))
            prev = width
        self.features = nn.Sequential(*blocks)
        self.head_in_features = prev
        self.head = ClassifierHead(
            prev, hidden, num_classes, pool_size=head_pool_size, pool=head_pool, drop_rate=drop_rate
        )
        self.feature_info = [
            dict(num_chs=c, reduction=2 ** (i + 1), module=f"features.{i}")
            for i, c in enumerate(channels)
        ]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        self.head.fc = (
            nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        )


def _cfg(**kwargs) -> dict:
    # No published weights: `pretrained` works only with a local file (pretrained_cfg_overlay).
    return {
        "num_classes": 0,
        "input_size": (1, 150, 150),
        "first_conv": "features.0.conv",
        "classifier": "head.fc",
        "mean": (0.5,),
        "std": (0.25,),
        **kwargs,
    }


default_cfgs = generate_default_cfgs({"cnn_small.untrained": _cfg(), "cnn_bn.untrained": _cfg()})


@register_model
def cnn_small(pretrained: bool = False, **kwargs) -> StrokeCNN:
    """The Keras head-CT hemorrhage network: Conv 16-32-64-64-128, each + max-pool, dense 256.

    The head average-pools to 4x4 before flattening: at the published 150 px input that is
    exactly the published flatten (4x4x128), and other sizes still work.
    """
    args = dict(channels=(16, 32, 64, 64, 128), hidden=256, head_pool_size=4)
    return build_model_with_cfg(StrokeCNN, "cnn_small", pretrained, **dict(args, **kwargs))


@register_model
def cnn_bn(pretrained: bool = False, **kwargs) -> StrokeCNN:
    """The PyTorch stroke-type network.

    Conv-BN-ReLU-pool-dropout blocks 32-64-128-256, then dense 256.
    """
    args = dict(channels=(32, 64, 128, 256), hidden=256, batch_norm=True, block_drop_rate=0.1)
    return build_model_with_cfg(StrokeCNN, "cnn_bn", pretrained, **dict(args, **kwargs))


CUSTOM_MODELS = ("cnn_small", "cnn_bn")
