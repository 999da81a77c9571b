"""State-space building blocks: selective scans (Mamba-1, Mamba-2/SSD) and the Mamba mixers and blocks."""

from vtc.ssm.dispatch import BACKENDS
from vtc.ssm.mamba import BiMamba, Mamba, Mamba2, MambaBlock, MambaState, MixerOutput, RMSNorm
from vtc.ssm.scan import cuda_kernel_available, selective_scan, ssd_scan

__all__ = [
    "BACKENDS",
    "BiMamba",
    "Mamba",
    "Mamba2",
    "MambaBlock",
    "MambaState",
    "MixerOutput",
    "RMSNorm",
    "cuda_kernel_available",
    "selective_scan",
    "ssd_scan",
]
