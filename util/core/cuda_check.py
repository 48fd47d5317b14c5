"""Whether stock Jittor 1.3.11 can use this machine's GPU, found out before Jittor is imported.

The probes find the ``nvcc`` and cuDNN that Jittor would pick (they repeat
Jittor's own search, see ``jittor/compiler.py`` and
``jittor/compile_extern.py``), the driver's CUDA version and each GPU's
compute capability, through the CUDA driver library (ctypes, no toolkit
needed); ``cuda_problem`` turns these facts into one paragraph that says what
is wrong and what to do, or None. The limits are those of stock Jittor
1.3.11: no CUDA 13 or newer, cuDNN 8 only, GPUs up to compute capability 9.0.
A Jittor build modified for newer CUDA can skip the check with the
environment variable ``SKIP_JITTOR_CUDA_CHECK=1``. Pure Python, no Jittor.
"""

import ctypes
import dataclasses
import importlib.util
import json
import os
import platform
import re
import shutil
import subprocess

SKIP_CHECK_VARIABLE = "SKIP_JITTOR_CUDA_CHECK"
INSTALL_CUDA = "python -m jittor_utils.install_cuda"
# The Jittor release whose limits cuda_problem knows; a newer Jittor is not checked.
CHECKED_JITTOR = (1, 3, 11)
# Jittor's CUDA bundles, by the driver's CUDA version (jittor_utils/install_cuda.py, Linux branch).
JITTOR_BUNDLES = (((12, 2), "cuda12.2_cudnn8_linux"), ((11, 2), "cuda11.2_cudnn8_linux"),
                  ((11,), "cuda11.0_cudnn8_linux"), ((10, 2), "cuda10.2_cudnn7_linux"),
                  ((10,), "cuda10.0_cudnn7_linux"))
# Where Jittor looks for nvcc when neither nvcc_path nor its bundle gives one (jittor/compiler.py).
SYSTEM_NVCC = ("nvcc", "/usr/local/cuda/bin/nvcc", "/usr/bin/nvcc", "/opt/cuda/bin/nvcc")
# cuDNN 8 split its library into these; Jittor loads each of them with CUDA 11 or newer (cuDNN 9 has none).
CUDNN8_PARTS = ("libcudnn_ops_infer.so", "libcudnn_ops_train.so", "libcudnn_cnn_infer.so", "libcudnn_cnn_train.so")
CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75
CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76


# -- probes of the machine ----------------------------------------------------------------------------------

def cuda_driver():
    """The CUDA driver library, initialised (cuInit), or None when there is no usable driver."""
    for name in ("libcuda.so.1", "libcuda.so"):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        try:
            return lib if lib.cuInit(0) == 0 else None
        except AttributeError:
            return None
    return None


def count_cuda_devices():
    """Number of CUDA devices the driver reports (0 when there is no usable driver)."""
    lib = cuda_driver()
    count = ctypes.c_int(0)
    if lib is None or lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return 0
    return int(count.value)


def driver_version():
    """The newest CUDA version the driver supports as cuDriverGetVersion gives it (12020 = 12.2), or None."""
    lib = cuda_driver()
    version = ctypes.c_int(0)
    if lib is None or lib.cuDriverGetVersion(ctypes.byref(version)) != 0:
        return None
    return int(version.value)


def gpu_capabilities():
    """(major, minor) compute capability of every GPU this process sees (CUDA_VISIBLE_DEVICES applies)."""
    lib = cuda_driver()
    found = []
    for index in range(count_cuda_devices()):
        device, major, minor = ctypes.c_int(0), ctypes.c_int(0), ctypes.c_int(0)
        if lib.cuDeviceGet(ctypes.byref(device), index) != 0 or \
                lib.cuDeviceGetAttribute(ctypes.byref(major), CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR,
                                         device) != 0 or \
                lib.cuDeviceGetAttribute(ctypes.byref(minor), CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR,
                                         device) != 0:
            continue
        found.append((int(major.value), int(minor.value)))
    return tuple(found)


def parse_nvcc_version(text):
    """The version in ``nvcc --version`` output as a tuple of ints ((13, 0, 88)), or None.

    The same rule as Jittor's (jittor_utils.get_version): the last a.b.c in the text, else the last a.b.
    """
    found = re.findall(r"[0-9]+\.[0-9]+\.[0-9]+", text) or re.findall(r"[0-9]+\.[0-9]+", text)
    return tuple(int(part) for part in found[-1].split(".")) if found else None


