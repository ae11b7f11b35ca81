"""Foreign dialects: Norse's own to_nir output normalised to nrf-nir's semantics."""

from __future__ import annotations

import warnings

import norse.torch as snn
import pytest
import torch

import nrf_nir
from nrf_nir.dialects import normalize
from tests.helpers import mlp


def _norse_model(cell: torch.nn.Module) -> snn.SequentialState:
    torch.manual_seed(0)
    model = snn.SequentialState(torch.nn.Linear(10, 20), cell)
    with torch.no_grad():
        model[0].weight.mul_(4.0)
    return model


def _step(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    state, outs = None, []
    with torch.no_grad():
        for t in range(x.shape[0]):
            y, state = model(x[t], state)
            outs.append(y)
    return torch.stack(outs)


@pytest.mark.parametrize("cell", [snn.LIFBoxCell, snn.LIFCell])
def test_norse_to_nir_graphs_are_recognised_and_reproduce_norse(cell):
    model = _norse_model(cell())
    x = (torch.rand(200, 8, 10, generator=torch.Generator().manual_seed(1)) < 0.3).float()
    raw = snn.to_nir(model, x[0])
    with pytest.raises(nrf_nir.NIRError):  # as written: batch axis in the input shape, no dt
        nrf_nir.run(raw, x)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = normalize(raw)
    assert result.dialect == "norse"
    assert any("dt/tau_inv" in str(w.message) for w in caught)
    want = _step(model, x)
    got = nrf_nir.run(result.graph, x, device="cpu")["output"]
    assert want.sum() > 0
    agreement = (got == want).float().mean().item()
    # tau comes back as (dt/tau_inv)/dt: equal to 1/tau_inv within float32 rounding.
    assert agreement >= 0.999, agreement


def test_norse_iaf_needs_the_dialect_named():
    model = _norse_model(snn.IAFCell(snn.IAFParameters(v_th=torch.as_tensor(2.0))))
    x = (torch.rand(100, 4, 10, generator=torch.Generator().manual_seed(2)) < 0.3).float()
    raw = snn.to_nir(model, x[0])
    assert normalize(raw).dialect is None  # no time constant to recognise Norse by
    fixed = normalize(raw, "norse").graph
    assert torch.equal(nrf_nir.run(fixed, x, device="cpu")["output"], _step(model, x))


def test_our_own_graphs_are_left_alone():
    graph = mlp([3, 4])
    nrf_nir.write_semantics(graph, nrf_nir.Semantics(dt=1e-3))
    assert normalize(graph).graph is graph
    assert normalize(graph).dialect is None


def test_unknown_dialect_is_an_error():
    with pytest.raises(nrf_nir.NIRError, match="unknown dialect"):
        normalize(mlp([3, 4]), "banana")
