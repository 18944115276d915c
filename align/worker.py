"""The remote trainer: `python -m align worker --server URL --token T` runs one alignment round on
this machine (a GPU box, say) for an app running elsewhere.

It claims the app's round lock and receives the round's data (the same export a local round
reads), fetches the active adapter to continue from, trains with align.round's stages, and uploads
the candidate (adapter, reward model, metrics) as a tar. The app verifies it and registers it as a
candidate; the app's promotion gate decides as for any round. The worker never touches the app's
database: SQLite stays owned by the app process.

Every progress line is posted back (the admin tab shows it, and it is the worker's heartbeat); a
worker that fails reports the error and the round is marked failed.

Under `accelerate launch --num_processes N -m align worker ...`, rank 0 alone talks to the app
(claims, fetches, posts progress, uploads) and shares the round with the other ranks, which train
every stage beside it on the same machine (align.round.train_beside_main).
"""

from __future__ import annotations

import json
import logging
import shutil
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import httpx

from common.flags import add_dataclass_args, from_namespace
from common.models import model_key, resolve_model
from storage.adapters import ADAPTER_FILES, METRICS_FILE
from storage.archive import ArchiveRefused, allow_names, extract_tar
from storage.permissions import private_dir
from storage.process import current_process
from storage.secrets import SecretNotFound, read_secret

from .distributed import Ranks, start_ranks
from .round import (ActiveAdapter, RoundError, RoundJob, print_progress, round_data, train_beside_main,
                    train_candidate)
from .stage_configs import RoundConfig, add_stage_arguments, stage_configs_from_args

log = logging.getLogger(__name__)

# What the app's download route sends (loop.trainer_api._pack_adapter): the adapter alone.
ACTIVE_ADAPTER_NAMES = allow_names(files=ADAPTER_FILES)
MAX_ACTIVE_ADAPTER_BYTES = 4 << 30  # the app's own cap on a whole round's upload


@dataclass
class WorkerConfig:
    server: str = field(
        default="",
        metadata={"help": "Base URL of the app whose round this worker runs, e.g. http://app.internal:7860 "
                          "(required)."},
    )
    token: str = field(
        default="",
        metadata={"help": "An admin's API key for the app (sent as Authorization: Bearer): 'env:NAME' or "
                          "'file:PATH' keep it out of the process list; the key itself also works. Empty for "
                          "an app without --auth."},
    )
    work_dir: str = field(
        default="./worker",
        metadata={"help": "Where the base model is prepared ('default') and rounds are trained; a round's "
                          "files are deleted once the app has them."},
    )
    http_timeout_s: float = field(
        default=600.0,  # an upload of a large round over a slow link
        metadata={"help": "Seconds one HTTP call to the app may take."},
    )


class WorkerError(RuntimeError):
    """The app refused or could not be reached; the message is the app's sentence."""


def run_worker(cfg: WorkerConfig, *, round_cfg: RoundConfig, sft_cfg, rm_cfg, ppo_cfg, policy_cfgs=None, stages=None,
               ranks: Ranks | None = None) -> dict[str, Any]:
    """One round for the app at cfg.server; returns the registered candidate's version and status
    (on rank 0; the other ranks of an `accelerate launch` train beside it and return {})."""
    if not cfg.server:
        raise WorkerError("--server is required: the URL of the app to train for.")
    try:
        token = read_secret(cfg.token, "--token")
    except SecretNotFound as e:
        raise WorkerError(str(e)) from None
    ranks = ranks or start_ranks(device=round_cfg.device, timeout_s=round_cfg.rank_timeout_s)
    if not ranks.is_main:
        return train_beside_main(ranks, cfg=round_cfg, sft_cfg=sft_cfg, rm_cfg=rm_cfg, ppo_cfg=ppo_cfg,
                                 policy_cfgs=policy_cfgs, stages=stages)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with ranks.failures_shared(), httpx.Client(base_url=cfg.server, headers=headers,
                                               timeout=cfg.http_timeout_s) as client:
        claim = claim_round(client)
        round_id = claim["round"]["id"]
        try:
            return train_and_upload(client, claim, cfg, round_cfg=round_cfg, sft_cfg=sft_cfg, rm_cfg=rm_cfg,
                                    ppo_cfg=ppo_cfg, policy_cfgs=policy_cfgs, stages=stages, ranks=ranks)
        except BaseException as e:
            report_failure(client, round_id, e)
            raise


