"""The HTTP server process: uvicorn, with shutdown that lets the vLLM engine stop its children."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
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


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def start_message(served_name: str, host: str, port: int, *, auth: bool) -> tuple[int, str]:
    """The start-up line that says who can reach the app: (log level, message). Without --auth
    every caller is the admin, so binding beyond this machine is a warning."""
    where = f"http://{host}:{port}"
    if auth:
        return logging.INFO, f"Serving {served_name} on {where}; users log in (--auth)."
    if is_loopback(host):
        return logging.INFO, (f"Serving {served_name} on {where}, local-only: no --auth, so only this machine "
                              f"can connect. To serve others, pass --auth (and --admin) and --host 0.0.0.0.")
    return logging.WARNING, (f"Serving {served_name} on {where} WITHOUT --auth: anyone who can reach this "
                             f"address can chat, read the API's conversations and run admin actions. "
                             f"Pass --auth (and --admin), or bind to 127.0.0.1.")
