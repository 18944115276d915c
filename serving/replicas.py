"""The admin route that shows the vLLM replicas the app serves through (--vllm-url):

  GET /api/replicas    each replica: in rotation or not (and why), the adapters it has loaded

An in-process engine has no replicas: the list is empty."""

from __future__ import annotations

from fastapi import APIRouter, Request

from serving.api import Auth


def build_replicas_api(*, engine, auth: Auth) -> APIRouter:
    router = APIRouter()

    @router.get("/api/replicas")
    async def replicas(request: Request):
        auth.admin(request)
        return {"data": [r.status() for r in getattr(engine, "replicas", [])]}

    return router
