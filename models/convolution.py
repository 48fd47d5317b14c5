"""Convolutions on the CPU through oneDNN, with the layouts and algorithms chosen here.

Jittor hands oneDNN every CPU convolution with the format left to oneDNN
(``any``); with oneDNN 2.2 on AVX-512 its forward pass then runs in NHWC and
reorders the NCHW tensors in and out with generic, slow reorders, and the
backward passes always use the direct algorithm. This module calls oneDNN
itself (the library Jittor already ships) with channel-blocked layouts
(nChw16c on AVX-512, nChw8c on AVX2), the bias added and its gradient summed
inside oneDNN, and for 3x3 stride-1 convolutions of at least 16 input channels
oneDNN's Winograd F(4x4, 3x3) algorithm where the CPU has it (AVX-512) and the
batch's feature maps are large enough for it to pay. Each pass takes the first of these
that oneDNN implements with a JIT kernel, else oneDNN's own choice of layout.

``conv2d`` is the one convolution every network of the project calls: on the
CPU it runs these kernels, with the GPU (or ``set_cpu_conv("jittor")``) Jittor's.
Winograd's results differ from the direct algorithm's by rounding (relative
differences of about 1e-6 of the output's scale); ``set_cpu_conv("direct")``
keeps the direct algorithm everywhere.
"""

import os

import jittor as jt
from jittor import nn

from util.core import isa
from util.core.device import CPU_CONV_MODES, DEFAULT_CPU_CONV

_mode = {"cpu": DEFAULT_CPU_CONV}

# Winograd transforms the weights at every call: below about 2048 output pixels per batch
# (batch x height x width) that costs more than it saves (2x1024x6x8: 249 ms against 107 ms
# forward + backward; 2x256x36x48: 55 against 75).
WINOGRAD_MIN_OUTPUT_PIXELS = 2048


def set_cpu_conv(mode):
    """Choose the CPU convolution kernels: ``winograd`` (default), ``direct`` or ``jittor``."""
    if mode not in CPU_CONV_MODES:
        raise ValueError(f"cpu conv mode must be one of {', '.join(CPU_CONV_MODES)}, not {mode!r}")
    _mode["cpu"] = mode


