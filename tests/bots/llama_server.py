"""Run xllamacpp's built-in llama.cpp HTTP server (OpenAI protocol) until killed.

Usage: python tests/bots/llama_server.py MODEL.gguf PORT
Used by the integration test as a subprocess so it can be stopped by pid.
"""

from __future__ import annotations

import sys
import time


def main() -> None:
    import xllamacpp as xlc

    params = xlc.CommonParams()
    params.model.path = sys.argv[1]
    params.port = int(sys.argv[2])
    params.hostnames = ["127.0.0.1"]
    params.n_ctx = 4096
    params.n_parallel = 1
    params.cpuparams.n_threads = 1
    params.cpuparams_batch.n_threads = 1
    params.warmup = False
    server = xlc.Server(params)
    print(f"listening {server.listening_address}", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
