"""Runs one program as several JAX processes on this machine, as a cluster would.

  python -m lm.launch --num_processes=2 --devices_per_process=4 -- \
      main.py --config=configs/tiny.py --workdir=workdirs/mp

Each process gets the coordinator address, the process count and its id in the environment
(LM_COORDINATOR, LM_NUM_PROCESSES, LM_PROCESS_ID), which `lm.sharding.maybe_initialize_distributed`
hands to `jax.distributed.initialize`; on CPU each simulates `devices_per_process` devices and
the processes talk through gloo. Their output is streamed with a `[i]` prefix. If one process
fails, the others are killed (a collective would wait for it forever) and the launcher exits
with that process's code. SIGTERM / SIGINT are passed on, so every process saves and exits.
On a real cluster, run main.py directly under the scheduler instead (see README.md).
"""

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stream(index: int, pipe) -> None:
    for line in pipe:
        sys.stdout.write(f"[{index}] {line}")
        sys.stdout.flush()


def launch(command: list[str], num_processes: int, devices_per_process: int,
           platform: str = "cpu", port: int = 0) -> int:
    """Starts the processes, streams their output, returns the run's exit code."""
    address = f"127.0.0.1:{port or _free_port()}"
    procs, streams = [], []
    for i in range(num_processes):
        env = {**os.environ, "LM_COORDINATOR": address, "LM_NUM_PROCESSES": str(num_processes),
               "LM_PROCESS_ID": str(i)}
        if platform == "cpu":
            env |= {"JAX_PLATFORMS": "cpu",
                    "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices_per_process}"}
        else:  # process i drives GPUs i*d .. i*d + d - 1
            gpus = range(i * devices_per_process, (i + 1) * devices_per_process)
            env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, gpus))
        proc = subprocess.Popen([sys.executable, *command], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, bufsize=1)
        procs.append(proc)
        print(f"lm.launch: process {i} of {num_processes} is pid {proc.pid}", flush=True)
        streams.append(threading.Thread(target=_stream, args=(i, proc.stdout), daemon=True))
        streams[-1].start()

    def forward(signum, frame):
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        while True:
            codes = [p.poll() for p in procs]
            failed = [(i, c) for i, c in enumerate(codes) if c not in (None, 0)]
            if failed:
                # A process killed by a signal is the cause; the others' errors follow from it.
                index, code = min(failed, key=lambda f: (f[1] > 0, f[0]))
                for p in procs:
                    if p.poll() is None:
                        p.kill()
                for p in procs:
                    p.wait()
                for t in streams:
                    t.join(timeout=5)
                how = (f"exited with code {code}" if code > 0 else
                       f"was killed by {signal.Signals(-code).name}")
                print(f"lm.launch: process {index} of {num_processes} {how}; stopped the others. "
                      f"Its output above (prefix [{index}]) says why", file=sys.stderr, flush=True)
                return code if code > 0 else 128 - code
            if all(c == 0 for c in codes):
                for t in streams:
                    t.join(timeout=5)
                return 0
            time.sleep(0.1)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Run a program as several JAX processes on this machine.",
        usage="python -m lm.launch [options] -- main.py --config=... --workdir=...")
    parser.add_argument("--num_processes", type=int, default=2)
    parser.add_argument("--devices_per_process", type=int, default=4,
                        help="simulated CPU devices (cpu) or GPUs (gpu) per process")
    parser.add_argument("--platform", default="cpu", choices=["cpu", "gpu"],
                        help="gpu: process i sees GPUs i*d .. i*d+d-1 (CUDA_VISIBLE_DEVICES)")
    parser.add_argument("--port", type=int, default=0, help="coordinator port (0 = a free one)")
    args, command = parser.parse_known_args()
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        parser.error("give the program after --, e.g. -- main.py --config=configs/tiny.py ...")
    if args.num_processes < 1 or args.devices_per_process < 1:
        parser.error("--num_processes and --devices_per_process must be >= 1")
    sys.exit(launch(command, args.num_processes, args.devices_per_process, args.platform,
                    args.port))


if __name__ == "__main__":
    main()
