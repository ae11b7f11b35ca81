"""Numbers that cannot run are refused before anything runs; a run that produces NaN says so.

Parameters must be finite in the run's dtype, the coefficients the simulator derives from them
(``dt*r``, the Euler decay ``dt/tau``, the subtract reset) finite and Euler-stable, Delay buffers
within the element limit; a dialect never rescales unchecked values; NaN or inf produced at run
time is a ``NonFiniteWarning`` naming the first node (``strict_numerics``: an error).
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import nir
import numpy as np
import pytest

import nrf_nir
from nrf_nir.api import NonFiniteError, NonFiniteWarning
from nrf_nir.conformance.cases import node_cases
from nrf_nir.errors import NIRError
from nrf_nir.semantics import read_semantics, write_semantics
from nrf_nir.validate import UnstableWarning
from nrf_nir.validate import validate as validate_graph
from tests.helpers import chain, lif
from tests.hostile import Case, check_case, register, run_cli

X = np.ones((5, 1, 2), np.float32)


def _refused(graph: nir.NIRGraph, *fragments: str, **options: object) -> NIRError:
    """``lower`` refuses ``graph``; the one-line message contains every fragment."""
    with pytest.raises(NIRError) as err:
        nrf_nir.lower(graph, "reference", **options)  # type: ignore[arg-type]
    text = str(err.value)
    assert "\n" not in text
    for fragment in fragments:
        assert fragment in text, (fragment, text)
    return err.value


def _runs(graph: nir.NIRGraph, **options: object) -> dict[str, np.ndarray]:
    """``run`` succeeds with finite outputs and no NonFiniteWarning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", NonFiniteWarning)
        out = nrf_nir.run(graph, X, **options)  # type: ignore[arg-type]
    arrays = {k: v.cpu().numpy() for k, v in out.items()}
    assert all(np.isfinite(a).all() for a in arrays.values())
    return arrays


def weight(w: float) -> nir.NIRGraph:
    return chain(nir.Linear(weight=np.eye(2) * w), lif(2), shape=(2,))


def delay(seconds: float, dt: float | None = 1e-3) -> nir.NIRGraph:
    return chain(nir.Delay(delay=np.full(2, seconds)), shape=(2,), dt=dt)


def overflow_chain() -> nir.NIRGraph:
    """Finite float32 weights whose products overflow: n0 gives inf, n1 then inf - inf = NaN."""
    return chain(nir.Linear(weight=np.full((2, 2), 3e38)),
                 nir.Linear(weight=np.array([[1.0, -1.0]])), shape=(2,))


def nan_membrane() -> nir.NIRGraph:
    """A LIF whose membrane becomes inf then NaN (inf * 0 at the reset) while its spikes stay
    finite: only its state shows the NaN."""
    n0 = lif(2)
    n0.r = np.full(2, 3e38)
    n0.v_leak = np.full(2, 3e38)
    return chain(nir.Linear(weight=np.eye(2)), n0, shape=(2,))


# ---------------------------------------------------------------- parameters in the run dtype

def test_a_weight_over_float32_is_refused_and_runs_in_float64():
    err = _refused(weight(1e39), "float32", "1e+39", "float64")
    assert (err.node, err.field) == ("n0", "weight")
    _runs(weight(1e39), dtype="float64")
    _runs(weight(3e38))  # finite in float32: runs


def test_every_float_parameter_is_checked_in_the_run_dtype():
    g = weight(1.0)
    g.nodes["n1"].v_threshold = np.array([1.0, 1e39])
    err = _refused(g, "float32")
    assert (err.node, err.field) == ("n1", "v_threshold")
    _runs(g, dtype="float64")


def test_a_tau_whose_decay_overflows_float32_is_refused():
    err = _refused(chain(lif(2, tau=1e-300), shape=(2,)), "dt/tau", "overflows float32",
                   "dt = 0.001 s")
    assert (err.node, err.field) == ("n0", "tau")
    # float64 holds dt/tau = 1e297, but forward Euler then diverges: a warning, or refused
    # under strict_numerics
    with pytest.warns(UnstableWarning, match="forward Euler is unstable"):
        nrf_nir.lower(chain(lif(2, tau=1e-300), shape=(2,)), dtype="float64")
    _refused(chain(lif(2, tau=1e-300), shape=(2,)), "forward Euler is unstable", "dt/tau",
             dtype="float64", strict_numerics=True)
    # exponential integration decays by exp(-dt/tau) = 0: a valid (instant) decay
    _runs(chain(lif(2, tau=1e-300), shape=(2,), integration="exponential"))


