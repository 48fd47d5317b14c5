"""Counting the FLOPs of convolution and linear layers in Jittor networks, without running them.

Jittor is lazy: calling a network builds a graph whose shapes are known at
once, and nothing is computed until a result is read (``.numpy()``,
``.item()``, ``jt.sync_all()``). ``FlopCounter`` wraps the ``execute`` of
every convolution and linear layer of the networks attached to it and
records, per call, the multiply-adds (MACs) from the weight and the output
shapes. A FLOP is counted as 2 per multiply-add; everything else (norms,
activations, pooling, interpolation, the spectral-norm power iteration) is
not counted: at these sizes it is a few per cent of the convolutions.

Back-propagation estimate (``backprop_factors``): a layer call costs its
forward once, plus once more for the gradient of its input when that input
depends on a variable the step differentiates, plus once more for the
gradient of its weight when the weight is one of those variables. So a layer
inside a trained network counts 3x, its first layer (fed by data) 2x, a frozen
network between a trained one and the loss (VGG19 on the generated image, or
D in the generator's step) 2x, and a pass run under ``jt.no_grad`` or on data
alone (VGG19 on the real photo) 1x. Which inputs depend on the differentiated
variables is read from Jittor's graph (``jt.dump_all_graphs``) the way Jittor's
own ``jt.grad`` decides it: forward from those variables, never through a
stop-grad node (``detach``, ``stop_grad``, anything made under no_grad).
"""

import math
import re
from collections import namedtuple

import jittor as jt
from jittor import nn

LayerCall = namedtuple("LayerCall", "network layer kind macs no_grad input_id weight_id")

_NODE = re.compile(r"^(Op|Var)\((\d+):[^,]*:g(\d)")


def conv_macs(weight_shape, output_shape):
    """Multiply-adds of a convolution: every output element sums in_channels/groups x kernel products."""
    return math.prod(int(s) for s in output_shape) * math.prod(int(s) for s in weight_shape[1:])


def conv_transpose_macs(weight_shape, input_shape):
    """Multiply-adds of a transposed convolution (weight [in, out/groups, k...]): every input
    element is multiplied into out/groups x kernel outputs."""
    return math.prod(int(s) for s in input_shape) * math.prod(int(s) for s in weight_shape[1:])


def linear_macs(weight_shape, input_shape):
    """Multiply-adds of a linear layer (weight [out, in]) applied to the rows of ``input_shape``."""
    return math.prod(int(s) for s in input_shape[:-1]) * int(weight_shape[0]) * int(weight_shape[1])


def layer_kind(module):
    """('conv' | 'deconv' | 'linear', weight Var) of a layer whose FLOPs are counted, else None.

    Jittor's Conv1d/2d/3d, ConvTranspose(3d) and Linear, and any layer holding a
    spectral-normalised ``weight_orig`` (4-D: a convolution, 2-D: linear)."""
    if isinstance(module, (nn.ConvTranspose, nn.ConvTranspose3d)):
        return "deconv", module.weight
    if isinstance(module, (nn.Conv, nn.Conv1d, nn.Conv3d)):
        return "conv", module.weight
    if isinstance(module, nn.Linear):
        return "linear", module.weight
    weight = getattr(module, "weight_orig", None)
    if isinstance(weight, jt.Var) and weight.ndim in (2, 3, 4, 5):
        return ("linear" if weight.ndim == 2 else "conv"), weight
    return None


def _macs(kind, weight, x, out):
    if kind == "conv":
        return conv_macs(weight.shape, out.shape)
    if kind == "deconv":
        return conv_transpose_macs(weight.shape, x.shape)
    return linear_macs(weight.shape, x.shape)