_HEADER = r"""
#include <dnnl.hpp>
#include <cstring>
#include <vector>
#include <unordered_map>
#include <stdexcept>
namespace landscape_conv {
using namespace dnnl;
using tag = memory::format_tag;
using dt = memory::data_type;

struct Problem {
    memory::dims x, w, y, stride, dilation, pad;
};

inline engine& cpu_engine() { static engine e(engine::kind::cpu, 0); return e; }
inline stream& cpu_stream() { static stream s(cpu_engine()); return s; }

inline Problem problem(int n, int ic, int ih, int iw, int oc, int kh, int kw, int oh, int ow,
                       int sh, int sw, int ph, int pw, int dh, int dw) {
    return Problem{{n, ic, ih, iw}, {oc, ic, kh, kw}, {n, oc, oh, ow}, {sh, sw}, {dh - 1, dw - 1}, {ph, pw}};
}

// Candidates in order: 0 Winograd (blocked 16), 1 direct blocked 16, 2 direct blocked 8, 3 oneDNN's choice.
struct Candidate { algorithm alg; memory::desc x, w, y; };

inline bool candidate(const Problem& p, int c, bool allow_winograd, Candidate& out) {
    auto ic = p.x[1];
    if (c == 0) {
        if (!allow_winograd || p.w[2] != 3 || p.w[3] != 3 || p.stride[0] != 1 || p.stride[1] != 1
            || p.dilation[0] != 0 || p.dilation[1] != 0 || ic < 16) return false;
        out = {algorithm::convolution_winograd, memory::desc(p.x, dt::f32, tag::nChw16c),
               memory::desc(p.w, dt::f32, tag::any), memory::desc(p.y, dt::f32, tag::nChw16c)};
        return true;
    }
    if (c == 1 || c == 2) {
        int b = c == 1 ? 16 : 8;
        tag blocked = c == 1 ? tag::nChw16c : tag::nChw8c;
        out = {algorithm::convolution_direct, memory::desc(p.x, dt::f32, ic % b == 0 ? blocked : tag::nchw),
               memory::desc(p.w, dt::f32, tag::any), memory::desc(p.y, dt::f32, blocked)};
        return true;
    }
    out = {algorithm::convolution_direct, memory::desc(p.x, dt::f32, tag::any),
           memory::desc(p.w, dt::f32, tag::any), memory::desc(p.y, dt::f32, tag::any)};
    return true;
}

inline bool good_impl(const char* impl, int c) {
    if (c == 3) return true;
    if (!strncmp(impl, "ref", 3)) return false;
    if (c == 1) return strstr(impl, "avx512") != nullptr;
    return strstr(impl, "jit") != nullptr;
}

inline convolution_forward::primitive_desc forward_pd(const Problem& p, const Candidate& k, bool bias) {
    memory::desc b({p.y[1]}, dt::f32, tag::x);
    auto d = bias ? convolution_forward::desc(prop_kind::forward_training, k.alg, k.x, k.w, b, k.y,
                                              p.stride, p.dilation, p.pad, p.pad)
                  : convolution_forward::desc(prop_kind::forward_training, k.alg, k.x, k.w, k.y,
                                              p.stride, p.dilation, p.pad, p.pad);
    return convolution_forward::primitive_desc(d, cpu_engine());
}

typedef std::vector<std::pair<primitive, std::unordered_map<int, memory>>> Net;

inline memory into(const memory& user, const memory::desc& want, Net& net) {
    if (want == user.get_desc()) return user;
    memory m(want, cpu_engine());
    net.push_back({reorder(user, m), {{DNNL_ARG_FROM, user}, {DNNL_ARG_TO, m}}});
    return m;
}

inline memory own(const memory& user, const memory::desc& want) {
    return want == user.get_desc() ? user : memory(want, cpu_engine());
}

inline void back_into(const memory& mine, const memory& user, Net& net) {
    if (mine != user) net.push_back({reorder(mine, user), {{DNNL_ARG_FROM, mine}, {DNNL_ARG_TO, user}}});
}

// Passes: FORWARD y = conv(x, w) (+ bias); BACKWARD_DATA dx from dy and w;
// BACKWARD_WEIGHTS dw (and dbias when bias is not null) from x and dy.
enum Pass { FORWARD = 0, BACKWARD_DATA = 1, BACKWARD_WEIGHTS = 2 };

inline void convolution(Pass pass, const Problem& p, bool allow_winograd,
                        float* x, float* w, float* y, float* bias) {
    auto& eng = cpu_engine();
    memory ux({p.x, dt::f32, tag::nchw}, eng, x), uw({p.w, dt::f32, tag::oihw}, eng, w),
           uy({p.y, dt::f32, tag::nchw}, eng, y);
    bool with_bias = bias != nullptr && pass != BACKWARD_DATA;
    for (int c = 0; c < 4; c++) {
        Candidate k;
        if (!candidate(p, c, allow_winograd, k)) continue;
        try {
            Net net;
            auto fpd = forward_pd(p, k, with_bias);
            if (pass == FORWARD) {
                if (!good_impl(fpd.impl_info_str(), c)) continue;
                auto mx = into(ux, fpd.src_desc(), net), mw = into(uw, fpd.weights_desc(), net);
                auto my = own(uy, fpd.dst_desc());
                std::unordered_map<int, memory> args{{DNNL_ARG_SRC, mx}, {DNNL_ARG_WEIGHTS, mw}, {DNNL_ARG_DST, my}};
                if (with_bias) args.insert({DNNL_ARG_BIAS, memory(fpd.bias_desc(), eng, bias)});
                net.push_back({convolution_forward(fpd), args});
                back_into(my, uy, net);
            } else if (pass == BACKWARD_DATA) {
                auto d = convolution_backward_data::desc(k.alg, k.x, k.w, k.y, p.stride, p.dilation, p.pad, p.pad);
                auto pd = convolution_backward_data::primitive_desc(d, eng, fpd);
                if (!good_impl(pd.impl_info_str(), c)) continue;
                auto mdy = into(uy, pd.diff_dst_desc(), net), mw = into(uw, pd.weights_desc(), net);
                auto mdx = own(ux, pd.diff_src_desc());
                net.push_back({convolution_backward_data(pd),
                               {{DNNL_ARG_DIFF_DST, mdy}, {DNNL_ARG_WEIGHTS, mw}, {DNNL_ARG_DIFF_SRC, mdx}}});
                back_into(mdx, ux, net);
            } else {
                memory::desc b({p.y[1]}, dt::f32, tag::x);
                auto d = with_bias
                    ? convolution_backward_weights::desc(k.alg, k.x, k.w, b, k.y, p.stride, p.dilation, p.pad, p.pad)
                    : convolution_backward_weights::desc(k.alg, k.x, k.w, k.y, p.stride, p.dilation, p.pad, p.pad);
                auto pd = convolution_backward_weights::primitive_desc(d, eng, fpd);
                if (!good_impl(pd.impl_info_str(), c)) continue;
                auto mx = into(ux, pd.src_desc(), net), mdy = into(uy, pd.diff_dst_desc(), net);
                auto mdw = own(uw, pd.diff_weights_desc());
                std::unordered_map<int, memory> args{{DNNL_ARG_SRC, mx}, {DNNL_ARG_DIFF_DST, mdy},
                                                     {DNNL_ARG_DIFF_WEIGHTS, mdw}};
                if (with_bias) args.insert({DNNL_ARG_DIFF_BIAS, memory(pd.diff_bias_desc(), eng, bias)});
                net.push_back({convolution_backward_weights(pd), args});
                back_into(mdw, uw, net);
            }
            for (auto& step : net) step.first.execute(cpu_stream(), step.second);
            cpu_stream().wait();
            return;
        } catch (const dnnl::error&) {
            continue;
        }
    }
    throw std::runtime_error("oneDNN implements no convolution for this problem");
}
}  // namespace landscape_conv
"""

