"""Run conformance cases on targets, compare with the reference, judge against manifests.

Cases run in parallel on local processes (``workers``), or on a Ray cluster
(``ray_address``). Each task runs one case: the reference once, then every requested target,
and returns metrics per output plus a small raster sample for the report. Results are
deterministic: inputs come from seeds and every simulator here is deterministic.
"""

from __future__ import annotations

import multiprocessing
import os
import time
import traceback
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nrf_nir.conformance.cases import Case, spiking_outputs
from nrf_nir.conformance.manifest import (
    BOUNDS,
    MANIFEST_DIR,
    SPIKES,
    VALUES,
    Expectation,
    check_options,
    load_manifest,
)
from nrf_nir.metrics import compare, compare_values

RASTER_NEURONS = 64
RASTER_STEPS = 400


@dataclass
class Result:
    """The verdict for one case on one target.

    status: pass | fail | xfail (failed as expected) | xpass (passed where a failure was
    expected: fails the run) | unsupported (the target's check() refused, as expected) | error.
    ok: whether the status agrees with the manifest.
    """

    case: str
    target: str
    status: str
    ok: bool
    level: str
    message: str = ""
    reason: str = ""
    upstream: str = ""
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    seconds: float = 0.0
    raster: dict[str, Any] | None = None
    #: The target options the case ran with (the manifest's ``options``).
    options: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("raster")
        return data


def _np(t: Any) -> np.ndarray:
    return t.detach().cpu().numpy() if hasattr(t, "detach") else np.asarray(t)


def _output_metrics(ref: Any, got: Any, spiking: bool, decode: str | None) -> dict[str, Any]:
    """One output's metrics (``nrf_nir.metrics.compare`` for spikes, ``compare_values`` for
    values) with ``kind`` (spikes | values)."""
    kind = SPIKES if spiking else VALUES
    a, b = _np(ref).astype(np.float64), _np(got).astype(np.float64)
    if a.shape != b.shape:
        return {"kind": kind, "shape_mismatch": f"{list(a.shape)} vs {list(b.shape)}",
                "exact": 0.0}
    metrics = compare(a, b, decode=decode) if spiking else compare_values(a, b, decode=decode)
    return {"kind": kind, **metrics}


def output_kind(metrics: dict[str, Any]) -> str:
    """The kind (spikes | values) of an output's metrics (inferred for results without it)."""
    return str(metrics.get("kind") or (VALUES if "rmse" in metrics else SPIKES))


def _raster(ref: Any, got: Any) -> dict[str, Any]:
    a = _np(ref)[:RASTER_STEPS, 0].reshape(min(RASTER_STEPS, _np(ref).shape[0]), -1)
    b = _np(got)[:RASTER_STEPS, 0].reshape(a.shape[0], -1) if _np(got).shape == _np(
        ref).shape else np.zeros_like(a)
    return {"reference": a[:, :RASTER_NEURONS].astype(np.float32),
            "target": b[:, :RASTER_NEURONS].astype(np.float32)}


