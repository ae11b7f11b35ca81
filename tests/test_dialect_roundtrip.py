"""scripts/dialect_roundtrip.py: one small round trip per producer, and the document it writes.

Each producer's own exporter writes a ``.nir`` file, ``nrf_nir.load`` reads it through the
producer's dialect, and the reference must reproduce the producer's forward pass on the same
input: spike agreement >= 0.999 at a spike rate that proves something.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

pytestmark = pytest.mark.slow  # imports four frameworks: 6-11 s on a shared 2-core machine

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "dialect_roundtrip.py"
STEPS, BATCH = 60, 4


@pytest.fixture(scope="module")
def script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dialect_roundtrip", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(spec.name, None)
        raise
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield module
    torch.set_num_threads(before)
    sys.modules.pop(spec.name, None)


def _case(script: ModuleType, producer: str, network: str, options: str):
    found = [c for c in script.cases() if (c.producer, c.network, c.options) ==
             (producer, network, options)]
    assert len(found) == 1, [c.label for c in script.cases() if c.producer == producer]
    return found[0]


ONE_PER_PRODUCER = [
    ("snntorch", "Linear-Leaky-Linear-Leaky", "reset_mechanism=subtract, reset_delay=True"),
    ("rockpool", "LinearTorch-LIFTorch-LinearTorch-LIFTorch", "max_spikes_per_dt=1"),
    ("norse", "Linear-LIFCell", "CubaLIF (current synapse), dt=1 ms"),
    ("sinabs", "Conv2d-IAFSqueeze-SumPool2d-Conv2d-IAFSqueeze-Flatten-Linear-IAFSqueeze",
     "MultiSpike, min_v_mem=None (defaults)"),
]


@pytest.mark.parametrize("producer,network,options", ONE_PER_PRODUCER,
                         ids=[p for p, _, _ in ONE_PER_PRODUCER])
def test_one_round_trip_per_producer(script, producer, network, options):
    reason = script.importable(producer)
    if reason is not None:
        pytest.skip(reason)
    case = _case(script, producer, network, options)
    row = script.measure(case, STEPS, BATCH)
    assert row.status == "ok", row.reason
    assert 0.02 <= row.rate <= 0.6, row.rate  # neurons spike, and not on every step
    assert row.agreement >= script.THRESHOLD, row.agreement
    assert not row.failed
    if case.dialect == "auto":  # the file carries its producer's fingerprint
        assert row.read_as == producer


def test_check_fails_on_a_row_below_the_threshold(script, capsys):
    """Rockpool's to_nir drops LIFTorch's w_rec: the file cannot reproduce the model, and
    --check says so (exit 1, the row named on stderr)."""
    reason = script.importable("rockpool")
    if reason is not None:
        pytest.skip(reason)
    only = "has_rec=True, max_spikes_per_dt=1]"
    assert script.main(["--check", "--only", only, "--steps", "40", "--batch", "2"]) == 1
    err = capsys.readouterr().err
    assert "below 0.999: rockpool" in err and "has_rec=True" in err
    assert script.main(["--check", "--only", "[max_spikes_per_dt=1]", "--steps", "40",
                        "--batch", "2"]) == 0


def test_document_section_is_rewritten_between_markers(script, tmp_path):
    doc = tmp_path / "dialects.md"
    doc.write_text("# Dialects\n\nintro\n\n## Round trip per producer\n\nplaceholder text\n\n"
                   "## Later section\n\nkept\n", encoding="utf8")
    script.rewrite_doc(doc, "first table")
    text = doc.read_text(encoding="utf8")
    assert "placeholder" not in text and "first table" in text
    assert text.index(script.BEGIN) < text.index("first table") < text.index(script.END)
    assert text.endswith("## Later section\n\nkept\n") and text.startswith("# Dialects\n\nintro")
    script.rewrite_doc(doc, "second table")
    again = doc.read_text(encoding="utf8")
    assert "first table" not in again and again.count(script.BEGIN) == 1
    assert again == text.replace("first table", "second table")


def test_table_marks_failures_and_explains_them(script):
    ok = script.Row(script.cases()[0], "ok", rate=0.2, agreement=1.0, exact=True, max_dv=0.0,
                    writer="nir.write", read_as="snntorch")
    case = _case(script, "rockpool", "LinearTorch-LIFTorch-LinearTorch-LIFTorch",
                 "has_rec=True, max_spikes_per_dt=1")
    low = script.Row(case, "ok", rate=0.1, agreement=0.91, exact=False, max_dv=1.4,
                     layers={"1_LIFTorch": 0.95, "output": 0.87}, writer="nir.write",
                     read_as="rockpool")
    skipped = script.Row(case, "skipped", "rockpool is not importable (ImportError: x)")
    assert not ok.failed and low.failed and not skipped.failed
    text = script.table([ok, low, skipped])
    assert "| 1 |" in text and "**0.9100** (1_LIFTorch: 0.9500, output: 0.8700) [1]" in text
    assert "[1] below 0.999: Rockpool 3.1's to_nir drops LIFTorch's w_rec" in text
    assert "skipped [2]" in text and "[2] rockpool is not importable" in text
    silent = script.Row(case, "ok", rate=0.0, agreement=1.0, exact=True)
    assert silent.failed  # nothing spiked: agreement 1 proves nothing
    assert "spike rate below" in script.table([silent])
    # rounded down: a row just under the threshold never reads as reaching it
    assert script._fraction(0.99899) == "0.9989"