def test_euler_decay_factor_above_two_warns_and_strict_refuses_at_the_run_dt():
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnstableWarning)
        _runs(chain(lif(2, tau=0.5e-3), shape=(2,)))  # dt/tau = 2: at the limit, runs quietly
        _runs(chain(lif(2, tau=0.4e-3), shape=(2,)), dt=1e-4)  # a smaller dt makes it stable
    with pytest.warns(UnstableWarning, match=r"dt/tau = 2.5 > 2"):
        nrf_nir.lower(chain(lif(2, tau=0.4e-3), shape=(2,)))
    err = _refused(chain(lif(2, tau=0.4e-3), shape=(2,)), "dt/tau = 2.5 > 2",
                   strict_numerics=True)
    assert err.field == "tau"
    cuba = nir.CubaLIF(tau_syn=np.full(2, 1e-5), tau_mem=np.full(2, 0.01), r=np.ones(2),
                       v_leak=np.zeros(2), v_threshold=np.ones(2), v_reset=np.zeros(2))
    assert _refused(chain(cuba, shape=(2,)), "dt/tau_syn",
                    strict_numerics=True).field == "tau_syn"


def test_derived_gain_and_subtract_reset_must_not_overflow():
    integrator = nir.IF(r=np.full(2, 1e38), v_threshold=np.ones(2), v_reset=np.zeros(2))
    g = chain(integrator, shape=(2,), dt=10.0)  # dt*r = 1e39
    assert _refused(g, "dt*r").field == "r"
    _runs(g, dtype="float64")
    wide = lif(2, v_th=3e38, v_reset=-3e38)
    _runs(chain(wide, shape=(2,)))  # value reset: never computes v_th - v_reset
    err = _refused(chain(wide, shape=(2,), reset="subtract"), "v_threshold - v_reset")
    assert err.node == "n0"


def test_every_node_case_still_lowers_in_both_dtypes():
    cases = node_cases(T=5, B=1)
    assert len(cases) > 40
    for case in cases:
        for dtype in ("float32", "float64"):
            nrf_nir.lower(case.graph, "reference", dtype=dtype)


# ---------------------------------------------------------------- delays

def test_a_delay_buffer_over_the_limit_is_refused_before_allocating():
    start = time.monotonic()
    for seconds in (1e6, 1e300):
        with pytest.raises(NIRError) as err:  # at the file's dt, by validate
            nrf_nir.validate(delay(seconds))
        assert (err.value.node, err.value.field) == ("n0", "delay")
        _refused(delay(seconds, dt=None), "delay", dt=1e-3)  # at the run's dt, by lower
    assert time.monotonic() - start < 2.0
    nrf_nir.validate(delay(1e6, dt=None))  # without a dt the length in steps is unknown


def test_the_delay_limit_is_the_per_node_element_limit():
    limit = 1000  # 2 neurons x 500 steps fit, 2 x 501 do not
    validate_graph(delay(0.5), max_elements=limit)
    with pytest.raises(NIRError, match="over the limit of 1,000"):
        validate_graph(delay(0.501), max_elements=limit)
    out = _runs(delay(3e-3))
    np.testing.assert_array_equal(out["output"][:, 0, 0], [0, 0, 0, 1, 1])


def test_a_delay_whose_steps_are_not_finite_is_refused():
    with pytest.raises(NIRError, match="not a finite number of steps"):
        nrf_nir.lower(delay(1e300, dt=None), dt=1e-300)


# ---------------------------------------------------------------- dialects

def _save_raw(graph: nir.NIRGraph, path: Path) -> Path:
    nrf_nir.save(graph, path, validate=False)
    return path


