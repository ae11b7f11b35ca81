"""Build and run Lava processes (lava-nc 0.10.0) for a :class:`~.plan.Plan`.

Imports Lava (install it with ``scripts/install_lava.py``). Every run builds new processes,
compiles them, runs ``T + depth`` steps and reads the sinks once; whatever happens (an error in
Lava, in reading back, or a KeyboardInterrupt) the ``finally`` stops the runtime (in a helper
thread with a time limit) and then ends any child process the run started that is still alive,
by its pid. ``children()`` lists this process's children (the tests count them).
"""

from __future__ import annotations

import functools
import multiprocessing as mp
import os
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from .conv import Shape3, lava_kernel
from .plan import Synapse, needed_layers


def _import_lava() -> dict[str, Any]:
    """Import Lava's pieces. Lava calls ``multiprocessing.set_start_method('fork')`` at import,
    which raises when the start method is already fixed; when it is fixed to 'fork' already,
    the call is made a no-op for the import."""
    current = mp.get_start_method(allow_none=True)
    if current not in (None, "fork"):
        raise ImportError(f"Lava needs the 'fork' multiprocessing start method; this process "
                          f"already uses {current!r}")
    original = mp.set_start_method

    def set_start_method(method: str, force: bool = False) -> None:
        if method == "fork" and mp.get_start_method(allow_none=True) == "fork":
            return
        original(method, force=force)

    mp.set_start_method = set_start_method  # type: ignore[assignment]
    try:
        from lava.magma.core.run_conditions import RunSteps
        from lava.magma.core.run_configs import Loihi2SimCfg
        from lava.proc.atrlif.process import ATRLIF
        from lava.proc.conv.process import Conv
        from lava.proc.dense.process import DelayDense, Dense
        from lava.proc.io.sink import RingBuffer as Sink
        from lava.proc.io.source import RingBuffer as Source
        from lava.proc.lif.process import LIF
        from lava.proc.monitor.process import Monitor
    finally:
        mp.set_start_method = original
    import lava.magma.compiler.var_model  # noqa: F401  (fails without install_lava's fix 1)
    from lava.magma.core.process.ports.ports import ReshapePort

    # Lava 0.10's ReshapePort calls np.reshape(..., newshape=...), a keyword numpy 2.4 removed
    # (the Lava processes are forked from this one and inherit the fix): the same reshape.
    ReshapePort.get_transform_func_fwd = (
        lambda self: functools.partial(np.reshape, shape=self.shape))
    ReshapePort.get_transform_func_bwd = (
        lambda self: functools.partial(np.reshape, shape=self.old_shape))
    # Lava 0.10's Conv models hold kernel_size, stride, padding, dilation and groups in int8;
    # under numpy 2 (NEP 50) `channels % groups`, `size + 2 * padding` then raise (a value above
    # 127) or wrap: they are held in int32 (the same values; the models read them as numbers).
    from lava.magma.core.model.py.type import LavaPyType
    from lava.proc.conv.models import AbstractPyConvModel

    for var in ("kernel_size", "stride", "padding", "dilation", "groups"):
        setattr(AbstractPyConvModel, var, LavaPyType(np.ndarray, np.int32, precision=8))

    return dict(RunSteps=RunSteps, Loihi2SimCfg=Loihi2SimCfg, Dense=Dense, DelayDense=DelayDense,
                Conv=Conv, Sink=Sink, Source=Source, LIF=LIF, ATRLIF=ATRLIF, Monitor=Monitor)


LAVA = _import_lava()

try:
    from importlib.metadata import version as _version

    LAVA_VERSION = _version("lava-nc")
except Exception:  # noqa: BLE001 - only for the description
    LAVA_VERSION = "unknown"

