"""ACRConfig.aggregation (ablation switch): 'global+part' drops the cross-hand prior, 'global' also the part
features; 'full' (default) keeps both. Checked by perturbing the weights of the branch that must not matter
and comparing with the unperturbed network (same seed, same weights otherwise)."""

import pytest
import torch

from hand_recon_ros.acr.decoding import DecodeConfig, decode
from hand_recon_ros.acr.network import ACRConfig, build_acr

SIZE = 64
# hard gate with a radius covering the whole map: in 'full' the prior is always added to both hands
DECODE = DecodeConfig(threshold=0.0, prior_gate='hard', prior_radius=1e6)


def _perturb(module, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.5 * torch.randn(p.shape, generator=g))


def _prior_heads(net):
    return torch.nn.ModuleList(heads.prior for heads in net.hand_heads)


def _run(aggregation, perturbations=(), **kw):
    """Outputs and decoded detections of a seeded network after perturbing ``(getter, seed)`` branches."""
    torch.manual_seed(0)
    net = build_acr('acr_light', input_size=SIZE, feature_dim=64, aggregation=aggregation, **kw).eval()
    for getter, seed in perturbations:
        _perturb(getter(net), seed)
    images = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        out = net(images)
    return out, decode(out, DECODE)


def _max_diff(a, b):
    return float((a - b).abs().max())


def test_default_is_full_and_bad_value_rejected():
    assert ACRConfig().aggregation == 'full'
    assert ACRConfig.from_dict({'backbone': 'resnet18'}).aggregation == 'full'  # old JSON configs still load
    with pytest.raises(ValueError, match='aggregation'):
        ACRConfig(backbone='resnet18', aggregation='part')


@pytest.mark.parametrize('mode', ['softmax', 'peak'])
def test_prior_has_no_effect_in_global_part(mode):
    base, dets_base = _run('global+part', center_attention=mode)
    pert, dets_pert = _run('global+part', [(_prior_heads, 7)], center_attention=mode)
    assert len(dets_base) == len(dets_pert) == 4  # threshold 0: one hand per side and image
    assert float(base['prior'].abs().max()) == 0.0
    assert _max_diff(pert['params'], base['params']) == 0.0
    assert _max_diff(dets_pert.params, dets_base.params) == 0.0
    # control: in 'full' the same perturbation changes the decoded parameters (the prior is added) ...
    full, dets_full = _run('full', center_attention=mode)
    full_p, dets_full_p = _run('full', [(_prior_heads, 7)], center_attention=mode)
    assert _max_diff(dets_full_p.params, dets_full.params) > 1e-3
    # ... and 'global+part' is 'full' without the prior: same fused maps, different decoded parameters
    assert _max_diff(base['params'], full['params']) == 0.0
    assert _max_diff(dets_base.params, dets_full.params) > 1e-3


def test_part_features_have_no_effect_in_global():
    # the fusion starts as "take the global half"; give its part half weight so the control can see parts
    fusion = (lambda n: n.fusion, 11)
    base, dets_base = _run('global', [fusion])
    pert, dets_pert = _run('global', [fusion, (lambda n: n.aggregator, 5)])
    assert _max_diff(pert['params'], base['params']) == 0.0
    assert _max_diff(dets_pert.params, dets_base.params) == 0.0
    assert float(base['prior'].abs().max()) == 0.0
    # the image feature (IHMR's input) still comes from the part branch
    assert _max_diff(pert['image_feature'], base['image_feature']) > 1e-4
    for aggregation in ('full', 'global+part'):  # control: these variants use the part features
        ref, _ = _run(aggregation, [fusion])
        changed, _ = _run(aggregation, [fusion, (lambda n: n.aggregator, 5)])
        assert _max_diff(changed['params'], ref['params']) > 1e-3, aggregation


@pytest.mark.parametrize('aggregation', ['global', 'global+part'])
def test_gradients_reach_every_parameter(aggregation):
    """Zeroing by multiplication keeps the unused branches in the graph (DDP needs every parameter)."""
    torch.manual_seed(0)
    net = build_acr('acr_light', input_size=SIZE, feature_dim=64, aggregation=aggregation).train()
    out = net(torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3)))
    total = sum(out[k].sum() for k in ('params', 'prior', 'image_feature', 'center_maps', 'segmentation'))
    total.backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None]
    assert not missing, missing[:5]