# One source per pass; data: the geometry. Inputs and outputs per pass (bias only with a bias):
# forward [x, w, bias] -> [y]; backward data [dy, w] -> [dx]; backward weights [x, dy] -> [dw, dbias].
_SOURCES = {  # the calls also mark the passes in Jittor's profiler report (util.metrics.op_profile)
    "forward": "landscape_conv::convolution(landscape_conv::FORWARD, p, winograd, in0_p, in1_p, out0_p, {bias});",
    "backward data": "landscape_conv::convolution(landscape_conv::BACKWARD_DATA, p, winograd, out0_p, in1_p, in0_p, nullptr);",
    "backward weights": "landscape_conv::convolution(landscape_conv::BACKWARD_WEIGHTS, p, winograd, in0_p, out0_p, in1_p, {bias});",
}
_PROBLEM = """
auto p = landscape_conv::problem(data["n"], data["ic"], data["ih"], data["iw"], data["oc"], data["kh"], data["kw"],
                                 data["oh"], data["ow"], data["sh"], data["sw"], data["ph"], data["pw"],
                                 data["dh"], data["dw"]);
bool winograd = data["winograd"] != 0;
"""

_flags = {}


def _compile_flags():
    """Compiler flags for oneDNN's headers and library where Jittor installed them; None without them
    (Jittor run with use_mkl=0): then Jittor's convolutions run."""
    if "options" not in _flags:
        from jittor import compile_extern
        import jittor_utils
        home = os.path.join(jittor_utils.home(), ".cache", "jittor", "mkl")
        found = [name for name in sorted(os.listdir(home)) if name.startswith("dnnl")
                 and os.path.isdir(os.path.join(home, name, "include"))] if os.path.isdir(home) else []
        if getattr(compile_extern, "mkl_ops", None) is None or not found:
            _flags["options"] = None
        else:
            root = os.path.join(home, found[-1])
            _flags["options"] = {f'FLAGS: -I"{root}/include" -L"{root}/lib" -lmkldnn ': 1}
    return _flags["options"]