def norse_like(tau: float, v_th: float, extra: nir.NIRNode | None = None) -> nir.NIRGraph:
    """No metadata and time constants below 0.1 ms, as Norse's to_nir writes (read with
    ``dialect="norse"``: without the Input's batch axis this is no evidence of Norse)."""
    nodes: list[nir.NIRNode] = [nir.Affine(weight=np.eye(2), bias=np.zeros(2)),
                                lif(2, tau=tau, v_th=v_th)]
    if extra is not None:
        nodes.append(extra)
    return chain(*nodes, shape=(2,), dt=None)


def test_a_dialect_does_not_rescale_into_values_that_cannot_run(tmp_path):
    path = _save_raw(norse_like(1e-30, 1e30), tmp_path / "tiny.nir")
    with pytest.raises(NIRError) as err:
        nrf_nir.load(path, dialect="norse")
    text = str(err.value)
    assert "norse dialect" in text and "dt/tau" in text and "--dialect none" in text
    assert (err.value.node, err.value.field) == ("n1", "tau")
    # read as written it runs with a warning where Euler diverges, and is refused under
    # strict_numerics, naming tau as written
    with pytest.warns(UnstableWarning, match="tau min 1e-30 s"):
        nrf_nir.lower(nrf_nir.load(path, dialect="none"), dt=1e-3)
    _refused(nrf_nir.load(path, dialect="none"), "tau min 1e-30 s", dt=1e-3,
             strict_numerics=True)


def test_a_dialect_refuses_values_invalid_as_written(tmp_path):
    path = _save_raw(norse_like(-1e-5, 1.0), tmp_path / "negative.nir")
    with pytest.raises(NIRError, match=r"min -1e-05") as err:  # not the rescaled -0.01
        nrf_nir.load(path, dialect="norse")
    assert err.value.field == "tau"


def test_a_dialect_rescale_that_overflows_is_refused(tmp_path):
    huge_r = nir.IF(r=np.full(2, 1e306), v_threshold=np.ones(2), v_reset=np.zeros(2))
    path = _save_raw(norse_like(1e-5, 1.0, huge_r), tmp_path / "huge.nir")
    nrf_nir.load(path, dialect="none", validate=True)  # valid as written
    with pytest.raises(NIRError, match=r"as rescaled by the norse dialect .*contains inf") as err:
        nrf_nir.load(path, dialect="norse")
    assert (err.value.node, err.value.field) == ("n2", "r")


def test_a_sane_norse_file_is_still_rescaled(tmp_path):
    path = _save_raw(norse_like(1e-5, 1.0), tmp_path / "ok.nir")
    with pytest.warns(UserWarning, match="norse dialect"):
        graph = nrf_nir.load(path, dialect="norse")
    assert float(np.max(graph.nodes["n1"].tau)) == pytest.approx(1e-2)


# ---------------------------------------------------------------- NaN produced by a run

def test_nan_at_run_time_is_a_warning_naming_the_first_node():
    with pytest.warns(NonFiniteWarning) as caught:
        out = nrf_nir.run(overflow_chain(), X)
    assert np.isnan(out["output"].numpy()).all()
    assert len(caught) == 1
    text = str(caught[0].message)
    assert text.startswith("node 'n0', field 'output': the run produced inf")
    assert "time step 0" in text and "non-finite outputs: output" in text


def test_strict_numerics_makes_it_an_error():
    with pytest.raises(NonFiniteError) as err:
        nrf_nir.run(overflow_chain(), X, strict_numerics=True)
    assert err.value.node == "n0"
    lowered = nrf_nir.lower(overflow_chain())
    with pytest.raises(NonFiniteError):
        lowered.run(X, strict_numerics=True)


def test_a_nan_membrane_behind_finite_spikes_is_found():
    with pytest.warns(NonFiniteWarning) as caught:
        out = nrf_nir.run(nan_membrane(), X)
    assert np.isfinite(out["output"].numpy()).all()  # the spikes hide it
    text = str(caught[0].message)
    assert "node 'n1', field 'v'" in text and "NaN" in text and "outputs are finite" in text


def test_a_finite_run_warns_nothing():
    _runs(weight(1.0), record=("n1.v", "n0"))


@pytest.mark.parametrize("target", ["norse", "snntorch"])
def test_the_executors_targets_name_the_first_non_finite_node(target):
    """The torch targets run by the one graph executor locate NaN and inf as the reference
    does (the first node, the step), not only in the outputs."""
    pytest.importorskip(target)
    with pytest.warns(NonFiniteWarning) as caught:
        nrf_nir.run(overflow_chain(), X, target=target)
    text = str(caught[0].message)
    assert text.startswith("node 'n0', field 'output': the run produced inf"), text
    assert "time step 0" in text


