"""The HTTP server process: uvicorn, with shutdown that lets the vLLM engine stop its children."""

from __future__ import annotations

import asyncio
import contextlib
import signal

import uvicorn


class GracefulServer(uvicorn.Server):
    """uvicorn re-raises SIGINT/SIGTERM once it has stopped serving, which kills the process before
    the code after `serve()` runs: the vLLM engine's own processes would be left orphaned. Here the
    signals only ask uvicorn to stop, and the caller's `async with Engine.start(...)` then shuts
    the engine down."""

    @contextlib.contextmanager
    def capture_signals(self):
        loop = asyncio.get_running_loop()
        signals = (signal.SIGINT, signal.SIGTERM)
        for sig in signals:
            loop.add_signal_handler(sig, self.handle_exit, sig, None)
        try:
            yield
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)
