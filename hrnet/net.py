"""HRNet backbone + associative-embedding head, as in mmpose `hrnet_w32_coco_512x512`.

Module names and registration order reproduce mmpose's `HRNet` + `AESimpleHead` so that
`state_dict()` has exactly the checkpoint's keys (`hrnet/state_dict_shapes.json`) and the
published checkpoint loads strictly. Export/reference only: serving code never imports torch.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

BN_EPS = 1e-5
STEM_CHANNELS = 64  # mmpose hard-codes the stem and layer1 width for every HRNet variant
BOTTLENECK_EXPANSION = 4


@dataclass(frozen=True)
class Spec:
    """Network shape. The defaults are the real HRNet-W32 + AE head (17 joints)."""

    width: int = 32        # channels of the stride-4 branch; branch b has width * 2**b
    blocks: int = 4        # residual blocks per branch (and in layer1)
    num_joints: int = 17
    stage_modules: tuple[int, int, int] = (1, 4, 3)  # HR modules in stages 2, 3, 4

    @property
    def arch(self) -> str:
        name = f"hrnet_w{self.width}_ae"
        return name if self.blocks == 4 else f"{name}_b{self.blocks}"

    def branch_channels(self, num_branches: int) -> list[int]:
        return [self.width * 2**b for b in range(num_branches)]


def _conv(cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS)


class BasicBlock(nn.Module):
    """3x3 conv-BN-ReLU, 3x3 conv-BN, identity add, ReLU (stride 1, equal channels)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = _conv(channels, channels, 3)
        self.bn1 = _bn(channels)
        self.conv2 = _conv(channels, channels, 3)
        self.bn2 = _bn(channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + x)


