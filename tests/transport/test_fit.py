"""The fit's internals: the NumPy C-MGN (forward, gradients, initialisation) against the torch one and autograd."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from otmap_cli.nets.monotone import CMGN
from otmap_cli.nets.monotone_numpy import NumpyCMGN, cmgn_forward_backward
from otmap_cli.transport.fit import FitSettings, refine_gradient, warm_gradient
from otmap_cli.transport.fit_torch import edge_excess, warm_loss
from otmap_cli.transport.sliced import SlicedWasserstein


@pytest.mark.parametrize("layers", [1, 3])
def test_numpy_cmgn_gradients_match_autograd(layers):
    torch.manual_seed(0)
    net = CMGN(dim=3, width=16, layers=layers)
    x = torch.rand(200, 3)
    net.init_from_affine(torch.tensor([[0.9, 0.1, 0.0], [0.1, 0.8, 0.05], [0.0, 0.05, 1.1]]), torch.full((3,), 0.05), x)
    with torch.no_grad():
        net.gain_raw.normal_()  # gains of order one, so the nonlinear part matters in every gradient
    target, weight = torch.rand(200, 3), torch.rand(200, 1)
    loss = ((net(x) - target).pow(2) * weight).sum()
    expected = dict(zip([n for n, _ in net.named_parameters()], torch.autograd.grad(loss, list(net.parameters()))))
    seen = {}

    def loss_grad(out):
        seen["out"] = out
        return 2 * weight.numpy() * (out - target.numpy())

    params = {name: p.detach().numpy() for name, p in net.named_parameters()}
    grads = cmgn_forward_backward(params, x.numpy(), loss_grad)
    np.testing.assert_allclose(seen["out"], net(x).detach().numpy(), rtol=1e-5, atol=1e-5)
    assert grads.keys() == expected.keys()
    for name, grad in grads.items():
        scale = expected[name].abs().max().item()
        np.testing.assert_allclose(grad, expected[name].numpy(), atol=1e-4 * scale, err_msg=name)


def _net_past_both_edges(seed: int, n: int):
    """A small C-MGN whose outputs run past 0 and 1, its inputs, and random edge flags."""
    torch.manual_seed(seed)
    net = CMGN(dim=3, width=16)
    x = torch.rand(n, 3)
    net.init_from_affine(1.6 * torch.eye(3), torch.full((3,), -0.3), x)
    return net, x, torch.rand(n, 3) < 0.3, torch.rand(n, 3) < 0.3


def _assert_same_gradients(net, grads: dict, expected) -> None:
    for (name, _), want in zip(net.named_parameters(), expected):
        np.testing.assert_allclose(grads[name], want.numpy(), atol=1e-4 * want.abs().max().item(), err_msg=name)


def test_numpy_refinement_gradient_matches_autograd():
    """Sliced W2 of the clipped output plus the gamut-edge pull back, by hand and by autograd."""
    net, x, on_low, on_high = _net_past_both_edges(1, 300)
    settings = FitSettings(output_range=(0.0, 1.0), edge_weight=1.0)
    target = torch.rand(300, 3)
    raw = net(x)
    loss = SlicedWasserstein(seed=3)(raw.clamp(0, 1), target) + edge_excess(raw, on_low, on_high, settings)
    expected = torch.autograd.grad(loss, list(net.parameters()))
    params = {name: p.detach().numpy() for name, p in net.named_parameters()}
    grads = cmgn_forward_backward(params, x.numpy(), lambda out: refine_gradient(
        out, target.numpy(), on_low.numpy(), on_high.numpy(), SlicedWasserstein(seed=3), settings))
    _assert_same_gradients(net, grads, expected)


def test_numpy_warm_start_gradient_matches_autograd():
    """The warm start's weighted regression with the edge clip and the pull back, by hand and by autograd."""
    net, x, on_low, on_high = _net_past_both_edges(2, 250)
    settings = FitSettings(output_range=(0.0, 1.0), edge_weight=1.0)
    targets, weights = torch.rand(250, 3), torch.rand(250).softmax(0)
    expected = torch.autograd.grad(warm_loss(net(x), targets, weights, on_low, on_high, settings),
                                   list(net.parameters()))
    params = {name: p.detach().numpy() for name, p in net.named_parameters()}
    grads = cmgn_forward_backward(params, x.numpy(), lambda out: warm_gradient(
        out, targets.numpy(), weights.numpy()[:, None], on_low.numpy(), on_high.numpy(), settings))
    _assert_same_gradients(net, grads, expected)


def test_numpy_cmgn_is_the_torch_cmgn():
    """Same formula: a NumPy C-MGN converted to torch (and back) maps colours the same way, and its
    initialisation starts at the given affine map, as the torch initialisation does."""
    rng = np.random.default_rng(0)
    anchors = rng.random((500, 3), dtype=np.float32)
    matrix = np.array([[0.9, 0.1, 0.0], [0.1, 0.8, 0.05], [0.0, 0.05, 1.1]], np.float32)
    net = NumpyCMGN(width=24, layers=3)
    net.init_from_affine(matrix, np.full(3, 0.05, np.float32), anchors, rng)
    np.testing.assert_allclose(net(anchors), anchors @ matrix + 0.05, atol=3e-3)  # starts at the affine map
    net.params["gain_raw"][:] = rng.standard_normal(24)  # and then a real nonlinear part
    x = rng.random((300, 3), dtype=np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(net.to_torch()(torch.from_numpy(x)).numpy(), net(x), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(NumpyCMGN.from_torch(net.to_torch())(x), net(x))
