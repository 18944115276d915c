"""Wiring only: parse the command line once, build the store, engine, services, API and UI, serve.

    python app.py --help
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from dataclasses import dataclass

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


def parse_config(argv: list[str] | None = None) -> AppConfig:
    parser = argparse.ArgumentParser(
        description="A chat service on vLLM that stores every answer and every piece of feedback.",
    )
    for cls in (EngineConfig, SamplingConfig, ServeConfig, StorageConfig):
        add_dataclass_args(parser, cls)
    ns = parser.parse_args(argv)
    cfg = AppConfig(*(from_namespace(c, ns) for c in (EngineConfig, SamplingConfig, ServeConfig, StorageConfig)))
    try:
        parse_auth(cfg.serve.auth)
    except (OSError, ValueError) as e:
        parser.error(str(e))
    if cfg.serve.admin and not cfg.serve.auth:
        parser.error("--admin needs --auth: admins are users who log in.")
    return cfg


async def serve(cfg: AppConfig) -> None:
    import gradio as gr
    import uvicorn
    from fastapi import FastAPI

    from serving.api import Auth, build_api, install_error_handlers
    from serving.chat import ChatService
    from serving.engine import Engine
    from serving.feedback import ConversationActions
    from serving.model import resolve_model, served_name
    from serving.server import GracefulServer
    from serving.ui import build_ui
    from storage.store import FeedbackStore

    store = FeedbackStore.open(cfg.storage.data_dir, config=cfg.storage)
    model_path = resolve_model(cfg.engine.model, cfg.storage.data_dir)
    users = parse_auth(cfg.serve.auth)
    async with Engine.start(cfg.engine, model_path=model_path, served_name=served_name(cfg.engine.model)) as engine:
        chat = ChatService(engine=engine, store=store, sampling=cfg.sampling)
        app = FastAPI(title="Chat that learns", docs_url="/api/docs", openapi_url="/api/openapi.json")
        install_error_handlers(app)
        app.include_router(build_api(chat=chat, store=store, auth=Auth(users),
                                     max_request_bytes=cfg.serve.max_request_bytes))
        actions = ConversationActions(chat=chat, store=store, system_prompt=cfg.sampling.system_prompt)
        ui = build_ui(actions=actions, feedback_options=split_list(cfg.serve.feedback_options),
                      sampling=cfg.sampling)
        app = gr.mount_gradio_app(app, ui, path="", auth=list(users.items()) or None)
        if not users:
            log.warning("No --auth: anyone who can reach %s:%d can chat; each browser session is its own "
                        "anonymous user.", cfg.serve.host, cfg.serve.port)
        server = GracefulServer(uvicorn.Config(app, host=cfg.serve.host, port=cfg.serve.port, log_level="warning"))
        log.info("Serving %s on http://%s:%d", engine.served_name, cfg.serve.host, cfg.serve.port)
        await server.serve()
    store.close()


def main(argv: list[str] | None = None) -> None:
    cfg = parse_config(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(serve(cfg))


if __name__ == "__main__":  # vLLM spawns its engine process: the guard keeps it from re-running main
    main()
