"""The load test's figures: the live progress line, the summary, the JSON
of every VM's timings, and the plot of a storm (matplotlib, an optional
extra: `pip install vmjobs[plot]`)."""

import json

from workers import JobStatus

BAR_WIDTH = 30


def percentile(values, pct):
    """Nearest-rank percentile of `values` (None if empty)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * pct // 100))   # ceil
    return ordered[int(rank) - 1]


class Progress:
    """One live line on a terminal; a line per tenth otherwise."""

    def __init__(self, out, total):
        self.out = out
        self.total = total
        self.tty = out.isatty()
        self._last_tenth = -1

    def show(self, phase, ended, up, failed, queued, running):
        fill = BAR_WIDTH * ended // max(self.total, 1)
        line = (f"{phase:9} [{'#' * fill}{'.' * (BAR_WIDTH - fill)}] "
                f"{ended}/{self.total} ended, {up} Up, {failed} failed, "
                f"{queued} queued, {running} running")
        if self.tty:
            self.out.write("\r" + line + "\x1b[K")
            self.out.flush()
            return
        tenth = 10 * ended // max(self.total, 1)
        if tenth != self._last_tenth:
            self._last_tenth = tenth
            print(line, file=self.out, flush=True)

    def done(self):
        if self.tty:
            self.out.write("\n")


def time_to_up(record):
    """From the verb's answer to the VM's Up event (a record saved before
    the load test followed events: to its job's end)."""
    return record.get("up", record["ended"]) - record["enqueued"]


def summarize(records, total_s, retried):
    """The figures of a storm from its records (one per VM: mode, status,
    enqueued/started/ended times, its Up event's, verb latency)."""
    done = [r for r in records if r["status"] == JobStatus.DONE]
    by_mode = {}
    for r in done:
        by_mode.setdefault(r["mode"], []).append(time_to_up(r))
    return {
        "vms": len(records),
        "total_s": total_s,
        "vms_per_s": len(done) / total_s if total_s else 0.0,
        "up": len(done),
        "failed": len(records) - len(done),
        "retried": dict(retried),
        "time_to_up": [time_to_up(r) for r in done],
        "time_to_up_by_mode": by_mode,
        "queue_wait": [r["started"] - r["enqueued"] for r in records
                       if r.get("started") is not None],
        "verb_latency": [r["verb_latency"] for r in records],
        "errors": [r.get("error") or r["status"] for r in records
                   if r["status"] != JobStatus.DONE],
    }


def _ms(seconds):
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"


def pcts(values, *pcts):
    return "  ".join(f"p{p} {_ms(percentile(values, p))}" for p in pcts)


def print_summary(f, out):
    retried = ", ".join(f"{name} {n}" for name, n in f["retried"].items())
    print(f"total        {f['total_s']:.2f} s, {f['vms_per_s']:.1f} VMs/s",
          file=out)
    print(f"Up           {f['up']}/{f['vms']}, failures {f['failed']}, "
          f"retried: {retried}", file=out)
    print(f"time-to-Up   {pcts(f['time_to_up'], 50, 95, 99)}", file=out)
    if len(f["time_to_up_by_mode"]) > 1:
        for mode, values in sorted(f["time_to_up_by_mode"].items()):
            print(f"  {mode:10} {len(values):5} Up  "
                  f"{pcts(values, 50, 95, 99)}", file=out)
    print(f"queue wait   {pcts(f['queue_wait'], 50, 99)}", file=out)
    print(f"verb call    {pcts(f['verb_latency'], 50, 99)}", file=out)
    for message in sorted(set(f["errors"]))[:5]:
        print(f"  failure: {message}", file=out)


def save(path, records, summary, meta):
    with open(path, "w") as f:
        json.dump({"meta": meta, "summary": {
            k: v for k, v in summary.items() if not isinstance(v, list)
            and k != "time_to_up_by_mode"}, "vms": records}, f, indent=1)


def load(path):
    """(records, summary) of a saved run."""
    with open(path) as f:
        saved = json.load(f)
    summary = summarize(saved["vms"], saved["summary"]["total_s"],
                        saved["summary"]["retried"])
    return saved["vms"], summary


def timeline(records):
    """[(t, staged, running, up)] at every moment something changed, t in
    seconds from the first request: each VM staged from its staged event
    (or its verb's answer), running from its job's start, Up from its Up
    event (or its job's end)."""
    events = []
    for r in records:
        events.append((r.get("staged", r["enqueued"]), "staged", +1))
        if r.get("started") is not None:
            events.append((r["started"], "staged", -1))
            events.append((r["started"], "running", +1))
        if r.get("ended") is not None:
            if r.get("started") is None:
                events.append((r["ended"], "staged", -1))
            else:
                events.append((r["ended"], "running", -1))
            if r["status"] == JobStatus.DONE:
                events.append((r.get("up", r["ended"]), "up", +1))
    events.sort(key=lambda e: e[0])
    if not events:
        return []
    origin = events[0][0]
    counts = {"staged": 0, "running": 0, "up": 0}
    points = []
    for t, kind, delta in events:
        counts[kind] += delta
        points.append((t - origin, counts["staged"], counts["running"],
                       counts["up"]))
    return points


def plot(records, path, limits=None):
    """draw()'s figure, as a PNG."""
    import matplotlib.pyplot as plt
    figure = draw(records, limits)
    figure.savefig(path, dpi=100)
    plt.close(figure)


def draw(records, limits=None):
    """The storm: VMs staged, running and Up over time (Up by startup mode
    when the storm mixed them), the admission limit as [(time, limit)]
    when it moved (adaptive admission; a fixed one draws no axis), and
    the time-to-Up distribution (stacked by mode)."""
    try:
        import matplotlib
    except ImportError:
        raise RuntimeError("plots need matplotlib: pip install "
                           "'vmjobs[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    modes = sorted({r["mode"] for r in records})
    figure, (storm, spread) = plt.subplots(1, 2, figsize=(12, 5))
    _plot_storm(storm, records, modes)
    handles, labels = storm.get_legend_handles_labels()
    if limits and records and len({limit for _, limit in limits}) > 1:
        origin = min(r["enqueued"] for r in records)
        limit_axis = storm.twinx()
        limit_axis.step([t - origin for t, _ in limits],
                        [limit for _, limit in limits], where="post",
                        color="black", linestyle=":",
                        label="admission limit")
        limit_axis.set_ylabel("admission limit")
        limit_axis.set_ylim(0, max(limit for _, limit in limits) + 1)
        limit_axis.yaxis.set_major_locator(MaxNLocator(integer=True))
        more = limit_axis.get_legend_handles_labels()
        handles, labels = handles + more[0], labels + more[1]
    # Below the axes: a legend inside covered the queued curve's peak.
    storm.legend(handles, labels, loc="upper center", ncol=3,
                 bbox_to_anchor=(0.5, -0.14), frameon=False)
    storm.yaxis.set_major_locator(MaxNLocator(integer=True))
    _plot_spread(spread, records, modes)
    spread.yaxis.set_major_locator(MaxNLocator(integer=True))
    figure.tight_layout()
    return figure


def _plot_storm(storm, records, modes):
    points = timeline(records)
    if points:
        t = [p[0] for p in points]
        for column, label in ((1, "staged (queued)"), (2, "running"),
                              (3, "Up")):
            storm.step(t, [p[column] for p in points], where="post",
                       label=label)
        if len(modes) > 1:
            origin = min(r["enqueued"] for r in records)
            for mode in modes:
                ups = sorted(r.get("up", r["ended"]) - origin for r in records
                             if r["mode"] == mode
                             and r["status"] == JobStatus.DONE)
                storm.step([0.0] + ups, range(len(ups) + 1), where="post",
                           linestyle="--", linewidth=1, label=f"Up: {mode}")
    storm.set_xlabel("seconds since the first request")
    storm.set_ylabel("VMs")
    storm.set_title(f"storm of {len(records)} VMs")


def _plot_spread(spread, records, modes):
    by_mode = [[1000 * time_to_up(r) for r in records
                if r["mode"] == mode and r["status"] == JobStatus.DONE]
               for mode in modes]
    ups = [value for values in by_mode for value in values]
    if len(modes) > 1:
        spread.hist(by_mode, bins=50, stacked=True, label=modes)
        # Below, as the storm's: inside it covered the percentiles' marks.
        spread.legend(loc="upper center", ncol=len(modes),
                      bbox_to_anchor=(0.5, -0.14), frameon=False)
    else:
        spread.hist(ups, bins=50)
    spread.set_xlabel("time to Up (ms)")
    spread.set_ylabel("VMs")
    for pct in (50, 95, 99):
        value = percentile(ups, pct)
        if value is not None:
            spread.axvline(value, linestyle="--", color="grey")
            spread.text(value, spread.get_ylim()[1] * 0.95, f"p{pct}",
                        rotation=90, va="top")
    spread.set_title("time to Up" + (" by mode" if len(modes) > 1 else ""))