def train_and_upload(client: httpx.Client, claim: dict, cfg: WorkerConfig, *, round_cfg: RoundConfig, sft_cfg,
                     rm_cfg, ppo_cfg, policy_cfgs=None, stages=None, ranks: Ranks) -> dict[str, Any]:
    import torch

    round_id = claim["round"]["id"]
    # Prepared as a local round's (the pair cap included); too little data: RoundError before any model loads.
    data = round_data(claim["feedback"], round_cfg, max_pairs=rm_cfg.max_pairs)
    base_path = resolve_model(round_cfg.model, cfg.work_dir)
    if model_key(base_path) != model_key(claim["base_model"]):
        raise RoundError(f"This worker's --model is {base_path}, but the app serves {claim['base_model']}; "
                         f"train on the same base model.")
    if round_cfg.num_threads:
        torch.set_num_threads(round_cfg.num_threads)
    work = Path(cfg.work_dir) / f"round-{round_id}"
    shutil.rmtree(work, ignore_errors=True)
    private_dir(work)  # trained on users' conversations
    active = fetch_adapter(client, claim["active"]["version"], work / "active") if claim["active"] else None
    out = private_dir(work / "candidate")
    ranks.share(RoundJob(data=data, base_path=str(base_path), active=active, out_dir=out))
    progress = remote_progress(client, round_id)
    metrics = train_candidate(data=data, base_path=base_path, active=active, out_dir=out, cfg=round_cfg,
                              sft_cfg=sft_cfg, rm_cfg=rm_cfg, ppo_cfg=ppo_cfg, policy_cfgs=policy_cfgs, stages=stages,
                              progress=progress, ranks=ranks)
    # What a local round records about its data, so both kinds of candidate read the same.
    metrics["data"]["newest_feedback_id"] = data.newest_feedback_id
    (out / METRICS_FILE).write_text(json.dumps(metrics, indent=1))
    size_mb = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 2**20
    progress(f"Uploading the candidate ({size_mb:.1f} MiB) ...")
    registered = upload_candidate(client, round_id, out, work / "candidate.tar")
    shutil.rmtree(work, ignore_errors=True)
    return {"round": round_id, "version": registered["version"], "status": registered["status"],
            "reward_gain": metrics["evaluation"]["reward_gain"]}


def claim_round(client: httpx.Client) -> dict:
    """Take the app's round lock for this process; the answer carries the round's data."""
    me = current_process()
    return _ok(_call(client.post, "/api/align/worker/rounds", json={"host": me.host, "pid": me.pid,
                                                                     "start": me.start}))


def fetch_adapter(client: httpx.Client, version: int, out: Path) -> ActiveAdapter:
    """The served adapter's files, unpacked into `out` (created here) by storage.archive: only the
    adapter's own files, whatever the tar holds besides."""
    tar_path = out.with_suffix(".tar")
    with client.stream("GET", f"/api/align/worker/adapters/{version}") as response:
        if response.status_code != 200:
            response.read()
            _ok(response)
        with open(tar_path, "wb") as f:
            for chunk in response.iter_bytes():
                f.write(chunk)
    try:
        extract_tar(tar_path, out, allowed=ACTIVE_ADAPTER_NAMES, max_bytes=MAX_ACTIVE_ADAPTER_BYTES, max_members=8)
    except ArchiveRefused as e:
        raise WorkerError(f"The app's adapter v{version} was refused: {e}") from e
    finally:
        tar_path.unlink(missing_ok=True)
    return ActiveAdapter(version=version, path=str(out))


def remote_progress(client: httpx.Client, round_id: int) -> Callable[..., None]:
    """Print each stage line and post it (and each quiet PPO step line) to the app. A post that
    fails is logged, not fatal: the app may be restarting, the training goes on."""

    def progress(line: str, *, quiet: bool = False, stats: dict | None = None) -> None:  # the app keeps lines only
        print_progress(line, quiet=quiet)
        try:
            response = client.post(f"/api/align/worker/rounds/{round_id}/progress", json={"line": line})
            if response.status_code != 200:
                log.warning("The app did not take a progress line: %s", _message(response))
        except httpx.HTTPError as e:
            log.warning("Could not send progress to the app: %s", e)

    return progress


def upload_candidate(client: httpx.Client, round_id: int, out: Path, tar_path: Path) -> dict:
    """Pack the round (uncompressed: float weights barely compress) and post it."""
    with tarfile.open(tar_path, "w") as tar:
        for path in sorted(out.iterdir()):
            tar.add(path, arcname=path.name)
    with open(tar_path, "rb") as f:
        return _ok(_call(client.post, f"/api/align/worker/rounds/{round_id}/adapter", content=f,
                         headers={"Content-Type": "application/x-tar"}))


def report_failure(client: httpx.Client, round_id: int, error: BaseException) -> None:
    """Tell the app the round failed (it may already know: a refused upload ends the round there)."""
    message = str(error) if isinstance(error, (RoundError, WorkerError)) else \
        f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    try:
        client.post(f"/api/align/worker/rounds/{round_id}/fail", json={"error": message[:2000]})
    except httpx.HTTPError as e:
        log.warning("Could not report the failure to the app (%s); it marks the round failed once the "
                    "worker has been silent long enough.", e)


def _call(method, url: str, **kwargs) -> httpx.Response:
    try:
        return method(url, **kwargs)
    except httpx.HTTPError as e:
        raise WorkerError(f"The app could not be reached at {url}: {type(e).__name__}: {e}") from e


def _ok(response: httpx.Response) -> dict:
    if response.is_success:
        return response.json()
    raise WorkerError(f"The app refused {response.request.method} {response.request.url.path} "
                      f"({response.status_code}): {_message(response)}")


def _message(response: httpx.Response) -> str:
    try:
        return response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return response.text[:300]


def add_worker_arguments(parser) -> None:
    """`python -m align worker` flags: where the app is, and every field of the round's configs
    (align.stage_configs, the same as `python -m align run`)."""
    add_dataclass_args(parser, WorkerConfig)
    add_stage_arguments(parser)


def worker_from_args(args) -> dict[str, Any]:
    configs = stage_configs_from_args(args)
    return run_worker(from_namespace(WorkerConfig, args), round_cfg=configs.round, **configs.training())
