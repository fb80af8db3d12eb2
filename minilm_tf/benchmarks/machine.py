"""The machine a benchmark runs on: CPU, load average and memory high-water marks."""

import os
import platform
import re
import resource

import tensorflow as tf

# CPU features that decide the bfloat16 / matmul paths.
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni",
             "amx_bf16", "amx_tile", "amx_int8")

# The largest VmHWM seen before `reset_peak_rss` cleared it, in MB.
_PEAK_SEEN_MB = 0.0


def machine_info() -> dict:
    """Platform, Python, CPU count, model and the CPU_FLAGS present, affinity."""
    info = {"platform": platform.platform(), "python": platform.python_version(),
            "cpu_count": os.cpu_count()}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            text = f.read()
        model = re.search(r"^model name\s*:\s*(.*)$", text, re.M)
        flags_line = re.search(r"^flags\s*:\s*(.*)$", text, re.M)
        present = set(flags_line.group(1).split()) if flags_line else set()
        info["cpu_model"] = model.group(1).strip() if model else None
        info["cpu_flags"] = {name: name in present for name in CPU_FLAGS}
    except OSError:
        pass
    try:
        info["sched_affinity"] = len(os.sched_getaffinity(0))
    except AttributeError:
        pass
    return info


def load_average() -> list:
    """The 1, 5 and 15 minute load averages (empty where unavailable)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def maxrss_mb() -> float:
    """Process RSS high-water mark since start, in MB.

    getrusage's ru_maxrss (KiB on Linux) follows the kernel's VmHWM, which
    `reset_peak_rss` clears; the largest value seen before each reset is kept.
    """
    current = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return max(_PEAK_SEEN_MB, current, _status_mb("VmHWM") or 0.0)


def rss_high_water_mb() -> float | None:
    """The kernel's VmHWM in MB: the peak RSS since the last `reset_peak_rss`."""
    return _status_mb("VmHWM")


def _status_mb(field: str) -> float | None:
    try:
        with open("/proc/self/status", encoding="utf-8") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def reset_peak_rss() -> bool:
    """Resets VmHWM (Linux >= 4.0: `echo 5 > /proc/self/clear_refs`)."""
    global _PEAK_SEEN_MB
    _PEAK_SEEN_MB = maxrss_mb()
    try:
        with open("/proc/self/clear_refs", "w", encoding="utf-8") as f:
            f.write("5")
        return True
    except OSError:
        return False


def tf_memory_info() -> dict | str:
    """TensorFlow's allocator statistics for CPU:0 in MB, or why there are none."""
    try:
        info = tf.config.experimental.get_memory_info("CPU:0")
        return {k: round(v / 2**20, 1) for k, v in info.items()}
    except Exception as e:  # CPU allocators usually do not keep statistics.
        return f"unavailable ({type(e).__name__})"