def nvcc_version(nvcc):
    """The version of the compiler ``nvcc`` (a path or a name on PATH), or None when it does not run."""
    try:
        result = subprocess.run([nvcc, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_nvcc_version(result.stdout + result.stderr) if result.returncode == 0 else None


def jittor_home():
    """Jittor's home folder (jittor_utils.home) without creating anything: $JITTOR_HOME, else the
    JITTOR_HOME of ~/.cache/jittor/config.json, else the user's home."""
    if "JITTOR_HOME" in os.environ:
        return os.path.abspath(os.environ["JITTOR_HOME"])
    try:
        with open(os.path.join(os.path.expanduser("~"), ".cache", "jittor", "config.json")) as f:
            home = json.load(f).get("JITTOR_HOME")
    except (OSError, ValueError, AttributeError):
        home = None
    return os.path.abspath(home or os.path.expanduser("~"))


def bundle_folder():
    """The folder of Jittor's downloaded CUDA bundles (present or not)."""
    return os.path.join(jittor_home(), ".cache", "jittor", "jtcuda")


def bundle_name(driver_cuda):
    """The bundle Jittor's install_cuda takes for a driver of CUDA version ``driver_cuda`` ((13, 0)), or None."""
    for needed, name in JITTOR_BUNDLES:
        if tuple(driver_cuda) >= needed:
            return name
    return None


def bundle_cuda_version(name):
    """(12, 2) for 'cuda12.2_cudnn8_linux'."""
    match = re.match(r"cuda([0-9]+)\.([0-9]+)_", name)
    return (int(match.group(1)), int(match.group(2))) if match else None


def driver_cuda_for_bundle(driver):
    """The CUDA version install_cuda chooses its bundle by: $JTCUDA_VERSION if set, else the driver's."""
    if os.environ.get("JTCUDA_VERSION"):
        try:
            return tuple(int(part) for part in os.environ["JTCUDA_VERSION"].split("."))
        except ValueError:
            pass
    return None if driver is None else (driver // 1000, driver % 1000 // 10)


def system_nvcc():
    """(path, version) of the first of PATH's nvcc, /usr/local/cuda/bin/nvcc, /usr/bin/nvcc and
    /opt/cuda/bin/nvcc that runs (Jittor skips one whose version it cannot read), or (None, None)."""
    for candidate in SYSTEM_NVCC:
        path = shutil.which(candidate)
        if path:
            version = nvcc_version(path)
            if version:
                return path, version
    return None, None


def choose_nvcc(env_nvcc, bundle_nvcc, found_nvcc):
    """Pure: (path, source) of the nvcc Jittor 1.3.11 uses (jittor/compiler.py, after the import of jittor_utils).

    ``env_nvcc``: the value of $nvcc_path (None when unset), which always wins, "" meaning no CUDA;
    ``bundle_nvcc``: the bundle's nvcc when the bundle folder exists and nvidia-smi works (Jittor then
    takes it, downloading it first if needed), else None; ``found_nvcc``: the result of ``system_nvcc``.
    When there is none of these Jittor downloads its bundle: source "download".
    """
    if env_nvcc is not None:
        return env_nvcc, "nvcc_path"
    if bundle_nvcc:
        return bundle_nvcc, "bundle"
    if found_nvcc:
        return found_nvcc, "system"
    return None, "download"


def cuda_folders(nvcc):
    """(bin, include, lib) folders Jittor derives from ``nvcc`` (compiler.py, check_cuda): symbolic links
    resolved, include and lib64 beside bin, /usr/lib/x86_64-linux-gnu for the distribution's /usr/bin/nvcc."""
    path = os.path.abspath(nvcc)
    while os.path.islink(path):
        path = os.path.realpath(path)
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        path = os.path.realpath(shutil.which(nvcc) or path)
    folder = os.path.dirname(path)
    lib = os.path.abspath(os.path.join(folder, "..", "lib64"))
    if nvcc == "/usr/bin/nvcc":
        lib = "/usr/lib/x86_64-linux-gnu"
    return folder, os.path.abspath(os.path.join(folder, "..", "include")), lib


def search_file(folders, name, prefer_version=()):
    """The first of folder/name.<prefer_version...> (longest first) that is a file, as Jittor's search_file."""
    for folder in folders:
        for i in range(len(prefer_version), -1, -1):
            path = ".".join((os.path.join(folder, name),) + tuple(prefer_version[:i]))
            if os.path.isfile(path):
                return path
    return None


def cudnn_header_major(header):
    """CUDNN_MAJOR of the cudnn.h at ``header`` (from cudnn_version.h beside it, cuDNN 8 and newer), or None."""
    for path in (os.path.join(os.path.dirname(header), "cudnn_version.h"), header):
        try:
            with open(path, errors="replace") as f:
                match = re.search(r"#define\s+CUDNN_MAJOR\s+([0-9]+)", f.read())
        except OSError:
            continue
        if match:
            return int(match.group(1))
    return None


def library_major(library):
    """The major version in the file name a libcudnn.so resolves to (libcudnn.so.9.1.0 -> 9), or None."""
    match = re.search(r"\.so\.([0-9]+)", os.path.basename(os.path.realpath(library)))
    return int(match.group(1)) if match else None


def cudnn_facts(nvcc, version):
    """cuDNN where Jittor looks for it (compile_extern.py, setup_cuda_lib), as CudaFacts fields."""
    cuda_bin, include, lib = cuda_folders(nvcc)
    arch = "x86_64" if platform.machine() in ("x86_64", "AMD64") else "aarch64"
    headers = [include, os.path.abspath(os.path.join(include, "..", f"targets/{arch}-linux/include")), "/usr/include"]
    libraries = [cuda_bin, lib, os.path.abspath(os.path.join(lib, "..", f"targets/{arch}-linux/lib")),
                 f"/usr/lib/{arch}-linux-gnu", "/usr/lib"]
    prefer = ("8",) if version[0] == 11 else ()
    header = search_file(headers, "cudnn.h")
    library = search_file(libraries, "libcudnn.so", prefer)
    parts = version < (11,) or all(search_file(libraries, name, prefer) for name in CUDNN8_PARTS)
    return dict(cudnn_header=header, cudnn_header_major=cudnn_header_major(header) if header else None,
                cudnn_library=library, cudnn_library_major=library_major(library) if library else None,
                cudnn8_parts=parts, cudnn_header_folders=tuple(dict.fromkeys(headers)),
                cudnn_library_folders=tuple(dict.fromkeys(libraries)))


def jittor_version():
    """The version of the Jittor ``import jittor`` would load, read from its __init__.py without importing
    it, or None when unknown."""
    try:
        spec = importlib.util.find_spec("jittor")
        with open(spec.origin, errors="replace") as f:
            match = re.search(r"^__version__\s*=\s*['\"]([0-9.]+)['\"]", f.read(), re.MULTILINE)
        return tuple(int(part) for part in match.group(1).split(".")) if match else None
    except Exception:  # not installed, unreadable, or an import hook that refuses to look
        return None


@dataclasses.dataclass(frozen=True)
class CudaFacts:
    """What decides whether Jittor 1.3.11 can use the GPU (see probe_cuda_facts)."""

    driver_version: int | None = None      # cuDriverGetVersion: 12020 = a driver for CUDA 12.2
    capabilities: tuple = ()               # (major, minor) per visible GPU
    nvcc: str | None = None                # the nvcc Jittor would use (choose_nvcc)
    nvcc_source: str = "download"          # "nvcc_path", "bundle", "system" or "download" (choose_nvcc)
    nvcc_version: tuple | None = None      # its version; a bundle's from its name
    bundle_installed: bool = False         # Jittor's bundle folder (~/.cache/jittor/jtcuda) exists
    bundle_nvcc: str | None = None         # the nvcc of the bundle install_cuda would take for this driver
    nvidia_smi: bool = True                # nvidia-smi runs (Jittor reads the driver's version with it)
    cudart: str | None = None              # the libcudart.so Jittor loads (next to nvcc)
    cudart_found: bool = True
    cudnn_needed: bool = False             # Jittor will load cuDNN from a toolkit that is not its bundle
    cudnn_header: str | None = None
    cudnn_header_major: int | None = None
    cudnn_library: str | None = None
    cudnn_library_major: int | None = None
    cudnn8_parts: bool = True              # cuDNN 8's libcudnn_{ops,cnn}_{infer,train}.so found (CUDA >= 11)
    cudnn_header_folders: tuple = ()       # where Jittor looks for cudnn.h
    cudnn_library_folders: tuple = ()      # where Jittor looks for libcudnn*.so


def probe_cuda_facts():
    """CudaFacts of this machine: the driver, the GPUs and the CUDA toolkit and cuDNN Jittor would use."""
    driver = driver_version()
    env_nvcc = os.environ.get("nvcc_path")
    nvidia_smi = shutil.which("nvidia-smi") is not None
    installed = os.path.isdir(bundle_folder())
    driver_cuda = driver_cuda_for_bundle(driver)
    name = bundle_name(driver_cuda) if driver_cuda else None
    bundle_nvcc = os.path.join(bundle_folder(), name, "bin", "nvcc") if name else None
    bundle = bundle_nvcc if installed and nvidia_smi else None  # install_cuda gives it to Jittor
    found, found_version = (None, None) if env_nvcc is not None or bundle else system_nvcc()
    nvcc, source = choose_nvcc(env_nvcc, bundle, found)
    facts = dict(driver_version=driver, capabilities=gpu_capabilities(), nvcc=nvcc, nvcc_source=source,
                 bundle_installed=installed, bundle_nvcc=bundle_nvcc, nvidia_smi=nvidia_smi)
    if source in ("bundle", "download"):
        facts["nvcc_version"] = bundle_cuda_version(name) if name else None
        return CudaFacts(**facts)
    version = found_version if source == "system" else (nvcc_version(nvcc) if nvcc else None)
    facts["nvcc_version"] = version
    if version:
        cudart = os.path.join(cuda_folders(nvcc)[2], "libcudart.so")
        facts.update(cudart=cudart, cudart_found=os.path.isfile(cudart))
        if os.environ.get("conv_opt", "0").strip() in ("", "0"):  # conv_opt=1: Jittor loads no cuDNN
            facts.update(cudnn_needed=True, **cudnn_facts(nvcc, version))
    return CudaFacts(**facts)


# -- decisions ------------------------------------------------------------------------------------------------

def jittor_max_arch(version):
    """The newest GPU architecture Jittor 1.3.11 compiles for with a CUDA ``version`` compiler (compiler.py):
    newer GPUs get code for this architecture."""
    if version is None or tuple(version) >= (11, 8):
        return 90
    if tuple(version) >= (11, 1):
        return 86
    return 80 if tuple(version) >= (11,) else 75


def runs_on(built, capability):
    """Whether code built for sm_<built> runs on a GPU of ``capability``: same major, minor not newer."""
    major, minor = capability
    return built // 10 == major and built % 10 <= minor


def _version(version):
    return ".".join(str(part) for part in version[:2])


def cudnn_reason(facts):
    """Pure: why the cuDNN in ``facts`` cannot serve Jittor 1.3.11, or None."""
    majors = [m for m in (facts.cudnn_header_major, facts.cudnn_library_major) if m is not None]
    if any(m >= 9 for m in majors):
        found = ", ".join(p for p in (facts.cudnn_header, facts.cudnn_library) if p)
        return (f"the cuDNN Jittor would use is cuDNN {max(majors)} ({found}), and Jittor 1.3.11 needs cuDNN 8 "
                "(cuDNN 9 has neither the libraries libcudnn_ops_infer.so and libcudnn_cnn_infer.so that Jittor "
                "loads nor all the functions it builds against)")
    if facts.cudnn_header and facts.cudnn_library and facts.cudnn8_parts:
        return None
    if not facts.cudnn_header:
        missing, folders = "cudnn.h", facts.cudnn_header_folders
    else:
        missing = "libcudnn.so" if not facts.cudnn_library else "libcudnn_cnn_infer.so and its sibling libraries"
        folders = facts.cudnn_library_folders
    return (f"Jittor finds no cuDNN 8 where it looks ({missing} is in none of "
            f"{', '.join(folders) or 'the folders beside nvcc'})")


def cuda_problem(facts):
    """Pure: None when Jittor 1.3.11 can build for and run on the GPU described by ``facts`` (CudaFacts),
    else one paragraph saying what is wrong and what to do."""
    reasons, fixes = [], []
    install = (f"run `{INSTALL_CUDA}` once: it downloads CUDA 12.2 with cuDNN 8 into Jittor's cache "
               "(~/.cache/jittor/jtcuda; it needs a driver for CUDA 12.2 or newer and nvidia-smi), and Jittor "
               "then uses it in preference to the system's CUDA")
    driver = facts.driver_version
    driver_cuda = None if driver is None else (driver // 1000, driver % 1000 // 10)
    toolkit = facts.nvcc_version
    own_toolkit = facts.nvcc_source in ("nvcc_path", "system") and toolkit is not None
    if driver_cuda is not None:
        if own_toolkit and toolkit[0] > driver_cuda[0]:
            reasons.append(f"the NVIDIA driver supports CUDA up to {_version(driver_cuda)}, older than the "
                           f"CUDA {_version(toolkit)} of {facts.nvcc}")
            fixes.append("Update the NVIDIA driver.")
        elif not own_toolkit and driver_cuda < (12, 2):
            reasons.append(f"the NVIDIA driver supports CUDA up to {_version(driver_cuda)}, and this project "
                           "needs a driver for CUDA 12.2 or newer (the CUDA of Jittor's own bundle)")
            fixes.append("Update the NVIDIA driver (for CUDA 12.2: version 535 or newer).")
    newest = jittor_max_arch(toolkit)
    for index, capability in enumerate(facts.capabilities):
        arch = capability[0] * 10 + capability[1]
        if arch > newest and not runs_on(newest, capability):
            compiler = f" with the CUDA {_version(toolkit)} compiler" if newest < 90 else ""
            reasons.append(f"GPU {index} has compute capability {capability[0]}.{capability[1]} (sm_{arch}), "
                           f"and Jittor 1.3.11 compiles for sm_{newest} at most{compiler}, code that does not "
                           "run on that GPU")
            fixes.append(f"Use a CUDA 11.8 or newer toolkit: {install}." if newest < 90
                         else "Jittor 1.3.11 cannot use this GPU: use a GPU of compute capability 9.0 or lower "
                              "(CUDA_VISIBLE_DEVICES selects GPUs) or the CPU.")
    if facts.nvcc_source == "nvcc_path" and not facts.nvcc:
        reasons.append("the environment variable nvcc_path is set but empty, which makes Jittor build "
                       "without CUDA")
        fixes.append("Unset nvcc_path.")
    elif facts.nvcc_source == "nvcc_path" and toolkit is None:
        reasons.append(f"the environment variable nvcc_path is {facts.nvcc}, which does not run "
                       "(`nvcc --version` fails)")
        fixes.append(f"Point nvcc_path at the nvcc of a CUDA 12.x toolkit, or unset it and {install}.")
    elif own_toolkit and toolkit[0] > 12:
        where = ("set by nvcc_path" if facts.nvcc_source == "nvcc_path"
                 else "the first found on PATH, in /usr/local/cuda/bin, /usr/bin or /opt/cuda/bin")
        reasons.append(f"the nvcc Jittor would use, {facts.nvcc} ({where}), is CUDA {_version(toolkit)}, and "
                       "Jittor 1.3.11 does not build with CUDA 13 or newer")
        if facts.nvcc_source == "nvcc_path":
            fixes.append("Unset nvcc_path (or point it at the nvcc of a CUDA 12.x toolkit)" +
                         ("." if facts.bundle_installed else f", and {install}."))
        elif facts.bundle_installed and not facts.nvidia_smi:
            fixes.append("Jittor's bundle is installed, but Jittor takes it only when nvidia-smi runs: put "
                         f"nvidia-smi on PATH or set nvcc_path={facts.bundle_nvcc}.")
        else:
            fixes.append(install[0].upper() + install[1:] + ".")
    elif facts.nvcc_source == "download" and not facts.nvidia_smi:
        reasons.append("no CUDA compiler (nvcc) was found on PATH, in /usr/local/cuda/bin, /usr/bin or "
                       "/opt/cuda/bin, and Jittor downloads its own only when nvidia-smi runs")
        fixes.append(f"Install a CUDA 12.x toolkit with cuDNN 8, or put nvidia-smi on PATH and {install}.")
    if own_toolkit and toolkit[0] <= 12 and not facts.cudart_found:
        reasons.append(f"Jittor loads the CUDA runtime from beside nvcc ({facts.nvcc}), and {facts.cudart} "
                       "does not exist")
        fixes.append("Set nvcc_path to the nvcc inside the CUDA toolkit's folder (e.g. /usr/local/cuda/bin/nvcc), "
                     f"or {install}.")
    # a toolkit that cannot be kept anyway (CUDA 13) is not examined further: the bundle replaces it all
    cudnn = cudnn_reason(facts) if own_toolkit and toolkit[0] <= 12 and facts.cudnn_needed else None
    if cudnn:
        reasons.append(cudnn)
        fixes.append(f"Install cuDNN 8 for CUDA {_version(toolkit)} there, or {install}.")
    if not reasons:
        return None
    return "Jittor 1.3.11 cannot use the GPU here: " + "; ".join(reasons) + ". " + " ".join(dict.fromkeys(fixes))


def jittor_cuda_problem():
    """The paragraph of ``cuda_problem`` for this machine, or None (also when the check is switched off with
    $SKIP_JITTOR_CUDA_CHECK or the Jittor to be imported is newer than the one whose limits it knows)."""
    if os.environ.get(SKIP_CHECK_VARIABLE, "0") not in ("", "0"):
        return None
    version = jittor_version()
    if version is not None and version[:3] > CHECKED_JITTOR:
        return None
    return cuda_problem(probe_cuda_facts())
