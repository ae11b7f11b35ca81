"""A batched integer emulator of Xylo, bit-exact with XyloSim 0.1.3.

Two engines behind one class (``engine=``): on CPU with numba installed, ``kernel`` runs
XyloSim's step literally in integers, one sample per thread (:mod:`.kernel`); elsewhere
(CUDA, or no numba) ``torch`` runs the batch as tensor operations, as described below. Both
are tested bit-exact against XyloSim.

One step of XyloSim (``xylosim.v2.XyloLayer::evolve``), for every sample in the batch:

1. deliver the input events of this step (at most 15 per channel) to the hidden neurons'
   synaptic currents, then the hidden spikes of the previous step (at most 31 per neuron) to
   the hidden neurons (recurrent weights) and to the output neurons (readout weights). Each
   event adds ``w << shift`` with int16 saturation, one event after the other, inputs in
   channel order, then hidden neurons in index order;
2. every hidden neuron: each current ``i -= max(i >> dash_syn, sign(i))`` (arithmetic shift;
   the decay is at least 1 in magnitude), ``dv = -max(v >> dash_mem, sign(v))`` (wrapped to
   int16), ``dv = sat(dv + i_syn + i_syn2)``, ``dv = sat(dv + bias)``, ``v = sat(v + dv)``;
   then ``n = min(floor(v / threshold), 31)`` spikes (``v >= threshold``) and
   ``v -= n * threshold``;
3. every output neuron the same with one current and at most one spike.

How it stays exact while batched:

- The currents' increments are products of event counts with the *unshifted* int8 weights,
  in float32: every partial sum is an integer below 2^24 (at most 31 * 128 * 1000), so any
  summation order gives the exact result; then times ``2**shift``.
- Saturation makes the order of additions matter only where a partial sum leaves int16. A
  cheap bound per (sample, current) (the exact positive/negative input increments, and per
  hidden layer the smaller of ``spikes * max weight`` and Cauchy-Schwarz
  ``||spikes|| * ||weights||``) proves that it cannot; where it may, the exact sums of the
  positive and of the negative increments decide; where one really does leave int16, those
  currents are replayed event by event in XyloSim's order (as a tree of composed clamps).
- Where nothing saturates every state is an integer of magnitude at most 2^16, so the neuron
  arithmetic runs in float32 exactly: ``x >> d`` is ``floor(x / 2**d)``, and
  ``floor(v / threshold)`` is exact for integers below 2^15.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from nrf_nir.chips import XyloSpec, xylo_spec
from nrf_nir.errors import NIRError
from nrf_nir.reference import default_device

from . import kernel as _kernel
from .config import XyloConfig

LO, HI = -32768, 32767
#: What ``run(record=...)`` can return besides ``spikes_out``.
RECORDABLE = ("spikes", "v", "i", "i2", "v_out", "i_out")
#: With a progress bar, the compiled kernel runs chunks of samples of about this many seconds.
PROGRESS_SECONDS = 0.25
_F32 = torch.float32
_I64 = torch.int64


def _norm(w: Tensor) -> Tensor:
    """Column 2-norms (float32, rounded up a little so that the bound stays a bound)."""
    if not w.numel():
        return torch.zeros(w.shape[1], dtype=_F32, device=w.device)
    return (w.to(torch.float64).pow(2).sum(0).sqrt() * (1 + 1e-6)).to(_F32)


class XyloEmulator:
    """Runs a :class:`XyloConfig` on ``[T, B, Nin]`` input event counts.

    device: torch device (default CUDA when present, else CPU). ``engine``: ``auto`` (the
    compiled kernel on CPU when numba is installed, else torch), ``kernel`` or ``torch``.
    ``chunk`` (torch engine) steps of input currents are computed per matrix product.
    ``threads``: CPU threads while running (kernel: numba's setting by default, at most one
    per sample; torch: 1 when a step's currents have fewer than 2^18 elements, where thread
    start-up and contention cost more than they save, else torch's setting); restored
    afterwards.
    """

    def __init__(self, config: XyloConfig, *, device: Any = None, spec: XyloSpec | None = None,
                 chunk: int = 64, threads: int | None = None, engine: str = "auto") -> None:
        spec = xylo_spec(config.chip) if spec is None else spec
        config.validate(spec)
        self.config, self.spec, self.chunk = config, spec, int(chunk)
        self.threads = threads
        self.device = torch.device(device) if device is not None else default_device()
        dev = self.device
        nin, nh, no = config.n_in, config.n_hidden, config.n_out
        self.nin, self.nh, self.no = nin, nh, no
        if engine not in ("auto", "kernel", "torch"):
            raise NIRError(f"unknown emulator engine {engine!r}; known: auto, kernel, torch",
                           field="engine")
        if engine == "kernel" and dev.type != "cpu":
            raise NIRError("the compiled kernel runs on the CPU only", field="engine")
        if engine == "kernel" and not _kernel.available():
            raise NIRError("the compiled Xylo kernel needs numba: pip install nrf-nir[xylo]",
                           field="engine")
        #: ``kernel``: the compiled CPU kernel (numba); ``torch``: batched torch operations
        self.engine = ("kernel" if dev.type == "cpu" and _kernel.available() else "torch"
                       ) if engine == "auto" else engine

        def t(a: Any, dtype: torch.dtype = _I64) -> Tensor:
            return torch.as_tensor(a).to(device=dev, dtype=dtype)

        win, wrec, wout = t(config.weights_in), t(config.weights_rec), t(config.weights_out)
        self.use2 = bool(win[:, :, 1].any() or wrec[:, :, 1].any())
        k = 2 if self.use2 else 1
        self.k = k
        # accumulator columns: hidden synapse 1 [, hidden synapse 2], output synapse
        cols_in = torch.cat([win[:, :, j] for j in range(k)]
                            + [torch.zeros(nin, no, dtype=_I64, device=dev)], 1)
        cols_rec = torch.cat([wrec[:, :, j] for j in range(k)] + [wout], 1)
        ncol = k * nh + no
        self.ncol = ncol
        self.sh_in = 1 << int(config.weight_shift_in)
        rec_mult = torch.full((ncol,), 1 << int(config.weight_shift_rec), dtype=_I64,
                              device=dev)
        rec_mult[k * nh:] = 1 << int(config.weight_shift_out)
        # shifted integer weights (the kernel; the torch engine's event-by-event replay)
        self.win_s = cols_in * self.sh_in
        self.wrec_s = cols_rec * rec_mult
        #: steps (per call) that needed the exact-sum check / the event-by-event replay
        #: (torch engine)
        self.stats = {"checked": 0, "replayed": 0}
        if self.engine == "kernel":  # the rest prepares the torch engine
            self._kernel_args = self._kernel_arrays()
            return
        # Float products with the shifted weights are exact while every column's sum of
        # |w| (unshifted) * max count < 2^24: every partial sum is then a multiple of
        # 2**shift with an unshifted magnitude below 2^24, hence representable.
        bound = max(int(cols_in.abs().sum(0).max()) * spec.max_input_spikes if nin else 0,
                    int(cols_rec.abs().sum(0).max()) * spec.max_hidden_spikes if nh else 0)
        exact32 = bound < 2 ** 24 and torch.get_float32_matmul_precision() == "highest"
        self.fdtype = _F32 if exact32 and dev.type == "cpu" else torch.float64
        self.win_f = (cols_in * self.sh_in).to(self.fdtype)
        self.wrec_f = (cols_rec * rec_mult).to(self.fdtype)
        self.win_pos = self.win_f.clamp(min=0)
        self.wrec_pos = self.wrec_f.clamp(min=0)
        # row groups (hidden layers of the layout) and the columns they reach: sparse
        # delivery of the hidden spikes, and the saturation bound per group
        cuts = sorted({0, nh, *[int(la["offset"]) for la in config.layout.get("hidden", [])]})
        self.groups: list[tuple[int, int, int, int, Tensor, Tensor]] = []
        self.gstats: list[tuple[int, int, Tensor, Tensor, Tensor, Tensor]] = []
        for r0, r1 in zip(cuts[:-1], cuts[1:], strict=False):
            cols = self.wrec_f[r0:r1].ne(0).any(0).nonzero().flatten()
            if not cols.numel():
                continue
            c0, c1 = int(cols.min()), int(cols.max()) + 1
            self.groups.append((r0, r1, c0, c1, self.wrec_f[r0:r1, c0:c1].contiguous(),
                                self.wrec_pos[r0:r1, c0:c1].contiguous()))
            ws = self.wrec_s[r0:r1]
            pos, neg = ws.clamp(min=0), -ws.clamp(max=0)
            self.gstats.append((r0, r1, pos.amax(0).to(_F32), _norm(pos),
                                neg.amax(0).to(_F32), _norm(neg)))
        # The fast path keeps one contiguous current tensor per target (hidden synapse 1
        # [, 2], output synapse): each with its input weights (restricted to the columns
        # that have any), and per row group its weight block and saturation-bound stats.
        self.row_groups = [(r0, r1) for r0, r1, *_ in self.groups]
        self.targets: list[dict[str, Any]] = []
        spans = [(j * nh, (j + 1) * nh) for j in range(k)] + [(k * nh, ncol)]
        for lo, hi in spans:
            tg: dict[str, Any] = {"lo": lo, "hi": hi, "n": hi - lo, "groups": [],
                                  "stats": []}
            wi = self.win_f[:, lo:hi]
            cols = wi.ne(0).any(0).nonzero().flatten()
            tg["win"] = None
            if cols.numel():
                c0, c1 = int(cols.min()), int(cols.max()) + 1
                tg["win"] = (c0, c1, wi[:, c0:c1].contiguous(),
                             wi[:, c0:c1].clamp(min=0).contiguous())
            for gi, (r0, r1) in enumerate(self.row_groups):
                w = self.wrec_f[r0:r1, lo:hi]
                cols = w.ne(0).any(0).nonzero().flatten()
                if not cols.numel():
                    continue
                c0, c1 = int(cols.min()), int(cols.max()) + 1
                tg["groups"].append((gi, c0, c1, w[:, c0:c1].contiguous(),
                                     c0 == 0 and c1 == hi - lo))
                ws = self.wrec_s[r0:r1, lo:hi]
                pos, neg = ws.clamp(min=0), -ws.clamp(max=0)
                tg["stats"].append((gi, pos.amax(0).to(_F32), _norm(pos),
                                    neg.amax(0).to(_F32), _norm(neg)))
            self.targets.append(tg)
        #: hidden spike density up to which delivery gathers weight rows (embedding_bag)
        #: instead of a matrix product
        self.sparse_below = 0.1
        # neurons (float32: exact, see the module docstring)

        def f(a: Any) -> Tensor:
            return t(a, _F32)

        self.div_mem = f(2.0 ** -t(config.dash_mem))
        self.div_syn = [f(2.0 ** -t(config.dash_syn)), f(2.0 ** -t(config.dash_syn2))][:k]
        self.th = f(config.threshold)
        self.bias = f(config.bias) if bool(config.bias.any()) else None
        self.div_mem_out = f(2.0 ** -t(config.dash_mem_out))
        self.div_syn_out = [f(2.0 ** -t(config.dash_syn_out))]
        self.th_out = f(config.threshold_out)
        self.bias_out = f(config.bias_out) if bool(config.bias_out.any()) else None
        self.wrap_h = bool((t(config.dash_mem) == 0).any())
        self.wrap_o = bool((t(config.dash_mem_out) == 0).any())

    def _kernel_arrays(self) -> tuple[Any, ...]:
        """The configuration as the compiled kernel takes it: shifted int16 weights with
        ``k`` hidden-synapse column blocks then the output columns, each row's non-zero
        column span, int32 neuron parameters."""
        c, k, nh = self.config, self.k, self.nh
        w_in = self.win_s.cpu().numpy().astype(np.int16)
        w_rec = self.wrec_s.cpu().numpy().astype(np.int16)

        def i32(a: Any) -> np.ndarray:
            return np.ascontiguousarray(np.asarray(a), dtype=np.int32)

        dash_syn2 = i32(c.dash_syn2) if k == 2 else np.zeros(nh, np.int32)
        return (np.ascontiguousarray(w_in), _kernel.spans(w_in), np.ascontiguousarray(w_rec),
                _kernel.spans(w_rec), k, nh, self.no,
                i32(c.dash_mem), i32(c.dash_syn), dash_syn2, i32(c.threshold), i32(c.bias),
                int(self.spec.max_hidden_spikes),
                i32(c.dash_mem_out), i32(c.dash_syn_out), i32(c.threshold_out),
                i32(c.bias_out), int(self.spec.max_output_spikes))

    def _run_kernel(self, x_all: Tensor, T: int, B: int, record: tuple[str, ...],
                    progress: bool = False) -> dict[str, Tensor]:
        x = np.ascontiguousarray(x_all.numpy(), dtype=np.int8)
        out = np.zeros((T, B, self.no), np.int32)
        recs = {}
        for key in ("spikes", "v", "i", "i2", "v_out", "i_out"):
            size = self.no if key.endswith("_out") else self.nh
            recs[key] = (np.zeros((T, B, size), np.int32) if key in record
                         else np.zeros((0, 0, 0), np.int32))
        run = _kernel.kernel()
        import numba

        before = numba.get_num_threads()
        # set at import by numba's environment reloader (globals().update), unseen by its stubs
        threads = min(self.threads or before,
                      numba.config.NUMBA_NUM_THREADS)  # type: ignore[attr-defined]
        threads = max(1, min(threads, B))
        numba.set_num_threads(threads)
        try:
            if progress:
                self._run_kernel_chunks(run, x, out, recs, threads)
            else:
                run(x, *self._kernel_args, out, *recs.values())
        finally:
            numba.set_num_threads(before)
        res = {"spikes_out": torch.from_numpy(out)}
        for key in record:
            res[key] = torch.from_numpy(recs[key])
        return res

    def _run_kernel_chunks(self, run: Any, x: np.ndarray, out: np.ndarray,
                           recs: dict[str, np.ndarray], threads: int) -> None:
        """The kernel on chunks of samples with a progress bar (samples) on stderr: ``threads``
        samples first, then chunks of about :data:`PROGRESS_SECONDS` each at the rate
        measured (a multiple of ``threads``), so that the calls between chunks cost nothing
        measurable."""
        import time

        from tqdm.auto import tqdm

        B = x.shape[1]
        size, b0 = threads, 0
        with tqdm(total=B, unit="sample", desc="xylo", leave=False) as bar:
            while b0 < B:
                b1 = min(B, b0 + size)
                start = time.perf_counter()
                part = {k: r if not r.shape[0] else
                        np.zeros((r.shape[0], b1 - b0, r.shape[2]), np.int32)
                        for k, r in recs.items()}
                part_out = np.zeros((out.shape[0], b1 - b0, out.shape[2]), np.int32)
                run(np.ascontiguousarray(x[:, b0:b1]), *self._kernel_args, part_out,
                    *part.values())
                out[:, b0:b1] = part_out
                for k, r in recs.items():
                    if r.shape[0]:
                        r[:, b0:b1] = part[k]
                bar.update(b1 - b0)
                per_sample = (time.perf_counter() - start) / (b1 - b0)
                size = max(1, int(PROGRESS_SECONDS / max(per_sample, 1e-9)) // threads
                           ) * threads
                b0 = b1

    # ------------------------------------------------------------------------ delivery
    def _deliver_rec(self, n: Tensor, positive: bool = False) -> Tensor:
        """Increments from the hidden spike counts ``n`` [B, Nh] (float, exact): a sum of
        weight rows per sample (``embedding_bag``) when spikes are sparse, else a matrix
        product."""
        B = n.shape[0]
        nz = n.nonzero()
        if nz.shape[0] > self.sparse_below * n.numel() or self.device.type != "cpu":
            return n.to(self.fdtype) @ (self.wrec_pos if positive else self.wrec_f)
        out = torch.zeros(B, self.ncol, dtype=self.fdtype, device=self.device)
        if nz.shape[0] == 0:
            return out
        b, p = nz[:, 0], nz[:, 1]
        w = n[b, p].to(self.fdtype)
        arange = torch.arange(B, device=self.device)
        for r0, r1, c0, c1, mat, mat_pos in self.groups:
            if len(self.groups) > 1:
                sel = (p >= r0) & (p < r1)
                bg, pg, wg = b[sel], p[sel], w[sel]
            else:
                bg, pg, wg = b, p, w
            if bg.numel() == 0:
                continue
            offsets = torch.searchsorted(bg, arange)
            out[:, c0:c1] += F.embedding_bag(pg - r0, mat_pos if positive else mat, offsets,
                                             mode="sum", per_sample_weights=wg)
        return out

    def _replay(self, acc: Tensor, x: Tensor, n: Tensor, b_idx: Tensor, c_idx: Tensor
                ) -> Tensor:
        """Saturating event-by-event accumulation, in XyloSim's order, for the (sample,
        column) pairs given (int64).

        Each event is ``y -> clamp(y + c, LO, HI)``; such maps compose into
        ``y -> clamp(y + C, L, H)`` (``(C1, L1, H1)`` then ``(C2, L2, H2)`` is
        ``(C1 + C2, clamp(L1 + C2, L2, H2), clamp(H1 + C2, L2, H2))``, associative), so the
        events are combined pairwise in log2(#events) vectorised rounds, order kept."""
        out = []
        per = max(1, 2 ** 22 // (self.nin + self.nh + 1))
        for lo in range(0, b_idx.numel(), per):
            b, c = b_idx[lo:lo + per], c_idx[lo:lo + per]
            C = torch.cat([x[b].to(_I64) * self.win_s[:, c].T,
                           n[b].to(_I64) * self.wrec_s[:, c].T], 1)
            C = C[:, C.ne(0).any(0)]
            L = torch.full_like(C, LO)
            H = torch.full_like(C, HI)
            while C.shape[1] > 1:
                if C.shape[1] % 2:
                    pad = torch.zeros_like(C[:, :1])
                    C = torch.cat([C, pad], 1)
                    L = torch.cat([L, pad + LO], 1)
                    H = torch.cat([H, pad + HI], 1)
                C1, C2 = C[:, 0::2], C[:, 1::2]
                L1, L2, H1, H2 = L[:, 0::2], L[:, 1::2], H[:, 0::2], H[:, 1::2]
                L = torch.minimum(torch.maximum(L1 + C2, L2), H2)
                H = torch.minimum(torch.maximum(H1 + C2, L2), H2)
                C = C1 + C2
            val = acc[b, c].to(_I64)
            if C.shape[1]:
                val = torch.minimum(torch.maximum(val + C[:, 0], L[:, 0]), H[:, 0])
            out.append(val)
        return torch.cat(out)

    def _saturating(self, acc: Tensor, x: Tensor, n: Tensor) -> Tensor:
        """Where the cheap bound could not rule saturation out: the exact (int64) sums of
        the positive and of the negative increments decide; replay where one leaves int16.
        Returns the currents after delivery (float32, exact)."""
        self.stats["checked"] += 1
        xf = x.to(self.fdtype)
        a = acc.to(_I64)
        total = (xf @ self.win_f).to(_I64) + self._deliver_rec(n).to(_I64)
        pos = (xf @ self.win_pos).to(_I64) + self._deliver_rec(n, positive=True).to(_I64)
        new = a + total
        bad = ((a + pos) > HI) | ((a + total - pos) < LO)
        if bool(bad.any()):
            self.stats["replayed"] += 1
            b_idx, c_idx = bad.nonzero(as_tuple=True)
            new[b_idx, c_idx] = self._replay(a, x, n, b_idx, c_idx)
        return new.to(_F32)

    # ------------------------------------------------------------------------ neurons
    def _neurons(self, cur: list[Tensor], v: Tensor, div_mem: Tensor,
                 div_syn: list[Tensor], th: Tensor, bias: Tensor | None, wrap: bool,
                 max_spikes: int) -> tuple[list[Tensor], Tensor, Tensor]:
        """One XyloSim neuron update on float32 states (exact; ``div_*`` are ``2**-dash``).
        ``cur``: currents after delivery. Returns (decayed currents, v, spike counts)."""
        decayed = []
        total = None
        for i, d in zip(cur, div_syn, strict=True):
            # i - decay(i), decay = max(floor(i * 2^-d), min(i, 1)) (= x >> d, or sign(x))
            o = i - torch.maximum(torch.floor(i * d), i.clamp(max=1))
            decayed.append(o)
            total = o if total is None else total + o
        assert total is not None
        vd = torch.maximum(torch.floor(v * div_mem), v.clamp(max=1))
        dv = total - vd
        if wrap:  # the int16 cast of -(-32768) is -32768
            dv = dv - (vd == LO).to(_F32) * 65536.0
        dv.clamp_(LO, HI)
        if bias is not None:
            dv.add_(bias).clamp_(LO, HI)
        v = dv.add_(v).clamp_(LO, HI)
        n = torch.floor(v / th).clamp_(0, max_spikes)
        v = torch.addcmul(v, n, th, value=-1)
        return decayed, v, n

    # ------------------------------------------------------------------------ run
    def run(self, inputs: Tensor, *, record: Iterable[str] = (), progress: bool = False
            ) -> dict[str, Tensor]:
        """Simulate ``inputs`` (``[T, B, Nin]`` event counts; values above 15 count as 15)
        from the reset state. Returns ``spikes_out`` ``[T, B, No]`` and each recorded name of
        ``RECORDABLE`` (``spikes`` [T, B, Nh] hidden spike counts; ``v``, ``i``, ``i2`` hidden
        states, ``v_out``, ``i_out`` output states), all int32, after each step.
        ``progress``: a progress bar on stderr (the kernel: samples, per chunk of samples;
        torch: steps, per chunk of steps)."""
        record = tuple(record)
        for key in record:
            if key not in RECORDABLE:
                raise NIRError(f"cannot record {key!r}; known: {', '.join(RECORDABLE)}",
                               field="record")
        x_all = torch.as_tensor(inputs).to(self.device)
        if x_all.dim() != 3 or x_all.shape[2] != self.nin:
            raise NIRError(f"inputs must be [T, B, {self.nin}] event counts, got "
                           f"{list(x_all.shape)}", field="inputs")
        if x_all.numel() and x_all.is_floating_point() and not torch.equal(
                x_all, torch.round(x_all)):
            raise NIRError("Xylo inputs are event counts per step and channel: integers",
                           field="inputs")
        if x_all.numel() and float(x_all.min()) < 0:
            raise NIRError("Xylo inputs are event counts: they cannot be negative",
                           field="inputs")
        x_all = x_all.clamp(max=self.spec.max_input_spikes).to(torch.int32)
        T, B = int(x_all.shape[0]), int(x_all.shape[1])
        if self.engine == "kernel":
            return self._run_kernel(x_all.cpu(), T, B, record, progress)
        threads = self.threads
        if threads is None and self.device.type == "cpu" and B * self.ncol < 2 ** 18:
            threads = 1
        before = torch.get_num_threads()
        if threads is not None and threads != before:
            torch.set_num_threads(threads)
        try:
            with torch.no_grad():
                return self._run(x_all, T, B, record, progress)
        finally:
            if torch.get_num_threads() != before:
                torch.set_num_threads(before)

    def _run(self, x_all: Tensor, T: int, B: int, record: tuple[str, ...],
             progress: bool = False) -> dict[str, Tensor]:
        dev, nh, no, k = self.device, self.nh, self.no, self.k
        i32 = torch.int32
        res: dict[str, Tensor] = {
            "spikes_out": torch.zeros(T, B, no, dtype=i32, device=dev)}
        for key in record:
            res[key] = torch.zeros(T, B, no if key.endswith("_out") else nh, dtype=i32,
                                   device=dev)
        targets = self.targets
        accs = [torch.zeros(B, tg["n"], dtype=_F32, device=dev) for tg in targets]
        v = torch.zeros(B, nh, dtype=_F32, device=dev)
        v_out = torch.zeros(B, no, dtype=_F32, device=dev)
        n = torch.zeros(B, nh, dtype=_F32, device=dev)
        arange = torch.arange(B, device=dev)
        margin = 1.0 + 2.0 ** -12
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=T, unit="step", desc="xylo", leave=False)
        for t0 in range(0, T, self.chunk):
            xc = x_all[t0:t0 + self.chunk]
            tc = xc.shape[0]
            xf = xc.reshape(tc * B, -1).to(self.fdtype)
            # per target: input increments, and the exact sums of their positive / negative
            # parts per sample with their extremes over the batch
            xins: list[Any] = []
            for tg in targets:
                if tg["win"] is None:
                    xins.append(None)
                    continue
                c0, c1, w, wp = tg["win"]
                xin = torch.zeros(tc, B, tg["n"], dtype=_F32, device=dev)
                xpos = torch.zeros(tc, B, tg["n"], dtype=_F32, device=dev)
                xin[:, :, c0:c1] = (xf @ w).to(_F32).reshape(tc, B, -1)
                xpos[:, :, c0:c1] = (xf @ wp).to(_F32).reshape(tc, B, -1)
                xneg = xin - xpos
                xins.append((xin, xpos, xneg, xpos.amax(1), xneg.amin(1)))
            for tt in range(tc):
                t = t0 + tt
                # the hidden spikes of the previous step, per row group
                # per row group: (spikes, sparse index, weights, offsets, sum, norm, max sum,
                # max norm); the three sparse entries are None for the dense product
                gath: list[tuple[Tensor, Tensor | None, Tensor | None, Tensor | None, Tensor,
                                 Tensor, float, float]] = []
                for r0, r1 in self.row_groups:
                    seg = n[:, r0:r1]
                    cs = seg.sum(1, keepdim=True)
                    cn = torch.linalg.vector_norm(seg, dim=1, keepdim=True)
                    nz = seg.nonzero()
                    if nz.shape[0] > self.sparse_below * seg.numel() or dev.type != "cpu":
                        gath.append((seg, None, None, None, cs, cn, float(cs.max()),
                                     float(cn.max())))
                    else:
                        b, p = nz[:, 0], nz[:, 1]
                        gath.append((seg, p, seg[b, p], torch.searchsorted(b, arange), cs, cn,
                                     float(cs.max()), float(cn.max())))
                news = []
                unsafe = False
                for tg, acc, xi in zip(targets, accs, xins, strict=True):
                    new = acc if xi is None else acc + xi[0][tt]
                    for gi, c0, c1, mat, full in tg["groups"]:
                        seg, p, w, offsets, *_ = gath[gi]
                        if p is None:
                            part = seg.to(self.fdtype) @ mat
                        elif p.numel():
                            part = F.embedding_bag(p, mat, offsets, mode="sum",
                                                   per_sample_weights=w)
                        else:
                            continue
                        part = part.to(_F32)
                        if full:
                            new = new + part
                        else:
                            if new is acc:
                                new = acc.clone()
                            new[:, c0:c1] += part
                    news.append(new)
                    # saturation is impossible where acc + every positive (negative)
                    # increment stays inside int16: over the batch first, then per sample
                    if not unsafe:
                        hi = acc.amax(0)
                        lo = acc.amin(0)
                        if xi is not None:
                            hi = hi + xi[3][tt]
                            lo = lo + xi[4][tt]
                        for gi, pmax, pnorm, nmax, nnorm in tg["stats"]:
                            cm, nm = gath[gi][6], gath[gi][7]
                            if cm:
                                hi = hi + torch.minimum(cm * pmax, nm * pnorm) * margin
                                lo = lo - torch.minimum(cm * nmax, nm * nnorm) * margin
                        if float(hi.max()) > HI or float(lo.min()) < LO:
                            top = acc if xi is None else acc + xi[1][tt]
                            bottom = acc if xi is None else acc + xi[2][tt]
                            for gi, pmax, pnorm, nmax, nnorm in tg["stats"]:
                                cs, cn = gath[gi][4], gath[gi][5]
                                top = top + torch.minimum(cs * pmax, cn * pnorm) * margin
                                bottom = bottom - torch.minimum(cs * nmax, cn * nnorm) * margin
                            unsafe = float(top.max()) > HI or float(bottom.min()) < LO
                if unsafe:
                    full_new = self._saturating(torch.cat(accs, 1), xc[tt], n)
                    news = [full_new[:, tg["lo"]:tg["hi"]].contiguous() for tg in targets]
                # hidden neurons, then output neurons (both read the delivered currents)
                accs_h, v, n = self._neurons(news[:k], v, self.div_mem, self.div_syn, self.th,
                                             self.bias, self.wrap_h,
                                             self.spec.max_hidden_spikes)
                accs_o, v_out, n_out = self._neurons(news[k:], v_out, self.div_mem_out,
                                                     self.div_syn_out, self.th_out,
                                                     self.bias_out, self.wrap_o,
                                                     self.spec.max_output_spikes)
                accs = [*accs_h, *accs_o]
                res["spikes_out"][t] = n_out
                if record:
                    for key, val in (("spikes", n), ("v", v), ("i", accs_h[0]),
                                     ("i2", accs_h[1] if k == 2 else None),
                                     ("v_out", v_out), ("i_out", accs_o[0])):
                        if key in res and val is not None:
                            res[key][t] = val
            if bar is not None:
                bar.update(tc)
        if bar is not None:
            bar.close()
        return res
