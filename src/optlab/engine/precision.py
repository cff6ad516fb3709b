"""bf16 where the hardware has it (``train.precision``): whether a device computes bfloat16
natively, the refusal of bf16 on one that does not (unless forced), and the forward a step
and an eval run under it.

bf16 is ``torch.autocast`` with dtype bfloat16 around the model's forward: the ops on
autocast's lower-precision list (matmul, baddbmm, linear, conv, attention) read bfloat16
copies of their float32 inputs and write bfloat16, and the ops after them follow their
inputs' dtype, except those autocast keeps in float32. The outputs come back as float32, so
the loss, the gradients of the parameters, the parameters and the optimizer's state are all
float32. A CPU computes bfloat16 natively with AMX (Intel Sapphire Rapids and later) or
AVX512-BF16 (Cooper Lake, AMD Zen 4), an Arm one with its BF16 extension; elsewhere each
product converts to float32 and back, slower than float32 itself. A CUDA device does from
compute capability 8 (Ampere) on.
"""

from __future__ import annotations

import platform
from pathlib import Path

import torch
from torch import Tensor

from optlab.config import RunSpec
from optlab.models import Model

# CPU features (``torch.cpu.get_capabilities``) that compute bfloat16 products natively
NATIVE_BF16_CPU = ("amx_bf16", "avx512_bf16", "bf16", "sve_bf16")


def cpu_name() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), else what the platform says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 matmuls natively (not emulated in float32)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    capabilities = torch.cpu.get_capabilities()
    return any(capabilities.get(name, False) for name in NATIVE_BF16_CPU)


def bf16_support(device: torch.device) -> str:
    """The device's name and how it computes bfloat16, in words (a refusal, the bench)."""
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return "no CUDA device"
        major, minor = torch.cuda.get_device_capability(device)
        native = "native bf16" if native_bf16(device) else "bf16 emulated"
        return f"{torch.cuda.get_device_name(device)}, compute capability {major}.{minor}: {native}"
    capabilities = torch.cpu.get_capabilities()
    found = [name for name in NATIVE_BF16_CPU if capabilities.get(name, False)]
    x86 = capabilities.get("architecture") == "x86_64"
    lacking = "no AMX, no AVX512-BF16" if x86 else "no BF16 extension"
    return f"{cpu_name()}: " + (f"native bf16 ({', '.join(found)})" if found else lacking)


def check_precision(spec: RunSpec, device: torch.device) -> None:
    """A ``ValueError`` with one line where ``spec`` asks for bf16 on a device that lacks it
    natively and does not force it."""
    t = spec.train
    if t.precision == "bf16" and not t.force_precision and not native_bf16(device):
        raise ValueError(
            f"train.precision: 'bf16' has no native support on this {device.type} "
            f"({bf16_support(device)}) and runs emulated, slower than 'fp32'; use 'fp32', "
            "or set train.force_precision = true to train in bf16 anyway"
        )


def model_outputs(model: Model, state: dict[str, Tensor], x: Tensor, precision: str) -> Tensor:
    """The model's outputs on x: with bf16, its forward under autocast and the outputs back
    in float32, so that the loss and everything after it are float32."""
    if precision == "fp32":
        return model.forward(state, x)
    with torch.autocast(x.device.type, dtype=torch.bfloat16):
        outputs = model.forward(state, x)
    return outputs.float()
