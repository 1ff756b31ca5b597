"""What every benchmark shares: percentiles, a table, a JSON file.

Benchmarks print figures; they assert nothing about speed (these machines
are shared and noisy). Each runs its baseline in the same process, with
the runs interleaved, and prints the ratio."""

import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from vmjobs.tools.report import percentile  # noqa: E402


def daemon_pid(sandbox):
    """The private libvirtd's pid (vmjobs.tools.sandbox.Sandbox)."""
    with open(os.path.join(sandbox.dir, "run", "libvirtd.pid")) as f:
        return int(f.read())


def table(title, columns, rows):
    """Print rows (tuples) under columns, aligned."""
    cells = [columns] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    print(f"\n{title}")
    for i, row in enumerate(cells):
        print("  ".join(c.rjust(w) if j else c.ljust(w)
                        for j, (c, w) in enumerate(zip(row, widths, strict=True))))
        if i == 0:
            print("  ".join("-" * w for w in widths))


def _cell(value):
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def write_json(name, data):
    directory = os.environ.get("VMJOBS_BENCH_DIR",
                               os.path.join(ROOT, "bench-results"))
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"{name}.json")
    with open(path, "w") as f:
        json.dump(data, f, indent=1)
    print(f"\nresults: {path}")
    return path


def pyplot():
    """matplotlib.pyplot drawing to files, or None (saying so) when
    matplotlib, an optional extra, is not installed."""
    try:
        import matplotlib
    except ImportError:
        print("plot: matplotlib is not installed (pip install matplotlib)")
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_plot(plt, figure, path, dpi=100):
    """Lay out `figure`, write it to `path` and free it."""
    figure.tight_layout()
    figure.savefig(path, dpi=dpi)
    plt.close(figure)
    print(f"plot: {path}")


def ms(seconds):
    return None if seconds is None else seconds * 1000


__all__ = ["percentile", "table", "write_json", "pyplot", "save_plot", "ms",
           "ROOT"]
