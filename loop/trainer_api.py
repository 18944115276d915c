"""The remote-trainer protocol: the admin routes a remote trainer (`python -m align worker`) talks to.

Routes (admins only):
  POST /api/align/worker/rounds                a worker claims the round lock; gets the round's data
  GET  /api/align/worker/adapters/{version}    the active adapter's files (tar), to continue from
  POST /api/align/worker/rounds/{id}/progress  a progress line (also the worker's heartbeat)
  POST /api/align/worker/rounds/{id}/fail      the worker gave up; the round is marked failed
  POST /api/align/worker/rounds/{id}/adapter   the trained candidate (tar): verified, then registered

SQLite stays owned by this process: the worker only ever sees JSON and tar files. An upload lands
in DATA_DIR/adapters/.upload-*/ (held while it is received; storage.archive), is unpacked by
storage.archive.extract_tar (only the files a round writes), checked, and becomes adapters/<version>/
in the transaction that registers it as a candidate and ends its round
(align.round.register_candidate), so the usual gate judges it next.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tarfile
import tempfile
from dataclasses import asdict
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr
from starlette.background import BackgroundTask

from align.round import RoundError, gate_metrics, read_feedback, register_candidate
from common.models import model_key
from serving.api import ApiError, Auth, json_body, parse_body, read_json
from storage.adapters import (ADAPTER_FILES, ADAPTERS_DIR, ROUND_FILES, ROUND_FOLDERS, UPLOAD_FILES,
                              UPLOAD_PREFIX)
from storage.archive import ArchiveRefused, allow_names, extract_tar, held_folder, remove_abandoned
from storage.errors import Conflict, StoreError
from storage.permissions import private_dir
from storage.process import ProcessIdentity
from storage.store import FeedbackStore

MAX_UPLOAD_BYTES = 4 << 30  # a round's adapter, reward model and SFT adapter: a 7B r64 round is ~1 GiB
MAX_UPLOAD_MEMBERS = 64  # a round writes ~30 files and folders (most are the reward model's tokenizer)
MAX_JSON_BYTES = 100_000  # progress lines and error sentences
DISK_RESERVE_BYTES = 1 << 30  # left free by an upload: the database and the log files write to the same disk
# What align.round.train_candidate writes into a round's folder (storage.adapters lists it).
ROUND_NAMES = allow_names(files=ROUND_FILES, folders=ROUND_FOLDERS)


# The upload's body in the published OpenAPI (the route reads the stream itself), so the docs show
# it and the fuzzer sends it.
TAR_BODY = {"requestBody": {"required": True, "content": {
    "application/x-tar": {"schema": {"type": "string", "format": "binary"}}}}}


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WorkerClaim(_Body):
    """Who runs the round: the worker's process, so a worker that dies stops holding the lock
    (on another host: once it has been silent for an hour; see storage.process.is_alive)."""

    host: StrictStr = Field(min_length=1, max_length=255)
    pid: StrictInt = Field(ge=1, le=2**31 - 1)  # what SQLite and the kernel can hold
    start: StrictStr = Field(default="", max_length=64)


class ProgressLine(_Body):
    line: StrictStr


class WorkerFailure(_Body):
    error: StrictStr


class UploadRejected(Exception):
    """An uploaded candidate that cannot be registered; the message says why."""


def build_trainer_api(*, store: FeedbackStore, auth: Auth, data_dir: str | Path, base_model: str) -> APIRouter:
    """`base_model` is the name the app serves (and rounds train) under; uploads must match it."""
    router = APIRouter()
    adapters_dir = private_dir(Path(data_dir) / ADAPTERS_DIR)
    remove_abandoned(adapters_dir, UPLOAD_PREFIX)  # at start-up: what an app killed mid-upload left

    def claim_for_worker(user: str, process: ProcessIdentity) -> dict:
        """Take the round lock for a worker and hand it the round's data (in a worker thread: the
        store may wait for a lock, and reading the feedback takes a while)."""
        claimed = store.round_lock.claim_round(trigger="worker", requested_by=user, process=process)  # Conflict: 409
        try:
            feedback = read_feedback(store)
        except RoundError as e:
            store.round_lock.finish_round(claimed.id, error=str(e))
            raise ApiError(str(e), status=400, kind="round_error")
        active = store.registry.active_adapter()
        return {"round": asdict(claimed), "feedback": feedback, "base_model": base_model,
                "active": {"version": active.version} if active else None}

    @router.post("/api/align/worker/rounds", status_code=201, openapi_extra=json_body(WorkerClaim.model_json_schema()))
    async def claim(request: Request):
        user = auth.admin(request)
        body = parse_body(WorkerClaim, await read_json(request, MAX_JSON_BYTES))
        process = ProcessIdentity(host=body.host, pid=body.pid, start=body.start)
        return await asyncio.to_thread(claim_for_worker, user, process)

    @router.get("/api/align/worker/adapters/{version}")
    async def download(version: str, request: Request):
        auth.admin(request)
        adapter = await asyncio.to_thread(store.registry.adapter, _row_id(version, "Adapter version"))  # NotFound: 404
        if adapter.pruned_at or not Path(adapter.path).is_dir():
            raise ApiError(f"Adapter v{adapter.version}'s files are gone.", status=404, kind="not_found")
        tar_path = await asyncio.to_thread(_pack_adapter, Path(adapter.path))
        return FileResponse(tar_path, media_type="application/x-tar", filename=f"adapter-v{adapter.version}.tar",
                            background=BackgroundTask(os.unlink, tar_path))

    @router.post("/api/align/worker/rounds/{round_id}/progress",
                 openapi_extra=json_body(ProgressLine.model_json_schema()))
    async def progress(round_id: str, request: Request):
        auth.admin(request)
        body = parse_body(ProgressLine, await read_json(request, MAX_JSON_BYTES))

        def record() -> None:
            store.round_lock.update_round_progress(_worker_round(store, round_id).id, body.line)

        await asyncio.to_thread(record)
        return {"ok": True}

    @router.post("/api/align/worker/rounds/{round_id}/fail",
                 openapi_extra=json_body(WorkerFailure.model_json_schema()))
    async def fail(round_id: str, request: Request):
        auth.admin(request)
        body = parse_body(WorkerFailure, await read_json(request, MAX_JSON_BYTES))

        def finish():
            return store.round_lock.finish_round(_worker_round(store, round_id).id, error=f"Worker: {body.error}")

        return {"round": asdict(await asyncio.to_thread(finish))}

    @router.post("/api/align/worker/rounds/{round_id}/adapter", status_code=201, openapi_extra=TAR_BODY)
    async def upload(round_id: str, request: Request):
        auth.admin(request)
        claimed = await asyncio.to_thread(_worker_round, store, round_id)
        length = _content_length(request)
        await asyncio.to_thread(remove_abandoned, adapters_dir, UPLOAD_PREFIX)
        _check_free_space(adapters_dir, 2 * length)  # the tar, and the round it unpacks to
        with held_folder(adapters_dir, UPLOAD_PREFIX) as folder:
            try:
                await _receive(request, folder / "upload.tar")
                _check_free_space(adapters_dir, (folder / "upload.tar").stat().st_size)
                version = await asyncio.to_thread(_verify_and_register, store, folder,
                                                  base_model=base_model, round_id=claimed.id)
            except UploadRejected as e:
                message = f"The uploaded candidate was refused: {e}"
                await asyncio.to_thread(_fail_if_running, store, claimed.id, message)
                raise ApiError(message, status=400, kind="upload_refused")
        return {"version": version, "status": (await asyncio.to_thread(store.registry.adapter, version)).status}

    return router


def _row_id(value: str, what: str) -> int:
    if not (value.isascii() and value.isdigit()) or len(value) > 18:  # "²".isdigit() is True
        raise ApiError(f"{what} {value} does not exist.", status=404, kind="not_found")
    return int(value)


def _worker_round(store: FeedbackStore, round_id: str):
    claimed = store.round_lock.round(_row_id(round_id, "Round"))
    if claimed.trigger != "worker" or claimed.status != "running":
        raise ApiError(f"Round {claimed.id} is not a running worker round (it is {claimed.status}).", status=409,
                       kind="conflict")
    return claimed


def _pack_adapter(path: Path) -> str:
    """The files vLLM and PEFT need to load the adapter (not its round's reward model)."""
    fd, tar_path = tempfile.mkstemp(suffix=".tar")
    with os.fdopen(fd, "wb") as f, tarfile.open(fileobj=f, mode="w") as tar:
        for name in ADAPTER_FILES:
            if (path / name).is_file():
                tar.add(path / name, arcname=name)
    return tar_path


def _content_length(request: Request) -> int:
    """The announced size (0 when the body is chunked); over MAX_UPLOAD_BYTES: 413 before reading."""
    value = request.headers.get("content-length", "0")
    length = int(value) if value.isascii() and value.isdigit() else 0
    if length > MAX_UPLOAD_BYTES:
        raise ApiError(f"The upload is larger than {MAX_UPLOAD_BYTES >> 20} MiB.", status=413)
    return length


def _check_free_space(folder: Path, needed: int) -> None:
    """Refuse (507) an upload the disk cannot hold while keeping DISK_RESERVE_BYTES free."""
    free = shutil.disk_usage(folder).free
    if needed + DISK_RESERVE_BYTES > free:
        raise ApiError(f"The server has {free >> 20} MiB of disk space free and keeps {DISK_RESERVE_BYTES >> 20} "
                       f"MiB of it; this upload needs {needed >> 20} MiB. Free some space and run the round again.",
                       status=507, kind="insufficient_storage")


def _fail_if_running(store: FeedbackStore, round_id: int, error: str) -> None:
    try:
        store.round_lock.finish_round(round_id, error=error)
    except Conflict:  # it ended meanwhile (timed out, reported failed by the worker): it stays as it ended
        pass


async def _receive(request: Request, tar_path: Path) -> None:
    """Stream the body to disk, refusing more than MAX_UPLOAD_BYTES."""
    received = 0
    fd = os.open(tar_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        async for chunk in request.stream():
            received += len(chunk)
            if received > MAX_UPLOAD_BYTES:
                raise ApiError(f"The upload is larger than {MAX_UPLOAD_BYTES >> 20} MiB.", status=413)
            f.write(chunk)


def _verify_and_register(store: FeedbackStore, folder: Path, *, base_model: str, round_id: int) -> int:
    """Unpack folder/upload.tar into folder/candidate, check it and register it (Conflict: 409 when the
    round ended or registered a candidate meanwhile)."""
    candidate = folder / "candidate"
    try:
        extract_tar(folder / "upload.tar", candidate, allowed=ROUND_NAMES, max_bytes=MAX_UPLOAD_BYTES,
                    max_members=MAX_UPLOAD_MEMBERS)
    except ArchiveRefused as e:
        raise UploadRejected(str(e)) from e
    metrics = check_candidate(candidate, base_model=base_model)
    try:
        return register_candidate(store, candidate, base_model=base_model,
                                  parent_version=metrics["evaluation"]["reference_version"],
                                  data_record={**metrics["data"], "trained_by": "worker"}, metrics=metrics,
                                  round_id=round_id)
    except Conflict:
        raise
    except (StoreError, RoundError) as e:  # a reference version this app does not have, say
        raise UploadRejected(f"its metrics.json does not fit this app ({e})") from e


def check_candidate(path: Path, *, base_model: str) -> dict:
    """The uploaded round has an adapter vLLM can load for our base model, and the metrics the gate
    reads (align.round.gate_metrics); returns those metrics. Raises UploadRejected with the reason."""
    missing = [name for name in UPLOAD_FILES if not (path / name).is_file()]
    if missing:
        raise UploadRejected(f"{', '.join(missing)} missing.")
    try:
        config = json.loads((path / "adapter_config.json").read_text())
        metrics = json.loads((path / "metrics.json").read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise UploadRejected(f"adapter_config.json or metrics.json is not valid JSON ({e}).") from e
    if not isinstance(config, dict):
        raise UploadRejected("adapter_config.json is not a JSON object.")
    if not isinstance(metrics, dict) or not isinstance(metrics.get("data"), dict):
        raise UploadRejected("its metrics.json is incomplete: it has no 'data' record.")
    try:
        gate_metrics(metrics)
    except RoundError as e:
        raise UploadRejected(f"its metrics.json is incomplete or malformed: {e}") from e
    trained_on = str(config.get("base_model_name_or_path") or "")
    if model_key(trained_on) != model_key(base_model):
        raise UploadRejected(f"it was trained on {trained_on!r}, but this app serves {base_model!r}.")
    _check_safetensors(path / "adapter_model.safetensors")
    return metrics


def _check_safetensors(path: Path) -> None:
    """A complete safetensors file: an 8-byte header length, a JSON header, and exactly the data
    the header describes (a truncated upload fails here, not later inside vLLM)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        header_len = int.from_bytes(f.read(8), "little")
        if not 0 < header_len <= min(size - 8, 100 << 20):
            raise UploadRejected("adapter_model.safetensors has no valid header.")
        try:
            header = json.loads(f.read(header_len))
        except ValueError as e:
            raise UploadRejected("adapter_model.safetensors has no valid header.") from e
    ends = [t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"]
    if not ends or 8 + header_len + max(ends) != size:
        raise UploadRejected(f"adapter_model.safetensors is truncated or empty ({size} bytes).")