#: Seconds to wait for ``Runtime.stop()`` before ending the children directly.
STOP_TIMEOUT = 20.0
#: Weight elements per Lava network when samples run side by side (block-diagonal copies).
COPY_BUDGET = 1_000_000
#: A run's time limit: RUN_TIMEOUT + steps * STEP_TIMEOUT seconds (a silent stall; a dead
#: process is caught at once). The zoo's nrf on lava-float, 3 samples side by side, takes
#: 0.54 s per step on a loaded 2-core machine: 0.05 s/step stopped it.
RUN_TIMEOUT = 120.0
STEP_TIMEOUT = 2.0
#: With a progress bar, a run goes in this many calls of Lava's ``RunSteps`` at most (the
#: bar moves after each; without one, a run is one call).
PROGRESS_CHUNKS = 20


def _tracker_pid() -> int | None:
    """multiprocessing's resource tracker: one per interpreter, started by the first shared
    memory use and kept for the interpreter's life (not a run's process)."""
    try:
        from multiprocessing import resource_tracker

        return resource_tracker._resource_tracker._pid  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001
        return None


def children() -> set[int]:
    """Pids of this process's live child processes (all threads, from /proc), less
    multiprocessing's resource tracker."""
    pids: set[int] = set()
    base = f"/proc/{os.getpid()}/task"
    try:
        tids = os.listdir(base)
    except OSError:
        return {p.pid for p in mp.active_children() if p.pid is not None}
    for tid in tids:
        try:
            with open(f"{base}/{tid}/children") as fh:
                pids.update(int(p) for p in fh.read().split())
        except OSError:
            continue
    pids.discard(_tracker_pid())
    return pids


@dataclass
class LayerSpec:
    """One LIF population and its Dense inputs, in Lava's own units (float or integers).

    inputs: one Dense per synapse (``kind = "dense"``; a ``DelayDense`` where it has a delay:
    ``Synapse.delay``, an int or a matrix of the weights' shape, the alignment plus the graph's
    ``Delay`` steps), or one Lava ``Conv`` (``kind = "conv"``); a synapse's source may be a
    later layer (the connection back in a loop through several populations) or the layer
    itself (its own loop through a ``Delay``: a ``DelayDense``); readout: the
    population never fires and its voltage ``v`` is read every step (a ``Monitor``)."""

    n: int
    inputs: list[Synapse]
    depth: int
    w_rec: np.ndarray | None
    bias: np.ndarray          # constant a_in per step (delivered through a timed Dense)
    du: float | int
    dv: float | int
    vth: float | int
    readout: bool = False
    v_init: np.ndarray | None = None   # initial v per neuron (None: 0)
    #: the neuron bias on v per neuron (None: 0): Lava's ``bias_mant``, at ``bias_exp = 6``
    #: for ``fixed_pt`` (a-units; float: v units); it acts in the idle steps too (``v_init``)
    v_bias: np.ndarray | None = None
    #: subtract reset: an ``ATRLIF`` (``delta_i = du``, ``delta_v = delta_r = dv``, fixed_pt:
    #: divided by 4096; constant ``theta = theta_0 = vth``, fires at ``v - r >= vth`` (fixed_pt:
    #: ``vth << 6``), then ``r += 2 * theta``)
    subtract: bool = False


@dataclass
class NetSpec:
    tag: str                  # "floating_pt" or "fixed_pt"
    n_in: int
    layers: list[LayerSpec]


class LavaRunError(RuntimeError):
    """A Lava run that failed in one of its processes, or did not finish in time."""


def _actors(runtime: Any) -> list[Any]:
    mi = getattr(runtime, "_messaging_infrastructure", None)
    return list(getattr(mi, "actors", None) or [])