def winograd_available():
    """Whether oneDNN runs with Winograd kernels here: oneDNN 2.2 has float32 Winograd on AVX-512 only, and asks
    the CPU and DNNL_MAX_CPU_ISA."""
    return isa.onednn_isa().startswith("avx512")


def describe(use_cuda):
    """What computes this process's convolutions, naming the CPU's instruction set as oneDNN and Jittor's
    kernels use it (a line for run summaries and benchmark headers)."""
    if use_cuda:
        return "GPU; convolutions: Jittor's (cuDNN)"
    mode = _mode["cpu"]
    if mode == "jittor" or _compile_flags() is None:
        kernels = "Jittor's oneDNN call"
    elif mode == "winograd" and winograd_available():
        kernels = "oneDNN Winograd where it pays, else direct"
    else:
        kernels = "oneDNN direct" + (" (Winograd needs AVX-512)" if mode == "winograd" else "")
    return f"{isa.process_description()}; convolutions: {kernels}"


def _pass(kind, shapes, inputs, geometry, winograd, bias):
    src = _PROBLEM + _SOURCES[kind].format(bias=bias)
    data = dict(geometry, winograd=int(winograd))
    with jt.flag_scope(compile_options=_compile_flags()):
        return jt.code(shapes, ["float32"] * len(shapes), inputs, cpu_header=_HEADER, cpu_src=src, data=data)


class _Convolution(jt.Function):
    """y = conv(x, w) (+ bias) with its gradients, each pass one oneDNN call."""

    def execute(self, x, w, bias, geometry):
        g = geometry
        self.x, self.w, self.has_bias, self.geometry = x, w, bias is not None, g
        self.winograd = _mode["cpu"] == "winograd" and g["n"] * g["oh"] * g["ow"] >= WINOGRAD_MIN_OUTPUT_PIXELS
        inputs = [x, w] + ([bias] if self.has_bias else [])
        y, = _pass("forward", [(g["n"], g["oc"], g["oh"], g["ow"])], inputs, g, self.winograd,
                   "in2_p" if self.has_bias else "nullptr")
        return y

    def grad(self, dy):
        g = self.geometry
        dx, = _pass("backward data", [(g["n"], g["ic"], g["ih"], g["iw"])], [dy, self.w], g, self.winograd, "")
        shapes = [(g["oc"], g["ic"], g["kh"], g["kw"])] + ([(g["oc"],)] if self.has_bias else [])
        grads = _pass("backward weights", shapes, [self.x, dy], g, self.winograd,
                      "out1_p" if self.has_bias else "nullptr")
        return dx, grads[0], grads[1] if self.has_bias else None, None


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """``jittor.nn.conv2d`` with the CPU kernels above (float32, groups 1, oneDNN present); Jittor's otherwise."""
    if (jt.flags.use_cuda or _mode["cpu"] == "jittor" or groups != 1 or x.dtype != "float32"
            or weight.dtype != "float32" or x.ndim != 4 or (bias is not None and bias.dtype != "float32")
            or _compile_flags() is None):
        return nn.conv2d(x, weight, bias, stride, padding, dilation, groups)
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    n, ic, ih, iw = x.shape
    oc, _, kh, kw = weight.shape
    oh = (ih + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    ow = (iw + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    geometry = dict(n=n, ic=ic, ih=ih, iw=iw, oc=oc, kh=kh, kw=kw, oh=oh, ow=ow,
                    sh=sh, sw=sw, ph=ph, pw=pw, dh=dh, dw=dw)
    return _Convolution.apply(x, weight, bias, geometry)


class Conv2d(nn.Conv2d):
    """``jittor.nn.Conv2d`` (same parameters, same checkpoints) computed by ``conv2d``."""

    def execute(self, x):
        return conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
