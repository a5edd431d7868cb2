"""The worker's allocator tuning: strip-sized arrays freed in one thread are reused by the
next strip in any thread, instead of being mapped (and zeroed by the kernel) afresh."""

import subprocess
import sys
import textwrap

import pytest

PROBE = textwrap.dedent("""
    import resource, sys, threading
    import numpy as np
    from worker.cli import tune_allocator

    if sys.argv[1] == "tuned":
        tune_allocator()
    faults = []

    def strips():
        # like a strip's bands and products: 45 MB float32 and 67 MB uint16, made and freed
        a = np.ones(11_000_000, np.float32); b = np.ones(33_000_000, np.uint16); del a, b
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(5):
            a = np.ones(11_000_000, np.float32); b = np.ones(33_000_000, np.uint16); del a, b
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)

    for _ in range(2):  # two threads one after the other, as the product threads run
        thread = threading.Thread(target=strips)
        thread.start()
        thread.join()
    print(max(faults))
""")


def _faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], check=True, capture_output=True,
                         text=True).stdout
    return int(out.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_threads_reuse_freed_strips_instead_of_faulting_in_fresh_pages():
    untuned, tuned = _faults("default"), _faults("tuned")
    # 5 × 111 MB allocated afresh is thousands of page faults (hundreds even with 2 MB pages)
    assert untuned > 200
    assert tuned < untuned / 10