class Bottleneck(nn.Module):
    """mmpose ResNet Bottleneck (pytorch style, stride 1): 1x1, 3x3, 1x1 (x4 channels)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        mid = cout // BOTTLENECK_EXPANSION
        self.conv1 = _conv(cin, mid, 1)
        self.bn1 = _bn(mid)
        self.conv2 = _conv(mid, mid, 3)
        self.bn2 = _bn(mid)
        self.conv3 = _conv(mid, cout, 1)
        self.bn3 = _bn(cout)
        self.relu = nn.ReLU(inplace=True)
        # Registered last, as in mmpose, so the key order matches the checkpoint.
        self.downsample = nn.Sequential(_conv(cin, cout, 1), _bn(cout)) if cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


def _fuse_layer(channels: list[int], i: int, j: int) -> nn.Module | None:
    """Path from branch j into branch i: upsample (j > i), identity (None) or downsample."""
    if j == i:
        return None
    if j > i:
        # Nearest upsampling by an exact power of two: inputs are multiples of 64, so every
        # branch size divides evenly and the upsampled map matches branch i exactly.
        return nn.Sequential(_conv(channels[j], channels[i], 1), _bn(channels[i]),
                             nn.Upsample(scale_factor=2 ** (j - i), mode="nearest"))
    steps = []
    for k in range(i - j):
        if k == i - j - 1:  # last step changes channels and has no ReLU (added after the sum)
            steps.append(nn.Sequential(_conv(channels[j], channels[i], 3, 2), _bn(channels[i])))
        else:
            steps.append(nn.Sequential(_conv(channels[j], channels[j], 3, 2), _bn(channels[j]),
                                       nn.ReLU(inplace=True)))
    return nn.Sequential(*steps)


class HRModule(nn.Module):
    """Parallel branches of BasicBlocks followed by all-to-all fusion (sum, then ReLU)."""

    def __init__(self, channels: list[int], blocks: int, multiscale_output: bool):
        super().__init__()
        n = len(channels)
        self.branches = nn.ModuleList(
            nn.Sequential(*[BasicBlock(c) for _ in range(blocks)]) for c in channels)
        num_out = n if multiscale_output else 1
        self.fuse_layers = nn.ModuleList(
            nn.ModuleList(_fuse_layer(channels, i, j) for j in range(n)) for i in range(num_out))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        out = []
        for i, fuse in enumerate(self.fuse_layers):
            # Summed in branch order, as mmpose does, so float results agree to the last bits.
            y = xs[0] if i == 0 else fuse[0](xs[0])
            for j in range(1, len(xs)):
                y = y + (xs[j] if j == i else fuse[j](xs[j]))
            out.append(self.relu(y))
        return out


def _transition(pre: list[int], cur: list[int]) -> nn.ModuleList:
    """Adapters between stages: channel change for kept branches, 3x3 s2 for the new one."""
    layers: list[nn.Module | None] = []
    for i, c in enumerate(cur):
        if i < len(pre):
            layers.append(None if c == pre[i] else nn.Sequential(
                _conv(pre[i], c, 3), _bn(c), nn.ReLU(inplace=True)))
        else:
            steps = []
            for k in range(i + 1 - len(pre)):
                out_c = c if k == i - len(pre) else pre[-1]
                steps.append(nn.Sequential(_conv(pre[-1], out_c, 3, 2), _bn(out_c),
                                           nn.ReLU(inplace=True)))
            layers.append(nn.Sequential(*steps))
    return nn.ModuleList(layers)


class HRNet(nn.Module):
    """HRNet backbone; returns the stride-4 branch only (last module: multiscale_output=False)."""

    def __init__(self, spec: Spec):
        super().__init__()
        self.conv1 = _conv(3, STEM_CHANNELS, 3, 2)
        self.bn1 = _bn(STEM_CHANNELS)
        self.conv2 = _conv(STEM_CHANNELS, STEM_CHANNELS, 3, 2)
        self.bn2 = _bn(STEM_CHANNELS)
        self.relu = nn.ReLU(inplace=True)
        layer1_out = STEM_CHANNELS * BOTTLENECK_EXPANSION
        self.layer1 = nn.Sequential(
            *[Bottleneck(STEM_CHANNELS if b == 0 else layer1_out, layer1_out)
              for b in range(spec.blocks)])

        pre = [layer1_out]
        for stage, modules in enumerate(spec.stage_modules, start=2):
            cur = spec.branch_channels(stage)
            setattr(self, f"transition{stage - 1}", _transition(pre, cur))
            last_stage = stage == 1 + len(spec.stage_modules)
            setattr(self, f"stage{stage}", nn.Sequential(*[
                HRModule(cur, spec.blocks, multiscale_output=not (last_stage and m == modules - 1))
                for m in range(modules)]))
            pre = cur
        self.num_stages = len(spec.stage_modules)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        ys = [self.layer1(x)]
        for s in range(self.num_stages):
            transition = getattr(self, f"transition{s + 1}")
            xs = []
            for i, t in enumerate(transition):
                if t is None:
                    xs.append(ys[i])
                else:
                    # Kept branches adapt their own map; new branches grow from the lowest one.
                    xs.append(t(ys[i] if i < len(ys) else ys[-1]))
            ys = getattr(self, f"stage{s + 2}")(xs)
        return ys[0]


class AEHead(nn.Module):
    """mmpose AESimpleHead with no deconv layers: 1x1 conv to 17 heatmaps + 17 tag maps."""

    def __init__(self, in_channels: int, num_joints: int):
        super().__init__()
        self.final_layer = nn.Conv2d(in_channels, 2 * num_joints, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_layer(x)


class PoseNet(nn.Module):
    """Backbone + head: [N,3,H,W] normalised RGB -> [N, 2*joints, H/4, W/4] (heatmaps, tags)."""

    def __init__(self, spec: Spec = Spec()):
        super().__init__()
        self.spec = spec
        self.backbone = HRNet(spec)
        self.keypoint_head = AEHead(spec.width, spec.num_joints)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.keypoint_head(self.backbone(x))


def build_model(width: int = 32, blocks: int = 4, num_joints: int = 17) -> PoseNet:
    """The network in eval mode (uninitialised: load a checkpoint or call `random_init`)."""
    return PoseNet(Spec(width=width, blocks=blocks, num_joints=num_joints)).eval()
