"""Foreign dialects: Norse's own to_nir output normalised to nrf-nir's semantics; files whose
evidence fits several producers read as plain NIR, naming them."""

from __future__ import annotations

import warnings

import norse.torch as snn
import pytest
import torch

import nrf_nir
from nrf_nir import dialects
from nrf_nir.dialects import ConventionsWarning, normalize
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


def _conventions(graph, dialect: str = "auto") -> tuple[dialects.Normalized, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = normalize(graph, dialect)
    return result, [str(w.message) for w in caught if issubclass(w.category, ConventionsWarning)]


@pytest.mark.parametrize("v_th", ["scalar", "per-neuron"])
def test_norse_iaf_needs_the_dialect_named(v_th):
    """No time constant to recognise Norse by. With a per-neuron v_th, Norse writes what
    Sinabs writes for Linear -> IAF (IF r and v_threshold of the layer's shape, float32; the
    Input's batch axis looks like Sinabs's time axis): neither is picked, the one warning line
    names both; a scalar v_th (0-d, which Sinabs never writes) names none."""
    threshold = torch.linspace(1.0, 2.0, 20) if v_th == "per-neuron" else torch.as_tensor(2.0)
    model = _norse_model(snn.IAFCell(snn.IAFParameters(v_th=threshold)))
    x = (torch.rand(100, 4, 10, generator=torch.Generator().manual_seed(2)) < 0.3).float()
    raw = snn.to_nir(model, x[0])
    result, lines = _conventions(raw)
    assert result.dialect is None and result.graph is raw and result.changes == []
    assert len(lines) == 1 and "read as plain NIR" in lines[0]
    both = "--dialect norse or --dialect sinabs" in lines[0]
    assert both == (v_th == "per-neuron"), lines[0]
    fixed = normalize(raw, "norse").graph
    assert torch.equal(nrf_nir.run(fixed, x, device="cpu")["output"], _step(model, x))


class _AnyFile:
    """A dialect whose evidence every file carries (to test two producers' evidence)."""

    name = "anyfile"
    options: dict[str, tuple[str, ...]] = {}

    def detect(self, graph):
        return "it is a file"

    def normalize(self, graph):
        raise AssertionError("a file with two producers' evidence must not be normalised")

    def configure(self, options, dt):
        return self


ANY_FILE = _AnyFile()


def test_two_producers_evidence_reads_as_plain_nir_naming_both(monkeypatch):
    model = _norse_model(snn.LIFBoxCell())
    raw = snn.to_nir(model, torch.zeros(8, 10))
    assert normalize(raw).dialect == "norse"  # the control: Norse's evidence alone
    monkeypatch.setitem(dialects._DIALECTS, "anyfile", "tests.test_dialects:ANY_FILE")
    result, lines = _conventions(raw)
    assert result.dialect is None and result.graph is raw
    assert len(lines) == 1 and "read as plain NIR" in lines[0]
    assert "fingerprints of norse (" in lines[0] and "anyfile (it is a file)" in lines[0]
    assert "--dialect norse or --dialect anyfile" in lines[0]


def test_our_own_graphs_are_left_alone():
    graph = mlp([3, 4])
    nrf_nir.write_semantics(graph, nrf_nir.Semantics(dt=1e-3))
    assert normalize(graph).graph is graph
    assert normalize(graph).dialect is None


def test_unknown_dialect_is_an_error():
    with pytest.raises(nrf_nir.NIRError, match="unknown dialect"):
        normalize(mlp([3, 4]), "banana")
