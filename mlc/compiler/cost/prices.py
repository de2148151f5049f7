"""mlc's default price list (USD per hour, on demand), used where ml.yaml sets none.

Round numbers near Google Cloud's published on-demand prices for us-central1 (Compute
Engine N2 custom machine types for CPU and memory, and its GPU price list), as read in 2025;
docs/cost.md says so, and how to set a project's or an environment's own prices.
"""

from __future__ import annotations

CPU_CORE_HOUR = 0.032
MEMORY_GIB_HOUR = 0.0043
# Per whole GPU, keyed by the `nvidia.com/gpu.product` label value that `gpu.type` names.
GPU_HOUR = {
    "NVIDIA-A100-SXM4-40GB": 2.90,
    "NVIDIA-A100-SXM4-80GB": 3.90,
    "NVIDIA-H100-80GB-HBM3": 11.00,
    "NVIDIA-L4": 0.56,
    "Tesla-T4": 0.35,
    "Tesla-V100-SXM2-16GB": 2.50,
}
SPOT_DISCOUNT = 0.6  # spot capacity costs 40% of on demand
