"""vmjobs: a host agent's VM-startup engine.

Engine requests become typed jobs on a bounded queue; a fixed-size pool
runs each startup flow; a VM is staged privately while its job runs and
committed to the public registry only once it is fully up.
"""

__version__ = "0.1.0"
