"""Benchmark 1, dispatch: no-op jobs through the workers pool vs CPython's
concurrent.futures.ThreadPoolExecutor with the same number of workers.

    python tests/benchmarks/dispatch.py [--jobs 100000] [--workers 4]

Rounds alternate between the two, so both see the same machine; each
round submits its share of jobs as fast as possible and waits for all.
Figures: jobs/s (submit to last end) and submit latency p50/p99."""

import argparse
import concurrent.futures
import statistics
import sys
import time

import workers
from common import ms, percentile, table, write_json


class Noop(workers.Job):
    def run(self):
        pass


def noop():
    pass


def round_pool(n, threads):
    latencies = []
    with workers.Pool(threads, queue_size=n) as pool:
        started = time.perf_counter()
        for _ in range(n):
            t0 = time.perf_counter()
            pool.submit(Noop())
            latencies.append(time.perf_counter() - t0)
        pool.wait_idle()
        elapsed = time.perf_counter() - started
    return elapsed, latencies


def round_executor(n, threads):
    latencies = []
    with concurrent.futures.ThreadPoolExecutor(threads) as executor:
        started = time.perf_counter()
        futures = []
        for _ in range(n):
            t0 = time.perf_counter()
            futures.append(executor.submit(noop))
            latencies.append(time.perf_counter() - t0)
        concurrent.futures.wait(futures)
        elapsed = time.perf_counter() - started
    return elapsed, latencies


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--switch-interval", type=float,
                        help="sys.setswitchinterval for the run (seconds; "
                        "CPython's default is 0.005)")
    args = parser.parse_args()
    if args.switch_interval is not None:
        sys.setswitchinterval(args.switch_interval)
    per_round = args.jobs // args.rounds
    results = {"workers.Pool": ([], []), "ThreadPoolExecutor": ([], [])}
    for i in range(args.rounds):
        order = [("workers.Pool", round_pool),
                 ("ThreadPoolExecutor", round_executor)]
        if i % 2:
            order.reverse()
        for name, run in order:
            elapsed, latencies = run(per_round, args.workers)
            results[name][0].append(per_round / elapsed)
            results[name][1].extend(latencies)
    rows, data = [], {}
    for name, (rates, latencies) in results.items():
        data[name] = {
            "jobs_per_s_median": statistics.median(rates),
            "submit_p50_us": ms(percentile(latencies, 50)) * 1000,
            "submit_p99_us": ms(percentile(latencies, 99)) * 1000}
        rows.append((name, data[name]["jobs_per_s_median"],
                     data[name]["submit_p50_us"],
                     data[name]["submit_p99_us"]))
    ratio = (data["workers.Pool"]["jobs_per_s_median"] /
             data["ThreadPoolExecutor"]["jobs_per_s_median"])
    data["ratio_pool_to_executor"] = ratio
    table(f"dispatch: {args.jobs} no-op jobs, {args.workers} workers, "
          f"{args.rounds} interleaved rounds",
          ["runner", "jobs/s (median)", "submit p50 us", "submit p99 us"],
          rows)
    print(f"ratio workers.Pool / ThreadPoolExecutor: {ratio:.2f}")
    write_json("dispatch", {"args": vars(args), **data})


if __name__ == "__main__":
    main()