def _stop(runtime: Any, before: set[int], graceful: bool = True) -> None:
    """Stop the runtime, then end the run's children still alive.

    graceful: ask Lava's runtime to stop (bounded in time); False when the run did not finish
    (a process died, a time limit, an interrupt): Lava would wait forever on the dead process,
    so its processes are ended directly, the shared-memory manager last (so that it unlinks
    its segments).
    """
    if graceful and runtime is not None and getattr(runtime, "_is_started", False):
        errors: list[BaseException] = []

        def stop() -> None:
            try:
                runtime.stop()
            except BaseException as exc:  # noqa: BLE001 - reported below, cleanup goes on
                errors.append(exc)

        th = threading.Thread(target=stop, name="lava-stop", daemon=True)
        th.start()
        th.join(STOP_TIMEOUT)
    mi = getattr(runtime, "_messaging_infrastructure", None)
    smm = getattr(mi, "smm", None)
    manager = getattr(smm, "_process", None)
    left = [p for p in mp.active_children() if p.pid not in before and p is not manager]
    _end(left)
    if smm is not None and manager is not None and manager.is_alive():
        th = threading.Thread(target=lambda: _quiet(smm.shutdown), daemon=True)
        th.start()
        th.join(5)
    _end([p for p in mp.active_children() if p.pid not in before])
    ports = list(getattr(runtime, "_open_ports", None) or [])
    for port in ports:
        _quiet(port.join)  # releases the channel threads of this run
    if not graceful:  # the manager may not have unlinked the channels' shared memory
        seen = set()
        for port in ports:
            shm = getattr(port, "_shm", None)
            if shm is not None and getattr(shm, "name", None) not in seen:
                seen.add(shm.name)
                _quiet(shm.close)
                _quiet(shm.unlink)
    extra = children() - before  # not multiprocessing's (none expected): by pid
    for pid in extra:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
    deadline = time.monotonic() + 5
    for pid in extra:
        while True:
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                break
            if done:
                break
            if time.monotonic() > deadline:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                deadline = time.monotonic() + 5
            time.sleep(0.01)


def _end(procs: list[Any]) -> None:
    """SIGTERM, wait up to 5 s, SIGKILL (Lava's SystemProcess.join takes no timeout: the base
    class's join is used)."""
    for p in procs:
        _quiet(p.terminate)
    for p in procs:
        _quiet(lambda p=p: mp.Process.join(p, 5))
        if p.is_alive():
            _quiet(p.kill)
            _quiet(lambda p=p: mp.Process.join(p, 5))


def _quiet(fn: Any) -> None:
    try:
        fn()
    except Exception:  # noqa: BLE001 - best effort during cleanup
        pass