class FlopCounter:
    """Records the conv/linear calls of the attached networks.

    with FlopCounter({"G": g, "D": d}) as counter:
        out = g(x)                   # lazy: nothing runs
        counter.flops("G")           # 2 x multiply-adds so far
    """

    def __init__(self, networks=None):
        self.calls = []
        self._held = []          # inputs of recorded calls, kept alive for backprop_factors
        self._patched = []
        for name, net in (networks or {}).items():
            self.attach(name, net)

    def attach(self, name, net):
        """Count the layers of ``net`` (a Module) under the network name ``name``."""
        modules = net.named_modules() if hasattr(net, "named_modules") else [("", net)]
        for layer_name, module in modules:
            found = layer_kind(module)
            if found is not None and "execute" not in module.__dict__:
                self._wrap(name, layer_name or type(module).__name__, module, *found)
        return self

    def _wrap(self, network, layer_name, module, kind, weight):
        original = module.execute
        counter = self

        def execute(*args, **kw):
            out = original(*args, **kw)
            x = args[0] if args else next(iter(kw.values()))
            counter.calls.append(LayerCall(network, layer_name, kind, _macs(kind, weight, x, out),
                                           bool(jt.flags.no_grad), x.id, weight.id))
            counter._held.append(x)
            return out

        module.execute = execute
        self._patched.append(module)

    def detach(self):
        """Restore every wrapped layer."""
        for module in self._patched:
            module.__dict__.pop("execute", None)
        self._patched = []

    def clear(self):
        """Forget the calls recorded so far (and release the graphs they kept alive)."""
        self.calls = []
        self._held = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.detach()
        return False

    def macs(self, network=None):
        return sum(c.macs for c in self.calls if network is None or c.network == network)

    def flops(self, network=None):
        """Forward FLOPs (2 per multiply-add) of the calls recorded, of one network or all."""
        return 2 * self.macs(network)

    def networks(self):
        return sorted({c.network for c in self.calls})


def grad_reachable_ids(targets):
    """Ids of the live Vars through which a gradient reaches ``targets`` (the Vars a step differentiates),
    read from Jittor's graph: everything computed from a target, never through a stop-grad node."""
    graph = jt.dump_all_graphs()
    info, outputs = graph.nodes_info, graph.outputs
    parsed = [_NODE.match(text) for text in info]
    index = {}
    for i, m in enumerate(parsed):
        if m is not None and m.group(1) == "Var":
            index[int(m.group(2))] = i
    seen = set()
    stack = [index[t.id] for t in targets if t.id in index]
    while stack:
        i = stack.pop()
        if i in seen or parsed[i] is None or parsed[i].group(3) == "0":
            continue
        seen.add(i)
        stack.extend(outputs[i])
    return {int(parsed[i].group(2)) for i in seen if parsed[i].group(1) == "Var"}


def backprop_factors(calls, targets):
    """For each call: (1 forward, 1 if its input's gradient is computed, 1 if its weight's is), when a
    step runs its backward pass for the gradients of ``targets`` (a list of Vars: the parameters the
    optimiser updates). Calls made under no_grad count (1, 0, 0). The graph of the calls must still be
    alive (the counter keeps their inputs)."""
    reach = grad_reachable_ids(targets)
    target_ids = {t.id for t in targets}
    out = []
    for c in calls:
        if c.no_grad:
            out.append((1, 0, 0))
        else:
            out.append((1, int(c.input_id in reach), int(c.weight_id in target_ids)))
    return out


def training_flops(calls, targets):
    """Summary of one step's calls with ``targets`` differentiated: FLOPs of the forward passes, of the
    backward pass, their total, and per network {forward, backward}."""
    factors = backprop_factors(calls, targets)
    per_net = {}
    for c, (fwd, dx, dw) in zip(calls, factors):
        entry = per_net.setdefault(c.network, {"forward": 0, "backward": 0})
        entry["forward"] += 2 * c.macs * fwd
        entry["backward"] += 2 * c.macs * (dx + dw)
    forward = sum(v["forward"] for v in per_net.values())
    backward = sum(v["backward"] for v in per_net.values())
    return {"forward": forward, "backward": backward, "total": forward + backward, "networks": per_net}


def naive_training_flops(calls):
    """The coarse estimate: every call outside no_grad counts 3x its forward, no_grad calls 1x."""
    return sum(2 * c.macs * (1 if c.no_grad else 3) for c in calls)
