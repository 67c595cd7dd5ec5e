"""Joint head: each hand's 21 3D joints (wrist-relative) and 2D joints, the pseudo ground truth the
refinement is verified against (IHMR's joint head, not in IHMR's released code; method-acr-ihmr.md §3.2).

Design: one MLP shared by both sides over [pooled image feature (B, D), that side's ACR parameters
(109: cam, 16 x 6D rotations, betas; zeros when not given), side one-hot]. It regresses joint
POSITIONS rather than MANO parameters, so the check is not a copy of the MANO branch it verifies. A
third output, from both sides' hidden vectors, is the left-minus-right wrist vector (metres), which the
verification needs to judge the hands' relative placement.

Output layers start at Xavier gain 0.01 around a template (the model's rest-pose joints when given),
so the untrained head predicts an average hand; hidden layers keep PyTorch's default init for training.
Side index 0 = left, 1 = right (ACR order). The template is a non-persistent buffer: a saved state dict
never contains numbers derived from the (licence-gated) MANO files.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from hand_recon_ros.conventions import SIDES

if TYPE_CHECKING:
    from hand_recon_ros.hand_model.model import HandModel

__all__ = ['JointHead', 'joint_template', 'SIDE_PARAM_DIM']

SIDE_PARAM_DIM = 109


@torch.no_grad()
def joint_template(hand_model: HandModel) -> torch.Tensor:
    """(2, 21, 3) wrist-relative joints of the model's mean pose / mean shape, [left, right]."""
    rows = []
    for side in SIDES:
        joints = hand_model(side, torch.zeros(1, 3), torch.zeros(1, hand_model.pose_dim), torch.zeros(1, 10))['joints']
        rows.append((joints[0] - joints[0, :1]).float().cpu())
    return torch.stack(rows)


def _small_init(layer: nn.Linear) -> None:
    nn.init.xavier_uniform_(layer.weight, gain=0.01)
    nn.init.zeros_(layer.bias)


class JointHead(nn.Module):
    template: torch.Tensor  # buffer (register_buffer below); declared for the type checker

    def __init__(
        self,
        feature_dim: int = 1024,
        hidden: tuple[int, ...] = (512, 256),
        side_param_dim: int = SIDE_PARAM_DIM,
        template: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(feature_dim, int) or feature_dim <= 0:
            raise ValueError(f'feature_dim must be a positive int, got {feature_dim!r}')
        self.feature_dim, self.side_param_dim = feature_dim, side_param_dim
        layers: list[nn.Module] = []
        width = feature_dim + side_param_dim + 2
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(inplace=True)]
            width = h
        self.trunk = nn.Sequential(*layers)
        # attribute names are state-dict keys stored in trained refiner.safetensors files: kept as trained
        self.joints3d_out = nn.Linear(width, 21 * 3)
        self.joints2d_out = nn.Linear(width, 21 * 2)
        self.relative_out = nn.Linear(2 * width, 3)
        for layer in (self.joints3d_out, self.joints2d_out, self.relative_out):
            _small_init(layer)
        if template is None:
            template = torch.zeros(2, 21, 3)
        template = torch.as_tensor(template, dtype=torch.float32)
        if template.shape != (2, 21, 3):
            raise ValueError(f'template must be (2, 21, 3) [left, right], got {tuple(template.shape)}')
        self.register_buffer('template', template.clone(), persistent=False)

    def forward(self, image_feature: torch.Tensor, side_params: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """image_feature (B, D) [ACR ``outputs['image_feature']``]; side_params (B, 2, 109) or None.

        -> joints_3d (B, 2, 21, 3) wrist-relative metres, joints_2d (B, 2, 21, 2) network-input coordinates
        in [-1, 1], relative_translation (B, 3) left wrist - right wrist (metres, camera frame).
        """
        if (
            not isinstance(image_feature, torch.Tensor)
            or image_feature.dim() != 2
            or image_feature.shape[1] != self.feature_dim
        ):
            shape = tuple(image_feature.shape) if isinstance(image_feature, torch.Tensor) else type(image_feature)
            raise ValueError(f'image_feature must be (B, {self.feature_dim}), got {shape}')
        b = image_feature.shape[0]
        if side_params is None:
            side_params = image_feature.new_zeros(b, 2, self.side_param_dim)
        elif side_params.shape != (b, 2, self.side_param_dim):
            raise ValueError(f'side_params must be (B, 2, {self.side_param_dim}), got {tuple(side_params.shape)}')
        onehot = torch.eye(2, dtype=image_feature.dtype, device=image_feature.device).expand(b, 2, 2)
        x = torch.cat(
            [image_feature[:, None].expand(b, 2, self.feature_dim), side_params.to(image_feature), onehot], dim=-1
        )
        hidden = self.trunk(x)  # (B, 2, H)
        joints_3d = self.joints3d_out(hidden).view(b, 2, 21, 3) + self.template
        joints_3d = joints_3d - joints_3d[:, :, :1]  # exactly wrist-relative
        joints_2d = self.joints2d_out(hidden).view(b, 2, 21, 2)
        relative = self.relative_out(hidden.reshape(b, -1))
        return {'joints_3d': joints_3d, 'joints_2d': joints_2d, 'relative_translation': relative}