def _run_lava(root: Any, steps: int, tag: str, while_running: Any = None,
              on_steps: Any = None) -> None:
    """Compile and start the processes, then run them in a worker thread, watched: a Lava
    process that dies mid-run makes Lava's runtime wait forever, so the watch raises
    :class:`LavaRunError` instead (also after ``RUN_TIMEOUT + steps * STEP_TIMEOUT`` s).

    on_steps: called (in this thread) with the number of steps newly run; then the run goes
    in up to :data:`PROGRESS_CHUNKS` calls of ``RunSteps`` (Lava's time continues across
    them), else in one."""
    errors: list[BaseException] = []
    chunk = max(1, -(-steps // PROGRESS_CHUNKS))
    done = [0]  # steps run so far (written by the worker)
    reported = 0
    # compile and start the processes here (an interrupt leaves nothing running behind us);
    # only the run itself goes to the worker thread
    root.create_runtime(run_cfg=LAVA["Loihi2SimCfg"](select_tag=tag))
    runtime = root.runtime

    def work() -> None:
        try:
            if on_steps is None:
                runtime.start(LAVA["RunSteps"](num_steps=steps))
                return
            for s0 in range(0, steps, chunk):
                runtime.start(LAVA["RunSteps"](num_steps=min(chunk, steps - s0)))
                done[0] = min(steps, s0 + chunk)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            errors.append(exc)

    th = threading.Thread(target=work, name="lava-run", daemon=True)
    th.start()
    deadline = time.monotonic() + RUN_TIMEOUT + steps * STEP_TIMEOUT
    while th.is_alive():
        th.join(0.05)
        if on_steps is not None and done[0] > reported:
            on_steps(done[0] - reported)
            reported = done[0]
        if not th.is_alive():
            break
        if while_running is not None:  # tests: an interrupt during the run
            while_running()
        dead = [a for a in _actors(runtime) if a.exitcode is not None]
        if dead:
            th.join(0.5)  # Lava may still report the error itself
            if th.is_alive():
                detail = ""
                for a in dead:
                    exc = _quiet_exception(a)
                    if exc:
                        detail = f": {exc}"
                        break
                raise LavaRunError(f"a Lava process ended during the run{detail}")
        if time.monotonic() > deadline:
            raise LavaRunError(f"the Lava run did not finish within "
                               f"{RUN_TIMEOUT + steps * STEP_TIMEOUT:.0f} s")
    if errors:
        raise errors[0]
    if on_steps is not None and done[0] > reported:
        on_steps(done[0] - reported)


def _quiet_exception(actor: Any) -> str:
    try:
        got = actor.exception
    except Exception:  # noqa: BLE001
        return ""
    if not got:
        return ""
    exc, tb = got
    return f"{type(exc).__name__}: {exc}\n{tb}"


def _block(w: np.ndarray, copies: int) -> np.ndarray:
    return w if copies == 1 else np.kron(np.eye(copies, dtype=w.dtype), w)


def _grids(spec: NetSpec, layers: list[int]) -> dict[int, Shape3]:
    """The populations (-1: the input) that a Lava ``Conv`` reads or writes, with their
    ``[C, H, W]`` shape: Lava holds them as ``(W, H, copies * C)`` arrays."""
    grids: dict[int, Shape3] = {}
    for k in layers:
        for syn in spec.layers[k].inputs:
            if syn.kind != "conv":
                continue
            assert syn.geometry is not None
            for key, shape in ((syn.source, syn.geometry.in_shape), (k, syn.geometry.out_shape)):
                if grids.setdefault(key, shape) != shape:
                    raise ValueError(f"population {key} is read as {grids[key]} and {shape}")
    return grids


def _order(grid: Shape3 | None, n: int, copies: int) -> np.ndarray:
    """Lava's flat order of a population of ``copies`` samples: index ``i`` holds our value
    ``order[i]`` (sample-major, each ``[C, H, W]`` in C order); a grid population is Lava's
    ``(W, H, copies * C)`` array flattened."""
    if grid is None:
        return np.arange(copies * n)
    C, H, W = grid
    return np.arange(copies * n).reshape(copies, C, H, W).transpose(3, 2, 0, 1).reshape(-1)


def run_network(spec: NetSpec, x: np.ndarray, wanted: set[int],
                max_copies: int | None = None, _after_run: Any = None,
                _while_running: Any = None, progress: bool = False) -> dict[int, np.ndarray]:
    """Run ``x`` ``[T, B, n_in]`` and return the spikes ``[T, B, n]`` (int8) of the ``wanted``
    layers, or a read-out layer's voltage ``v`` (float64, Lava's units), aligned with the
    reference (Lava's latency removed). Samples run side by side as block-diagonal copies of the
    network (``max_copies`` per Lava network at most). ``progress``: a progress bar on stderr
    over the Lava steps of all the networks run (``T`` plus the latency, per network)."""
    T, B = int(x.shape[0]), int(x.shape[1])
    layers = sorted(needed_layers(spec.layers, set(wanted)))
    weights = sum(sum(s.weight.size for s in lay.inputs)
                  + (0 if lay.w_rec is None else lay.w_rec.size)
                  for lay in (spec.layers[k] for k in layers))
    copies = max(1, min(B, int((COPY_BUDGET / max(weights, 1)) ** 0.5)))
    if max_copies is not None:
        copies = max(1, min(copies, int(max_copies)))
    out = {k: np.zeros((T, B, spec.layers[k].n),
                       dtype=np.float64 if spec.layers[k].readout else np.int8) for k in wanted}
    bar = None
    if progress:
        from tqdm.auto import tqdm

        runs = -(-B // copies)
        bar = tqdm(total=runs * _steps(spec, T, wanted), unit="step",
                   desc=f"lava ({runs} run{'s' if runs > 1 else ''})", leave=False)
    try:
        for b0 in range(0, B, copies):
            b1 = min(B, b0 + copies)
            res = _run_once(spec, x[:, b0:b1], layers, wanted, _after_run, _while_running,
                            None if bar is None else bar.update)
            for k in wanted:
                out[k][:, b0:b1] = res[k]
    finally:
        if bar is not None:
            bar.close()
    return out


def _steps(spec: NetSpec, T: int, wanted: set[int]) -> int:
    """Lava steps of one run: ``T`` plus the latency of the deepest wanted layer."""
    return T + max(spec.layers[k].depth for k in wanted)


def _conv(syn: Synapse, copies: int, dtype: type, bits: int) -> Any:
    """Lava's ``Conv`` for a ``conv`` synapse, ``copies`` samples side by side as groups."""
    geo = syn.geometry
    assert geo is not None
    C, H, W = geo.in_shape
    kernel: np.ndarray = np.tile(lava_kernel(syn.weight), (copies, 1, 1, 1)).astype(dtype)
    return LAVA["Conv"](weight=kernel, input_shape=(W, H, copies * C),
                        padding=(geo.padding[1][0], geo.padding[0][0]),
                        stride=geo.stride[::-1], dilation=geo.dilation[::-1],
                        groups=copies * geo.groups, num_message_bits=bits)


def _v_init(ly: LayerSpec, order: np.ndarray, copies: int, dtype: type) -> Any:
    """The LIF's initial ``v``: 0, or ``ly.v_init`` per neuron for ``copies`` samples in
    Lava's order (the ``depth`` idle steps before the first real step decay it to the
    reference's start)."""
    if ly.v_init is None:
        return 0
    return np.tile(ly.v_init, copies)[order].astype(dtype)


def _bias_mant(ly: LayerSpec, order: np.ndarray, copies: int, dtype: type) -> Any:
    """The LIF's ``bias_mant``: 0, or ``ly.v_bias`` per neuron for ``copies`` samples in
    Lava's order."""
    if ly.v_bias is None:
        return 0
    return np.tile(ly.v_bias, copies)[order].astype(dtype)


def _neurons(ly: LayerSpec, order: np.ndarray, copies: int, dtype: type, fixed: bool) -> Any:
    """The population's Lava process for ``copies`` samples: a ``LIF``, or (subtract reset) an
    ``ATRLIF`` whose threshold never moves (``delta_theta = theta_step = 0``) and whose ``r``
    decays as ``v`` (``delta_r = dv``), so that ``v - r`` is one leaky membrane."""
    bias = _bias_mant(ly, order, copies, dtype)
    v = _v_init(ly, order, copies, dtype)
    bias_exp = 6 if fixed and ly.v_bias is not None else 0
    if ly.subtract:
        # fixed_pt: PyATRLIFModelFixed multiplies its decays by 4096 (fractions pass: measured);
        # i keeps 4095 - 4096 * delta_i (the LIF's u: 4096 - (du + 1)), v and r 4096 - 4096 *
        # delta_v (the LIF's v: 4096 - dv), all / 4096
        unit = 4096 if fixed else 1
        return LAVA["ATRLIF"](shape=(copies * ly.n,), i=0, v=v, r=0, theta=ly.vth,
                              delta_i=ly.du / unit, delta_v=ly.dv / unit,
                              delta_r=ly.dv / unit, delta_theta=0, theta_0=ly.vth,
                              theta_step=0, bias_mant=bias, bias_exp=bias_exp)
    return LAVA["LIF"](shape=(copies * ly.n,), du=ly.du, dv=ly.dv, vth=ly.vth, bias_mant=bias,
                       bias_exp=bias_exp, u=0, v=v)


def _run_once(spec: NetSpec, x: np.ndarray, layers: list[int], wanted: set[int],
              after_run: Any = None, while_running: Any = None, on_steps: Any = None
              ) -> dict[int, np.ndarray]:
    L = LAVA
    T, c = int(x.shape[0]), int(x.shape[1])
    steps = _steps(spec, T, wanted)
    fixed = spec.tag == "fixed_pt"
    dtype = np.int32 if fixed else np.float64
    grids = _grids(spec, layers)
    order = {k: _order(grids.get(k), spec.n_in if k < 0 else spec.layers[k].n, c)
             for k in [-1, *layers]}
    data = np.zeros((c * spec.n_in, steps), dtype=dtype)
    data[:, :T] = x.reshape(T, c * spec.n_in).T[order[-1]]
    binary = bool(np.all((x == 0) | (x == 1)))
    in_bits = 0 if binary else 24
    before = children()
    root = None
    finished = False
    try:
        src = L["Source"](data=data)
        root = src
        # every population first: the connection back in a loop through several populations
        # comes from a later layer (Lava's processes may be connected in a cycle)
        lifs = {k: _neurons(spec.layers[k], order[k], c, dtype, fixed) for k in layers}
        for k in layers:
            ly = spec.layers[k]
            lif = lifs[k]
            for syn in ly.inputs:
                port = src.s_out if syn.source < 0 else lifs[syn.source].s_out
                bits = in_bits if syn.source < 0 else 0
                if syn.kind == "conv":
                    conv = _conv(syn, c, dtype, bits)
                    port.reshape(conv.s_in.shape).connect(conv.s_in)
                    conv.a_out.reshape((c * ly.n,)).connect(lif.a_in)
                    continue
                if syn.kind != "dense":
                    raise ValueError(f"synapse kind {syn.kind!r} is not built here")
                weights = _block(syn.weight.astype(dtype), c)
                weights = weights[order[k]][:, order[syn.source]]
                if np.any(syn.delay):  # arrives syn.delay steps after a plain Dense's output
                    delays = _block(np.broadcast_to(np.asarray(syn.delay, dtype=np.int64),
                                                    syn.weight.shape), c)
                    delays = np.ascontiguousarray(delays[order[k]][:, order[syn.source]])
                    dense = L["DelayDense"](weights=weights, num_message_bits=bits,
                                            delays=delays.astype(int))
                else:
                    dense = L["Dense"](weights=weights, num_message_bits=bits)
                port.connect(dense.s_in)
                dense.a_out.connect(lif.a_in)
            if ly.w_rec is not None:
                rec = L["Dense"](weights=_block(ly.w_rec.astype(dtype), c))
                lif.s_out.connect(rec.s_in)
                rec.a_out.connect(lif.a_in)
            if np.any(ly.bias != 0):
                # the constant input: a source wired straight into a_in (no Dense, whose
                # identity matrix would hold (c*n)^2 elements), sending from Lava step
                # depth + 1, the neuron's first real step
                bdata = np.zeros((c * ly.n, steps), dtype=dtype)
                bdata[:, ly.depth:] = np.tile(ly.bias, c)[order[k]].astype(dtype)[:, None]
                L["Source"](data=bdata).s_out.connect(lif.a_in)
        sinks = {}
        monitors = {}
        for k in wanted:
            if spec.layers[k].readout:
                monitor = L["Monitor"]()
                monitor.probe(lifs[k].v, steps)
                monitors[k] = monitor
                continue
            sink = L["Sink"](shape=(c * spec.layers[k].n,), buffer=steps)
            lifs[k].s_out.connect(sink.a_in)
            sinks[k] = sink
        _run_lava(root, steps, spec.tag, while_running, on_steps)
        finished = True
        if after_run is not None:  # tests: a failure after the run
            after_run()
        res: dict[int, np.ndarray] = {}
        for k, sink in sinks.items():
            ly = spec.layers[k]
            lava = np.asarray(sink.data.get())  # (c*n, steps), one read
            got = np.empty_like(lava)
            got[order[k]] = lava
            got = got[:, ly.depth:ly.depth + T]
            res[k] = got.reshape(c, ly.n, T).transpose(2, 0, 1).astype(np.int8)
        for k, monitor in monitors.items():
            ly = spec.layers[k]
            (data_v,) = (d["v"] for d in monitor.get_data().values())  # (steps, c*n), one read
            lava_v = np.asarray(data_v, dtype=np.float64)[ly.depth:ly.depth + T]
            volts = np.empty_like(lava_v)
            volts[:, order[k]] = lava_v
            res[k] = volts.reshape(T, c, ly.n)
        return res
    finally:
        _stop(getattr(root, "_runtime", None), before, graceful=finished)
