"""The admin route that shows the vLLM replicas the app serves through (--vllm-url):

  GET /api/replicas    each replica: in rotation or not (and why), the adapters it has loaded

An in-process engine has no replicas: the list is empty."""

from __future__ import annotations

from fastapi import APIRouter, Request

from serving.api import Auth
from serving.backend import EngineBackend


def build_replicas_api(*, engine: EngineBackend, auth: Auth) -> APIRouter:
    router = APIRouter()

    @router.get("/api/replicas")
    async def replicas(request: Request):
        auth.admin(request)
        return {"data": engine.replica_status()}

    return router
