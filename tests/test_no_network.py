"""Nothing touches the network at import or run time: a subprocess with sockets disabled
imports everything, exports, saves, loads, runs and checks targets."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent('''
    import socket

    class NoNetwork(OSError):
        pass

    def refuse(*args, **kwargs):
        raise NoNetwork(f"network access attempted: {args[:2]}")

    class GuardedSocket(socket.socket):
        # Unix sockets (Lava's shared memory, multiprocessing) are local: allowed
        def connect(self, *a, **k):
            if self.family != socket.AF_UNIX:
                refuse(*a)
            return super().connect(*a, **k)
        def connect_ex(self, *a, **k):
            if self.family != socket.AF_UNIX:
                refuse(*a)
            return super().connect_ex(*a, **k)
        def sendto(self, *a, **k):
            refuse(*a)

    socket.socket = GuardedSocket
    socket.create_connection = refuse
    socket.getaddrinfo = refuse
    socket.gethostbyname = refuse

    import numpy as np
    import torch
    import norse.torch as snn
    import nrf_nir
    from nrf_nir.conformance.cases import node_cases
    from nrf_nir.conformance.runner import run_case

    model = snn.SequentialState(torch.nn.Linear(4, 5), snn.LIFBoxCell())
    graph = nrf_nir.export(model, torch.zeros(1, 4))
    nrf_nir.save(graph, "m.nir")
    graph = nrf_nir.load("m.nir")
    x = np.ones((20, 2, 4), dtype=np.float32)
    for target in nrf_nir.targets.available():
        print(target, nrf_nir.check(graph, target) == [] or "refused")
    out = nrf_nir.run(graph, x, target="norse")
    case = node_cases(T=20, B=2)[0]
    for raw in run_case(case, tuple(nrf_nir.targets.available())):
        assert "network access" not in str(raw["error"]), raw["error"]
    print("OK", float(out["output"].sum()))
''')


def test_no_network_access(tmp_path):
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "OK" in proc.stdout
    assert "network access attempted" not in proc.stderr