def test_norse_finds_a_nan_membrane_behind_finite_spikes():
    pytest.importorskip("norse")
    with pytest.warns(NonFiniteWarning) as caught:
        out = nrf_nir.run(nan_membrane(), X, target="norse")
    assert np.isfinite(out["output"].numpy()).all()
    text = str(caught[0].message)
    assert "node 'n1', field 'v'" in text and "NaN" in text and "outputs are finite" in text


def test_other_targets_name_the_non_finite_output():
    pytest.importorskip("rockpool")
    with pytest.warns(NonFiniteWarning, match="rockpool run produced NaN or inf") as caught:
        nrf_nir.run(overflow_chain(), X, target="rockpool")
    assert "node 'output'" in str(caught[0].message)


# ---------------------------------------------------------------- the command line

def _write(work: Path, graph: nir.NIRGraph, name: str = "model.nir") -> str:
    """Save unvalidated; graphs with a dt are marked as nrf-nir's own (no dialect guess)."""
    if "dt" in graph.metadata:
        write_semantics(graph, read_semantics(graph))
    nrf_nir.save(graph, work / name, validate=False)
    np.savez(work / "in.npz", input=X)
    return name


def _run_argv(work: Path, graph: nir.NIRGraph, *extra: str) -> list[str]:
    return ["run", _write(work, graph), "--input", "in.npz", "--output", "out.npz", *extra]


CLI_CASES = [
    register(Case("numbers: weight 1e39 in float32",
                  lambda w: _run_argv(w, weight(1e39)), expect="field 'weight'",
                  absent=("out.npz",))),
    register(Case("numbers: tau 1e-300", lambda w: _run_argv(w, chain(lif(2, tau=1e-300),
                                                                        shape=(2,))),
                  expect="dt/tau overflows float32", absent=("out.npz",))),
    register(Case("numbers: tau 1e-30, threshold 1e30, no metadata",
                  lambda w: _run_argv(w, norse_like(1e-30, 1e30), "--dt", "1e-3",
                                      "--dialect", "norse"),
                  expect="dt/tau", absent=("out.npz",))),
    register(Case("numbers: delay 1e6 s (run)", lambda w: _run_argv(w, delay(1e6)),
                  expect="field 'delay'", absent=("out.npz",))),
    register(Case("numbers: delay 1e6 s (validate)",
                  lambda w: ["validate", _write(w, delay(1e6))], expect="field 'delay'")),
    register(Case("numbers: delay 1e300 s, dt from the command line",
                  lambda w: _run_argv(w, delay(1e300, dt=None), "--dt", "1e-3"),
                  expect="field 'delay'", absent=("out.npz",))),
    register(Case("numbers: NaN at run time under --strict-numerics",
                  lambda w: _run_argv(w, overflow_chain(), "--strict-numerics"),
                  expect="model.nir', node 'n0', field 'output': the run produced inf",
                  absent=("out.npz",))),
]


@pytest.mark.parametrize("case", CLI_CASES, ids=[c.name for c in CLI_CASES])
def test_cli_refuses_numbers_that_cannot_run(case, tmp_path):
    check_case(case, tmp_path / "w")


def test_cli_runs_in_float64_what_float32_refuses(tmp_path):
    argv = _run_argv(tmp_path, weight(1e39), "--dtype", "float64")
    outcome = run_cli(argv, tmp_path)
    assert outcome.rc == 0, outcome.stderr
    assert (tmp_path / "out.npz").exists()


def test_cli_prints_a_nan_warning_on_one_line_and_exits_0(tmp_path):
    outcome = run_cli(_run_argv(tmp_path, overflow_chain()), tmp_path)
    assert outcome.rc == 0, outcome.stderr
    lines = [line for line in outcome.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, outcome.stderr
    assert lines[0].startswith("nrf-nir: warning: node 'n0', field 'output': the run produced")
    with np.load(tmp_path / "out.npz") as out:
        assert np.isnan(out["output"]).all()
