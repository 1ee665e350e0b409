"""One epoch of a conf/book run's network on synthetic data, one BLAS thread: a whole-process timing
probe (see code_vs_machine.txt). python one_epoch.py <book id> <images>"""
import sys

import numpy as np
from threadpoolctl import threadpool_limits

from pipeline.experiment import run_spec
from pipeline.nn import build_network, fit
from pipeline.params import conf_book_run

run = conf_book_run(sys.argv[1])
spec = run_spec(run, 1, {})
spec["training"]["epochs"] = 1
n = int(sys.argv[2])
rng = np.random.default_rng(0)
x = rng.random((n, 784), dtype=np.float32)
y = rng.integers(0, 10, n)
with threadpool_limits(1):
    net = build_network(spec)
    fit(net, spec, (x, y), log=None, progress=False)