def run_case(case: Case, targets: Sequence[str], threads: int = 1,
             options: Mapping[str, Mapping[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Run ``case`` on the reference and each target; raw measurements, no verdict.
    options: target -> the options it runs the case with (None: each target's manifest's,
    ``Expectation.options``)."""
    import torch

    import nrf_nir
    from nrf_nir.errors import NIRError

    torch.set_num_threads(max(1, threads))
    spiking = spiking_outputs(case.graph)
    start = time.perf_counter()
    reference = nrf_nir.run(case.graph, case.inputs)
    ref_seconds = time.perf_counter() - start
    if options is None:
        options = {t: load_manifest(t).expect(case.name).options for t in targets}
    raws = []
    for target in targets:
        raw: dict[str, Any] = {"case": case.name, "target": target, "violations": [],
                               "metrics": {}, "error": None, "seconds": 0.0,
                               "reference_seconds": ref_seconds}
        try:
            violations = nrf_nir.check(case.graph, target)
        except NIRError as exc:
            raw["error"] = f"check failed: {exc}"
            raws.append(raw)
            continue
        raw["violations"] = [str(v) for v in violations]
        if violations:
            raws.append(raw)
            continue
        start = time.perf_counter()
        try:
            got = nrf_nir.run(case.graph, case.inputs, target=target,
                              **options.get(target, {}))
        except Exception as exc:  # noqa: BLE001 - a target crash is a result, not a stop
            raw["error"] = f"{type(exc).__name__}: {exc}"
            raw["traceback"] = traceback.format_exc(limit=4)
            raws.append(raw)
            continue
        raw["seconds"] = time.perf_counter() - start
        for name, ref in reference.items():
            if name not in got:
                raw["metrics"][name] = {"kind": SPIKES if spiking.get(name, True) else VALUES,
                                        "missing": True, "exact": 0.0}
                continue
            raw["metrics"][name] = _output_metrics(ref, got[name], spiking.get(name, True),
                                                   case.decode)
        first = next(iter(reference))
        if first in got:
            raw["raster"] = _raster(reference[first], got[first])
            raw["raster"]["spiking"] = spiking.get(first, True)
            raw["raster"]["output"] = first
        raws.append(raw)
    return raws


def _worker_init() -> None:
    """Spawned workers inherit the 'spawn' start method; Lava needs 'fork' for the processes
    it starts itself (it refuses any other), and a worker starts no pools of its own."""
    multiprocessing.set_start_method("fork", force=True)


def _limit_text(key: str, limit: float, exp: Expectation) -> str:
    """``>= 0.95`` / ``<= 0.5`` and where the bound comes from."""
    origin = "manifest" if key in exp.thresholds else f"{exp.level} default"
    if exp.level == "xfail":
        origin = "exact default"
    return f"{'>=' if BOUNDS[key].sense == 'min' else '<='} {limit:g}, {origin}"


def _measured(value: Any) -> str:
    return "undefined" if value is None else f"{value:.6g}" if isinstance(value, float) else (
        str(value))


def _meets(metrics: dict[str, dict[str, Any]], exp: Expectation, case: str
           ) -> tuple[bool, str, str]:
    """Apply every bound of ``exp`` (``Expectation.bounds``) to every output it applies to.

    Returns (met, what falls short, a manifest error or ""). A bound of an output kind the
    case has none of does not apply; a manifest bound whose metric an output of its kind lacks
    (``decision_agreement`` where the case decodes nothing) is a manifest error.
    """
    bounds = exp.bounds()
    short: list[str] = []
    for output, m in metrics.items():
        if m.get("missing"):
            short.append(f"{output}: missing from the target's outputs")
            continue
        if "shape_mismatch" in m:
            short.append(f"{output}: shape {m['shape_mismatch']} (reference vs target)")
            continue
        kind = output_kind(m)
        misses = []
        for key, limit in bounds.items():
            bound = BOUNDS[key]
            if bound.kind not in (kind, "any"):
                continue
            if bound.metric not in m:
                if key in exp.thresholds:
                    return False, "", (
                        f"manifest {exp.source or '(built in)'}, entry {exp.pattern!r}: bound "
                        f"{key!r} needs {bound.metric!r}, which output {output!r} of case "
                        f"{case!r} does not produce ({kind}"
                        + (", no decisions decoded" if key == "decision_agreement" else "")
                        + ")")
                continue  # a default that needs decisions, where none are decoded
            if bound.fails(m[bound.metric], limit):
                misses.append(f"{bound.metric} {_measured(m[bound.metric])} "
                              f"(needs {_limit_text(key, limit, exp)})")
        if misses:
            where = (f" (first divergence at step {m['first_divergence']})"
                     if m.get("first_divergence") is not None else "")
            short.append(f"{output}: " + ", ".join(misses) + where)
    return not short, "; ".join(short), ""


def judge(raw: dict[str, Any], exp: Expectation) -> Result:
    """Compare raw measurements with the expectation: every bound that applies to each
    output (``_meets``); the message names each bound missed with the measured value."""
    base = {"case": raw["case"], "target": raw["target"], "level": exp.level,
            "reason": exp.reason, "upstream": exp.upstream, "metrics": raw["metrics"],
            "violations": raw["violations"], "seconds": raw["seconds"],
            "raster": raw.get("raster"), "options": dict(exp.options)}
    if raw["error"]:  # a crash is no expected failure: xfail expects missed bounds
        msg = raw["error"] if exp.level != "xfail" else (
            f"the target crashed, but the manifest expects a run that misses its bounds "
            f"(xfail): {raw['error']}")
        return Result(status="error", ok=False, message=msg, **base)
    if raw["violations"]:
        ok = exp.level == "unsupported" or exp.allow_unsupported
        msg = "; ".join(raw["violations"])
        if not ok:
            msg = f"the target refuses this case but the manifest expects {exp.level}: {msg}"
        return Result(status="unsupported", ok=ok, message=msg, **base)
    if exp.level == "unsupported":
        return Result(status="fail", ok=False, message="the manifest expects 'unsupported' but "
                      "the target now runs this case: update the manifest", **base)
    met, short, manifest_error = _meets(raw["metrics"], exp, raw["case"])
    if manifest_error:
        return Result(status="error", ok=False, message=manifest_error, **base)
    if exp.level == "xfail":
        if met:
            return Result(status="xpass", ok=False, message="passes exactly although the "
                          "manifest expects a failure: update the manifest", **base)
        return Result(status="xfail", ok=True, message=short, **base)
    return Result(status="pass" if met else "fail", ok=met, message=short, **base)


def run_suite(cases: Sequence[Case], targets: Sequence[str], *, workers: int | None = None,
              ray_address: str | None = None, progress: bool = True,
              manifest_dir: Path | None = None) -> list[Result]:
    """Every case on every target, judged against the targets' manifests.

    workers: local processes (default: the CPU count; 1 runs in this process).
    ray_address: run the cases as Ray tasks on this cluster instead ("local" starts one).
    """
    from tqdm.auto import tqdm

    manifests = {t: load_manifest(t, manifest_dir or MANIFEST_DIR) for t in targets}
    for t, manifest in manifests.items():
        _check_manifest_options(t, manifest)
    options = {c.name: {t: manifests[t].expect(c.name).options for t in targets}
               for c in cases}
    raws: list[dict[str, Any]] = []
    bar = tqdm(total=len(cases), unit="case", desc="conformance", disable=not progress)
    if ray_address is not None:
        raws = _run_ray(cases, targets, ray_address, bar, options)
    else:
        n = workers or os.cpu_count() or 1
        if n <= 1 or len(cases) <= 1:
            for case in cases:
                raws += run_case(case, targets, threads=os.cpu_count() or 1,
                                 options=options[case.name])
                bar.update()
        else:
            raws = _run_pool(cases, targets, n, bar, options)
    bar.close()
    order = {c.name: i for i, c in enumerate(cases)}
    raws.sort(key=lambda r: (order[r["case"]], list(targets).index(r["target"])))
    return [judge(raw, manifests[raw["target"]].expect(raw["case"])) for raw in raws]


def _check_manifest_options(target: str, manifest: Any) -> None:
    """The manifest's ``options`` checked by the target (``manifest.check_options``); a
    target that is not available is not asked (its cases fail on their own)."""
    from nrf_nir.errors import NIRError
    from nrf_nir.targets import get

    if not any(e.options for e in [manifest.default, manifest.files,
                                   *manifest.entries.values()]):
        return
    try:
        backend = get(target)
    except NIRError:
        return
    check_options(manifest, getattr(backend, "check_options", None))


def _run_pool(cases: Sequence[Case], targets: Sequence[str], workers: int,
              bar: Any, options: Mapping[str, Mapping[str, Mapping[str, Any]]]
              ) -> list[dict[str, Any]]:
    """The cases in ``workers`` spawned processes. A worker that dies (killed for memory, a
    crash in a native library) breaks the pool: the cases it left unfinished then run once
    more, each target alone in a process of its own, so that the one that dies again becomes
    an error result naming the case, the target and the exit status, and the rest still run."""
    ctx = multiprocessing.get_context("spawn")
    raws: list[dict[str, Any]] = []
    done: set[str] = set()
    try:
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx,
                                 initializer=_worker_init) as pool:
            futures = {pool.submit(run_case, case, tuple(targets), 1, options[case.name]): case
                       for case in cases}
            for future in as_completed(futures):
                raws += future.result()
                done.add(futures[future].name)
                bar.update()
    except BrokenProcessPool:
        for case in cases:
            if case.name in done:
                continue
            for target in targets:
                raws += _run_alone(ctx, case, target, options[case.name])
            bar.update()
    return raws


def _run_alone(ctx: Any, case: Case, target: str,
               options: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``run_case(case, [target])`` in a process of its own; its death is an error result."""
    receive, send = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_run_and_send, args=(send, case, target, options),
                          daemon=True)
    process.start()
    send.close()
    try:
        result: list[dict[str, Any]] = receive.recv()
    except EOFError:
        process.join()
        code = process.exitcode
        how = (f"killed by signal {-code}" + (" (SIGKILL: out of memory?)" if code == -9 else "")
               if code is not None and code < 0 else f"exit status {code}")
        return [{"case": case.name, "target": target, "violations": [], "metrics": {},
                 "seconds": 0.0, "error": f"the process running this case died ({how})"}]
    finally:
        receive.close()
    process.join()
    return result


def _run_and_send(send: Any, case: Case, target: str,
                  options: Mapping[str, Mapping[str, Any]]) -> None:
    _worker_init()
    send.send(run_case(case, (target,), 1, options))
    send.close()


#: Seconds the reachability check of a Ray address may take in all (resolution + connect).
RAY_CONNECT_TIMEOUT_S = 5.0


def check_ray_address(address: str, timeout: float = RAY_CONNECT_TIMEOUT_S) -> None:
    """Refuse (``NIRError``, field ``ray_address``) an address that is not ``local``,
    ``auto``, ``HOST:PORT`` or ``ray://HOST:PORT``, or whose port does not accept a TCP
    connection within ``timeout`` seconds (``ray.init`` would retry for minutes)."""
    import socket
    import threading
    import time

    from nrf_nir.errors import NIRError, shown

    if address in ("local", "auto"):
        return
    rest = address[len("ray://"):] if address.startswith("ray://") else address
    host, sep, port_text = rest.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    port = int(port_text) if port_text.isascii() and port_text.isdigit() else 0
    if not sep or not host or not 1 <= port <= 65535:
        raise NIRError(f"expected 'local', 'auto', HOST:PORT or ray://HOST:PORT, got "
                       f"{shown(address)}", field="ray_address")
    deadline = time.monotonic() + timeout
    found: list[Any] = []

    def resolve() -> None:  # getaddrinfo has no timeout of its own: run it aside
        try:
            found.extend(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except (OSError, UnicodeError):
            pass

    worker = threading.Thread(target=resolve, daemon=True)
    worker.start()
    worker.join(timeout)
    if not found:
        raise NIRError(f"cannot resolve the host of {shown(address)}", field="ray_address")
    for family, kind, proto, _, addr in found:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            with socket.socket(family, kind, proto) as sock:
                sock.settimeout(left)
                sock.connect(addr)
                return
        except OSError:
            continue
    raise NIRError(f"nothing accepts connections at {shown(address)} (tried for at most "
                   f"{timeout:g} s): is the Ray cluster running?", field="ray_address")


def _run_ray(cases: Sequence[Case], targets: Sequence[str], address: str,
             bar: Any, options: Mapping[str, Mapping[str, Mapping[str, Any]]]
             ) -> list[dict[str, Any]]:
    check_ray_address(address)
    try:
        import ray
    except ImportError:
        from nrf_nir.errors import NIRError

        raise NIRError("--ray-address needs Ray: pip install 'ray[default]'",
                       field="ray_address") from None
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no telemetry: nothing leaves
    started = False
    if not ray.is_initialized():
        try:
            ray.init(address=None if address == "local" else address, include_dashboard=False,
                     log_to_driver=False, configure_logging=False)
        except ConnectionError as exc:
            from nrf_nir.errors import NIRError, shown

            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise NIRError(f"cannot connect to a Ray cluster at {shown(address)} "
                           f"({first[:200]})", field="ray_address") from None
        started = True
    try:
        remote = ray.remote(run_case)
        refs = [remote.remote(case, tuple(targets), 1, options[case.name]) for case in cases]
        raws: list[dict[str, Any]] = []
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            raws += ray.get(done[0])
            bar.update()
        return raws
    finally:
        if started:
            ray.shutdown()


def summary(results: Iterable[Result]) -> dict[str, Any]:
    rows = list(results)
    return {
        "total": len(rows),
        "ok": sum(r.ok for r in rows),
        "failed": [f"{r.target} {r.case}: {r.status}: {r.message}" for r in rows if not r.ok],
        "by_status": {s: sum(r.status == s for r in rows)
                      for s in ("pass", "fail", "xfail", "xpass", "unsupported", "error")},
    }
