"""Admin-only routes over the data itself: POST /api/admin/backup (a consistent copy of the live
database into DATA_DIR/backups/) and GET /api/admin/export (the training datasets as JSON).

Both read through their own SQLite connection or the store's lock in a worker thread, so chats and
feedback keep being served (and written) while they run.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from fastapi import APIRouter, Request

from serving.api import ApiError, Auth
from storage.backup import backup_into_data_dir
from storage.export import export_datasets, export_size_bound
from storage.store import FeedbackStore

# Above this many rows the JSON answer gets large enough (tens of MB) to time out clients and hold
# the whole export in memory twice; `python -m storage export` writes files instead.
MAX_EXPORT_ROWS = 10_000


def build_data_api(*, store: FeedbackStore, auth: Auth, data_dir: str | Path) -> APIRouter:
    router = APIRouter()

    @router.post("/api/admin/backup", status_code=201)
    async def backup(request: Request):
        auth.admin(request)
        return await asyncio.to_thread(backup_into_data_dir, data_dir, busy_timeout_s=store.config.busy_timeout_s,
                                       keep=store.config.keep_backups)

    @router.get("/api/admin/export")
    async def export(request: Request):
        auth.admin(request)
        # Counted before anything is built: a refused export should cost a few COUNT queries, not
        # the whole export held in memory.
        rows = await asyncio.to_thread(export_size_bound, store)
        if rows > MAX_EXPORT_ROWS:
            raise ApiError(f"The export would have up to {rows:,} rows, more than the {MAX_EXPORT_ROWS:,} this "
                           f"endpoint returns; run `python -m storage export --data-dir {data_dir} --out DIR` on "
                           "the server instead.", status=400, kind="export_too_large")
        return await asyncio.to_thread(export_datasets, store)

    return router
