"""Wiring only: parse the command line once, build the store, engine, services, API and UI, serve.

    python app.py --help
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from dataclasses import dataclass

from common.flags import add_dataclass_args, from_namespace
from loop.gate import GateConfig
from loop.schedule import ScheduleConfig, parse_duration
from serving.adapters import AdapterConfig
from serving.config import EngineConfig, SamplingConfig, ServeConfig, parse_auth, split_list
from serving.keys import KeyRing
from serving.limits import RateLimiter, parse_rate
from serving.remote import RemoteConfig
from storage.config import StorageConfig
from storage.permissions import owner_only_umask
from storage.secrets import read_secret

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
    remote: RemoteConfig  # flags --vllm-*: serve through remote `vllm serve` replicas


PLAIN = (EngineConfig, SamplingConfig, ServeConfig, StorageConfig)
PREFIXED = ((AdapterConfig, "adapter"), (ScheduleConfig, "align"), (GateConfig, "gate"), (RemoteConfig, "vllm"))


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
        read_secret(cfg.remote.api_key, "--vllm-api-key")
        parse_duration(cfg.schedule.every)
        if cfg.schedule.args:  # the round's configs import torch and TRL: only when there are flags to check
            from loop.rounds import check_align_args

            check_align_args(cfg.schedule.args)
        parse_rate(cfg.serve.rate_limit)
        if cfg.serve.api_keys:
            KeyRing(cfg.serve.api_keys)
    except (OSError, ValueError) as e:
        parser.error(str(e))
    if cfg.serve.admin and not cfg.serve.auth:
        parser.error("--admin needs --auth: admins are users who log in.")
    if cfg.serve.api_keys and not cfg.serve.auth:
        parser.error("--api-keys needs --auth: without it every API caller is the one local user.")
    return cfg


def open_engine(cfg: AppConfig):
    """The in-process vLLM engine, or the `vllm serve` replicas named by --vllm-url (same interface)."""
    if cfg.remote.url:
        from serving.remote import RemoteEngine

        return RemoteEngine.start(cfg.remote)
    from common.models import resolve_model, served_name
    from serving.engine import Engine

    model_path = resolve_model(cfg.engine.model, cfg.storage.data_dir)
    return Engine.start(cfg.engine, model_path=model_path, served_name=served_name(cfg.engine.model))


async def serve(cfg: AppConfig) -> None:
    import gradio as gr
    import uvicorn
    from fastapi import FastAPI

    from serving.adapters import AdapterManager
    from serving.admin import AdminPanel
    from serving.api import Auth, build_admin_api, build_api, install_error_handlers
    from serving.chat import ChatService
    from serving.data_api import build_data_api
    from serving.eval_sampling import EvalSampler, build_eval_sampling_api, new_endpoint
    from serving.chat_actions import ConversationActions
    from serving.feedback import FeedbackService
    from serving.guard import UI_MAX_FILE_SIZE, add_guards
    from serving.i18n import gradio_translations
    from serving.logins import LoginThrottle, Logins, RememberClientAddress
    from common.models import served_name
    from loop.rounds import RoundSupervisor
    from loop.trainer_api import build_trainer_api
    from serving.replicas import build_replicas_api
    from serving.server import GracefulServer, start_message
    from serving.ui import build_ui
    from storage.store import FeedbackStore

    store = FeedbackStore.open(cfg.storage.data_dir, config=cfg.storage)
    log.info("%d answers cut off when the server last stopped are now incomplete.", store.mark_interrupted_answers())
    users = parse_auth(cfg.serve.auth)
    auth = Auth(users, admins=set(split_list(cfg.serve.admin)),
                keys=KeyRing(cfg.serve.api_keys) if cfg.serve.api_keys else None,
                logins=Logins(users, throttle=LoginThrottle(max_failures=cfg.serve.login_max_failures)))
    limiter = RateLimiter(parse_rate(cfg.serve.rate_limit), burst=cfg.serve.rate_burst)
    async with open_engine(cfg) as engine:
        adapters = AdapterManager(engine=engine, store=store, cfg=cfg.adapters)
        await adapters.restore()  # the version that served before the restart, or the last good one
        # Rounds have the engine sample their evaluation answers; replicas (--vllm-url) do not offer it yet.
        eval_endpoint = None if cfg.remote.url else new_endpoint(cfg.serve.host, cfg.serve.port)
        supervisor = RoundSupervisor(store=store, adapters=adapters, data_dir=cfg.storage.data_dir,
                                     model=cfg.engine.model, schedule=cfg.schedule, gate=cfg.gate,
                                     eval_endpoint=eval_endpoint)
        chat = ChatService(engine=engine, store=store, sampling=cfg.sampling)
        feedback = FeedbackService(store=store)  # one for the API and the UI: a vote is the same from either
        app = FastAPI(title="Chat that learns", docs_url="/api/docs", openapi_url="/api/openapi.json")
        install_error_handlers(app)
        app.include_router(build_api(chat=chat, store=store, feedback=feedback, auth=auth,
                                     max_request_bytes=cfg.serve.max_request_bytes, limiter=limiter))
        app.include_router(build_admin_api(store=store, adapters=adapters, supervisor=supervisor, auth=auth))
        app.include_router(build_data_api(store=store, auth=auth, data_dir=cfg.storage.data_dir))
        app.include_router(build_replicas_api(engine=engine, auth=auth))
        if eval_endpoint is not None:
            sampler = EvalSampler(engine=engine, adapters=adapters, adapters_dir=store.registry.adapters_dir,
                                  default_max_tokens=cfg.sampling.max_tokens,
                                  max_tokens_limit=cfg.sampling.max_tokens_limit)
            app.include_router(build_eval_sampling_api(sampler=sampler, endpoint=eval_endpoint,
                                                       max_request_bytes=cfg.serve.max_request_bytes))
        app.include_router(build_trainer_api(store=store, auth=auth, data_dir=cfg.storage.data_dir,
                                             base_model=served_name(cfg.engine.model)))
        actions = ConversationActions(chat=chat, store=store, system_prompt=cfg.sampling.system_prompt,
                                      limiter=limiter)
        admin = AdminPanel(store=store, adapters=adapters, supervisor=supervisor, auth=auth,
                           data_dir=cfg.storage.data_dir)
        ui = build_ui(actions=actions, feedback=feedback, feedback_options=split_list(cfg.serve.feedback_options),
                      sampling=cfg.sampling, admin=admin)
        # The login form goes through the same password check and throttle as Basic auth on the API;
        # RememberClientAddress tells that check the client's address, which Gradio does not pass on.
        app = gr.mount_gradio_app(app, ui, path="", auth=auth.logins.gradio_login if users else None,
                                  i18n=gradio_translations(), max_file_size=UI_MAX_FILE_SIZE)
        app.add_middleware(RememberClientAddress)
        add_guards(app, cfg.serve, local=not users)  # Host, Origin, JSON-only API, body cap
        server = GracefulServer(uvicorn.Config(app, host=cfg.serve.host, port=cfg.serve.port, log_level="warning",
                                               timeout_graceful_shutdown=cfg.serve.shutdown_timeout_s))
        log.log(*start_message(engine.served_name, cfg.serve.host, cfg.serve.port, auth=bool(users)))
        loop_task = asyncio.create_task(supervisor.run())
        try:
            await server.serve()
        finally:
            loop_task.cancel()
            await supervisor.stop()
    store.close()


def main(argv: list[str] | None = None) -> None:
    cfg = parse_config(argv)
    owner_only_umask()  # the DB, adapters, round logs and backups hold users' conversations
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(serve(cfg))


if __name__ == "__main__":  # vLLM spawns its engine process: the guard keeps it from re-running main
    main()
