"""Wiring only: parse the command line once, build the store, engine, services, API and UI, serve.

    python app.py --help
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from dataclasses import dataclass

from align.gate import GateConfig
from align.schedule import ScheduleConfig, parse_duration
from serving.adapters import AdapterConfig
from serving.config import (EngineConfig, SamplingConfig, ServeConfig, add_dataclass_args, from_namespace,
                            parse_auth, split_list)
from storage.config import StorageConfig

log = logging.getLogger("app")


@dataclass
class AppConfig:
    engine: EngineConfig
    sampling: SamplingConfig
    serve: ServeConfig
    storage: StorageConfig
    adapters: AdapterConfig  # flags --adapter-*
    schedule: ScheduleConfig  # flags --align-*
    gate: GateConfig  # flags --gate-*


PLAIN = (EngineConfig, SamplingConfig, ServeConfig, StorageConfig)
PREFIXED = ((AdapterConfig, "adapter"), (ScheduleConfig, "align"), (GateConfig, "gate"))


def parse_config(argv: list[str] | None = None) -> AppConfig:
    parser = argparse.ArgumentParser(
        description="A chat service on vLLM that stores every answer and every piece of feedback, and "
                    "learns from that feedback in alignment rounds it runs, gates and hot-swaps by itself.",
    )
    for cls in PLAIN:
        add_dataclass_args(parser, cls)
    for cls, prefix in PREFIXED:
        add_dataclass_args(parser, cls, prefix=prefix)
    ns = parser.parse_args(argv)
    cfg = AppConfig(*(from_namespace(c, ns) for c in PLAIN), *(from_namespace(c, ns, prefix=p) for c, p in PREFIXED))
    try:
        parse_auth(cfg.serve.auth)
        parse_duration(cfg.schedule.every)
    except (OSError, ValueError) as e:
        parser.error(str(e))
    if cfg.serve.admin and not cfg.serve.auth:
        parser.error("--admin needs --auth: admins are users who log in.")
    return cfg


async def serve(cfg: AppConfig) -> None:
    import gradio as gr
    import uvicorn
    from fastapi import FastAPI

    from serving.adapters import AdapterManager
    from serving.api import Auth, build_admin_api, build_api, install_error_handlers
    from serving.chat import ChatService
    from serving.engine import Engine
    from serving.feedback import ConversationActions
    from serving.model import resolve_model, served_name
    from serving.rounds import RoundSupervisor
    from serving.server import GracefulServer
    from serving.ui import build_ui
    from storage.store import FeedbackStore

    store = FeedbackStore.open(cfg.storage.data_dir, config=cfg.storage)
    model_path = resolve_model(cfg.engine.model, cfg.storage.data_dir)
    users = parse_auth(cfg.serve.auth)
    auth = Auth(users, admins=set(split_list(cfg.serve.admin)))
    async with Engine.start(cfg.engine, model_path=model_path, served_name=served_name(cfg.engine.model)) as engine:
        adapters = AdapterManager(engine=engine, store=store, cfg=cfg.adapters)
        await adapters.restore()  # the version that served before the restart, or the last good one
        supervisor = RoundSupervisor(store=store, adapters=adapters, data_dir=cfg.storage.data_dir,
                                     model=cfg.engine.model, schedule=cfg.schedule, gate=cfg.gate)
        chat = ChatService(engine=engine, store=store, sampling=cfg.sampling)
        app = FastAPI(title="Chat that learns", docs_url="/api/docs", openapi_url="/api/openapi.json")
        install_error_handlers(app)
        app.include_router(build_api(chat=chat, store=store, auth=auth,
                                     max_request_bytes=cfg.serve.max_request_bytes))
        app.include_router(build_admin_api(store=store, adapters=adapters, supervisor=supervisor, auth=auth))
        actions = ConversationActions(chat=chat, store=store, system_prompt=cfg.sampling.system_prompt)
        ui = build_ui(actions=actions, feedback_options=split_list(cfg.serve.feedback_options),
                      sampling=cfg.sampling)
        app = gr.mount_gradio_app(app, ui, path="", auth=list(users.items()) or None)
        if not users:
            log.warning("No --auth: anyone who can reach %s:%d can chat; each browser session is its own "
                        "anonymous user.", cfg.serve.host, cfg.serve.port)
        server = GracefulServer(uvicorn.Config(app, host=cfg.serve.host, port=cfg.serve.port, log_level="warning"))
        log.info("Serving %s on http://%s:%d", engine.served_name, cfg.serve.host, cfg.serve.port)
        loop_task = asyncio.create_task(supervisor.run())
        try:
            await server.serve()
        finally:
            loop_task.cancel()
            await supervisor.stop()
    store.close()


def main(argv: list[str] | None = None) -> None:
    cfg = parse_config(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(serve(cfg))


if __name__ == "__main__":  # vLLM spawns its engine process: the guard keeps it from re-running main
    main()
