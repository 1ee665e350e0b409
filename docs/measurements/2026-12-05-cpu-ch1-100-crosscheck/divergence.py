"""How fast ours and PyTorch part ways on ch1-100 (float64, seed 1): a throwaway script, kept
with its output (divergence.log). Both engines take the same 5,000 mini-batches of the first
epoch from the same start; printed: the step and the largest difference of any weight or bias.

    python docs/measurements/2026-12-05-cpu-ch1-100-crosscheck/divergence.py
"""
import numpy
import torch

from pipeline.crosscheck import TorchTwin
from pipeline.experiment import load_run_data, run_spec
from pipeline.nn.build import build_network
from pipeline.nn.network import one_hot
from pipeline.nn.spec import validate_spec
from pipeline.nn.train import epoch_orders
from pipeline.params import load_params

torch.set_num_threads(1)
params = load_params()
cfg = params["book"]["ch1-100"]
train, _, _, _ = load_run_data(cfg, params["data"], {})
spec = validate_spec(run_spec(cfg, 1, {"epochs": 1}))
net = build_network(spec, device="cpu")
twin = TorchTwin(spec, net.state_dict(), torch)
x = train.x.astype(numpy.float64)
y = one_hot(train.y, 10, numpy, numpy.float64)
xt, yt = torch.from_numpy(x), torch.from_numpy(train.y)
order = epoch_orders(spec["training"], len(x))()
m, eta = spec["training"]["batch_size"], spec["training"]["eta"]
for step in range(len(x) // m):
    idx = order[step * m:(step + 1) * m]
    net.sgd_step(x[idx], y[idx], eta, 1.0)
    twin.sgd_step(xt[idx], yt[idx], eta, 0.0)
    if step in (0, 10, 100, 300, 1000, 1500, 2000, 3000, 4000, 4999):
        ours = net.state_dict()
        print(step, max(float(numpy.abs(ours[k] - v).max()) for k, v in twin.state_dict().items()), flush=True)
