"""End-to-end demo of what nrf-nir does today: build, save, validate, inspect and run a model.

    python examples/demo.py --out demo-out

Writes ``model.nir``, ``outputs.npz``, ``raster.png`` and ``report.md`` to the output folder.
(Export from Norse, the other backends and the conformance report join as their issues land.)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nir
import numpy as np
import torch

import nrf_nir
from nrf_nir.inspect import render, summarize
from nrf_nir.io import write_atomic


def build_model(seed: int = 0) -> nir.NIRGraph:
    """A small recurrent classifier: 20 inputs -> recurrent CubaLIF(40) -> Linear -> LI(4)."""
    rng = np.random.default_rng(seed)
    n_in, n, n_out = 20, 40, 4
    rnn = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type=np.array([n_in])),
            "w_in": nir.Linear(weight=rng.normal(0, 3 / np.sqrt(n_in), (n, n_in))),
            "lif": nir.CubaLIF(tau_syn=np.full(n, 5e-3), tau_mem=np.full(n, 1e-2),
                               r=np.ones(n), v_leak=np.zeros(n), v_threshold=np.full(n, 0.3),
                               v_reset=np.zeros(n)),
            "w_rec": nir.Linear(weight=rng.normal(0, 0.5 / np.sqrt(n), (n, n))),
            "output": nir.Output(output_type=np.array([n])),
        },
        edges=[("input", "w_in"), ("w_in", "lif"), ("lif", "w_rec"), ("w_rec", "lif"),
               ("lif", "output")],
        type_check=False)
    graph = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type=np.array([n_in])),
            "rnn": rnn,
            "readout": nir.Linear(weight=rng.normal(0, 1 / np.sqrt(n), (n_out, n))),
            "li": nir.CubaLI(tau_syn=np.full(n_out, 5e-3), tau_mem=np.full(n_out, 1e-2),
                             r=np.ones(n_out), v_leak=np.zeros(n_out)),
            "output": nir.Output(output_type=np.array([n_out])),
        },
        edges=[("input", "rnn"), ("rnn", "readout"), ("readout", "li"), ("li", "output")],
        type_check=False)
    return nrf_nir.write_semantics(graph, nrf_nir.Semantics(
        dt=1e-3, producer="nrf-nir demo", producer_version=nrf_nir.__version__))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="demo-out", type=Path)
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    model_path = out / "model.nir"
    nrf_nir.save(build_model(), model_path)
    graph = nrf_nir.load(model_path)
    summary = summarize(nrf_nir.validate(graph))
    print(render(summary))

    rng = np.random.default_rng(1)
    x = (rng.random((args.steps, 8, 20)) < 0.05).astype(np.float32)
    res32 = nrf_nir.run(graph, x, record=("rnn.lif",))
    res64 = nrf_nir.run(graph, x, dtype=torch.float64, record=("rnn.lif",))
    spikes32, spikes64 = res32["rnn.lif"].cpu().numpy(), res64["rnn.lif"].cpu().numpy()
    agreement = float((spikes32 == spikes64).mean())
    decision = res32["output"].cpu().numpy().max(axis=0).argmax(axis=-1)

    def write_npz(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.savez(handle, input=x, output=res32["output"].cpu().numpy(), spikes=spikes32)

    write_atomic(out / "outputs.npz", write_npz)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3))
    t, n = np.nonzero(spikes32[:, 0])
    ax.scatter(t, n, s=2, c="k")
    ax.set(xlabel="step", ylabel="neuron", title="rnn.lif spikes, sample 0 (reference, float32)")
    fig.tight_layout()
    write_atomic(out / "raster.png", lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    plt.close(fig)

    device = "cuda" if torch.cuda.is_available() else "cpu"
    report = [
        "# nrf-nir demo report", "",
        f"- model: `{model_path}` ({summary['counts']['neurons']} neurons, "
        f"{summary['counts']['synapses']} synapses, dt = {summary['semantics']['dt']} s)",
        f"- inputs: T = {args.steps}, B = 8, Bernoulli spikes p = 0.05",
        f"- targets available: {', '.join(nrf_nir.targets.available())}; ran on {device}",
        f"- spikes recorded in `rnn.lif`: {int(spikes32.sum())}",
        f"- float32 vs float64 per-step spike agreement: {agreement:.6f}",
        f"- decisions (argmax of max-over-time output): {decision.tolist()}",
        "", "![raster](raster.png)", "",
    ]
    write_atomic(out / "report.md", lambda tmp: tmp.write_text("\n".join(report)))
    print(f"\nreport written to {out / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
