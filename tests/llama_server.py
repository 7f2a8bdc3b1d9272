"""A real local LLM server for tests: llama.cpp's OpenAI-style server, in process (`xllamacpp`, a prebuilt
CPU wheel of the dev extra), serving the bundled SmolLM2-135M GGUF on 127.0.0.1 with ONE thread (two spin
and stall on a busy 2-core machine). Tests that need it skip cleanly where the wheel is absent."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tools.student.base_model import bundled_gguf_path


@contextmanager
def llama_server(n_ctx: int = 8192) -> Iterator[str]:
    """The server's OpenAI base URL (`http://127.0.0.1:PORT/v1`) while the block runs."""
    xllamacpp = pytest.importorskip("xllamacpp", reason="xllamacpp (dev extra) is not installed")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    params = xllamacpp.CommonParams()
    params.model.path = str(bundled_gguf_path())
    params.cpuparams.n_threads = 1
    params.cpuparams_batch.n_threads = 1
    params.n_parallel = 1
    params.n_ctx = n_ctx
    params.hostnames = ["127.0.0.1"]
    params.port = port
    params.warmup = False
    server = xllamacpp.Server(params)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        del server  # its destructor stops the HTTP loop and frees the model
