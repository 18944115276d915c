"""The adapter registry: DATA_DIR/adapters/ on disk and the adapters table, owned by one class.

What a version's folder holds is listed here and nowhere else:

    adapters/<version>/              one trained round, registered under a version never reused
        adapter_config.json          } what vLLM and PEFT load (ADAPTER_FILES: the config and one of
        adapter_model.safetensors    }  WEIGHT_FILES)
        value_head.pt, metrics.json, samples.json, README.md, reward_model/, sft/   (the rest of the round)
    adapters/.tmp-<random>/          a round being trained (align.round); renamed to <version>/ when registered
    adapters/.upload-<random>/       a remote trainer's round being received (loop/trainer_api.py)

A round becomes a version in one transaction (`register_dir`): the row is written, the round it
belongs to ends, and the folder is renamed into place last, so a failure leaves nothing registered
and nothing half-written where a version would be.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from .archive import remove_abandoned
from .checks import check_choice, check_name, json_object
from .errors import Conflict, IncompleteAdapter, NotFound
from .permissions import private_dir
from .records import Adapter
from .rounds import RoundLock
from .tables import Tables

log = logging.getLogger(__name__)

ADAPTERS_DIR = "adapters"  # DATA_DIR/adapters/<version>/
ROUND_PREFIX = ".tmp-"  # DATA_DIR/adapters/.tmp-*/: a round being trained in this process or a killed one
UPLOAD_PREFIX = ".upload-"  # DATA_DIR/adapters/.upload-*/: a remote trainer's upload (loop/trainer_api.py)

CONFIG_FILE = "adapter_config.json"
WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin")  # PEFT writes the first; older ones the second
ADAPTER_FILES = (CONFIG_FILE, *WEIGHT_FILES)  # what vLLM loads; a version needs the config and one weights file
VALUE_HEAD_FILE = "value_head.pt"  # PPO's value head, saved beside the adapter so the folder is a whole checkpoint
METRICS_FILE = "metrics.json"  # the round's full record (the adapters row keeps the gate's summary)
SAMPLES_FILE = "samples.json"  # the candidate's evaluation answers
MODEL_CARD = "README.md"  # PEFT writes one beside each adapter
REWARD_MODEL_DIR = "reward_model"  # the round's reward model
SFT_DIR = "sft"  # the round's SFT adapter, when it had demonstrations
# What a round writes (align.round.train_candidate): PEFT saves safetensors, the older .bin never.
ROUND_FILES = (CONFIG_FILE, WEIGHT_FILES[0], VALUE_HEAD_FILE, METRICS_FILE, SAMPLES_FILE, MODEL_CARD)
ROUND_FOLDERS = (REWARD_MODEL_DIR, SFT_DIR)
UPLOAD_FILES = (CONFIG_FILE, WEIGHT_FILES[0], METRICS_FILE)  # what an uploaded round must hold (safetensors only)

ADAPTER_STATUSES = ("candidate", "active", "rejected", "retired", "failed")


class AdapterRegistry:
    """Owns the adapters table and the folders under adapters_dir: registering a round's folder as a
    new version, the statuses and decisions of versions, the check that a version's files load,
    retention (pruning old versions' files) and clean-up of rounds and uploads left half-written.
    Writes through the chat database's shared connection (storage.tables), so a
    FeedbackStore.transaction() covers it too."""

    def __init__(self, *, tables: Tables, rounds: RoundLock, adapters_dir: str | Path) -> None:
        self._tables = tables
        self._rounds = rounds
        self.adapters_dir = Path(adapters_dir)

    # ---- versions on disk ------------------------------------------------------------------

    def new_round_dir(self) -> Path:
        """A new adapters/.tmp-<random>/ (0700: adapters are trained on users' chats) for a round to
        write into; register_dir moves it into place, remove_partial_rounds deletes it if it dies."""
        return private_dir(self.adapters_dir / f"{ROUND_PREFIX}{uuid.uuid4().hex[:12]}")

    def register_dir(self, folder: Path, *, base_model: str, parent_version: int | None, data: dict[str, Any],
                     metrics: dict[str, Any], round_id: int | None) -> int:
        """Rename a finished round's `folder` into a new adapters/<version>/ and register it as a
        'candidate', as one step. With round_id, that round must still be running without a candidate
        (else Conflict: it timed out, failed or registered one meanwhile), and it ends here, succeeded,
        in the same transaction. `metrics` is the summary the gate reads."""
        check_name(base_model, "A base model name")
        with self._tables.transaction():
            if round_id is not None:
                self._check_round_open(round_id)
            version = self._next_version()
            final = self._new_version_dir(version)
            self._insert(version, path=str(final.resolve()), base_model=base_model, parent_version=parent_version,
                         metrics=metrics, data=data, round_id=round_id)
            if round_id is not None:
                self._rounds.finish_round(round_id, adapter_version=version)
            folder.rename(final)  # last: if it fails, the transaction rolls back and nothing is registered
        return version

    def check_files(self, adapter: Adapter) -> None:
        """Refuse before vLLM sees it: a missing folder or file gets a clear sentence (IncompleteAdapter)."""
        path = Path(adapter.path)
        missing = [CONFIG_FILE] if not (path / CONFIG_FILE).is_file() else []
        if not any((path / name).is_file() for name in WEIGHT_FILES):
            missing.append(WEIGHT_FILES[0])
        if missing:
            raise IncompleteAdapter(
                f"Adapter v{adapter.version} is incomplete: {', '.join(missing)} missing in {path}.")

    def prune(self, *, retention: int) -> list[int]:
        """Delete the files of old versions beyond the newest `retention`; returns the versions pruned.
        Never the active version or the one served before it, nor an undecided candidate. Only folders
        directly inside adapters_dir are deleted: a database restored from elsewhere may name another
        installation's adapters."""
        adapters = self.adapters()
        protected = {a.version for a in self.activation_history()[:2]}  # active + its predecessor
        protected |= {a.version for a in adapters if a.status == "candidate" and a.decision is None}
        if retention > 0:
            protected |= {a.version for a in sorted(adapters, key=lambda a: a.version)[-retention:]}
        root = self.adapters_dir.resolve()
        pruned = []
        for adapter in adapters:
            if adapter.version in protected or adapter.pruned_at or adapter.status == "active":
                continue
            path = Path(adapter.path).resolve()
            if path.parent != root:
                log.warning("Adapter v%d's files are not deleted: %s is not a folder in %s.", adapter.version,
                            adapter.path, root)
                continue
            shutil.rmtree(path, ignore_errors=True)
            self.mark_adapter_pruned(adapter.version)
            pruned.append(adapter.version)
        if pruned:
            log.info("Deleted the files of adapter versions %s (retention %d).", pruned, retention)
        return pruned

    def remove_partial_rounds(self) -> None:
        """Delete what killed rounds and uploads left half-written (only call while holding the round
        lock; an upload the app is still receiving holds its folder, and is left alone)."""
        for partial in self.adapters_dir.glob(f"{ROUND_PREFIX}*"):
            shutil.rmtree(partial, ignore_errors=True)
        remove_abandoned(self.adapters_dir, UPLOAD_PREFIX)

    # ---- the adapters table ----------------------------------------------------------------

    def register_adapter(
        self,
        *,
        path: str,
        base_model: str,
        parent_version: int | None = None,
        metrics: dict[str, Any] | None = None,
        data: dict[str, Any] | None = None,
        round_id: int | None = None,
    ) -> int:
        """Record the adapter in `path` as a 'candidate' under the next version number (its folder
        stays where it is; register_dir moves a round's folder into adapters_dir)."""
        check_name(path, "An adapter path")
        check_name(base_model, "A base model name")
        with self._tables.transaction():
            version = self._next_version()
            self._insert(version, path=path, base_model=base_model, parent_version=parent_version,
                         metrics=metrics or {}, data=data or {}, round_id=round_id)
            return version

    def adapters(self) -> list[Adapter]:
        with self._tables.lock:
            return [Adapter.from_row(r) for r in self._tables.rows("SELECT * FROM adapters ORDER BY version")]

    def adapter(self, version: int) -> Adapter:
        with self._tables.lock:
            return Adapter.from_row(self._adapter_row(version))

    def active_adapter(self) -> Adapter | None:
        with self._tables.lock:
            rows = self._tables.rows("SELECT * FROM adapters WHERE status = 'active'")
        return Adapter.from_row(rows[0]) if rows else None

    def set_adapter_status(self, version: int, status: str, error: str | None = None) -> None:
        """Change an adapter's status; activating one retires the adapter that was active."""
        check_choice(status, ADAPTER_STATUSES, "An adapter status")
        with self._tables.transaction():
            self._adapter_row(version)
            changes: dict[str, Any] = {"status": status, "error": error}
            if status == "active":
                # The server serves exactly one adapter at a time.
                self._tables.db.execute(
                    "UPDATE adapters SET status = 'retired' WHERE status = 'active' AND version != ?", [version]
                )
                changes["activated_at"] = self._tables.now()
            self._tables.update("adapters", version, changes, key="version")

    def deactivate_adapters(self) -> None:
        """Serve the base model: the active adapter, if any, is retired."""
        with self._tables.transaction():
            self._tables.db.execute("UPDATE adapters SET status = 'retired' WHERE status = 'active'")

    def set_adapter_decision(self, version: int, *, promote: bool, reasons: list[str], by: str) -> None:
        """Record the promotion gate's (or an admin's) verdict; a refused candidate becomes 'rejected'."""
        decision = json_object({"promote": promote, "reasons": list(reasons), "by": by, "at": self._tables.now()},
                               "A decision")
        with self._tables.transaction():
            row = self._adapter_row(version)
            changes: dict[str, Any] = {"decision": decision}
            if not promote and row["status"] == "candidate":
                changes["status"] = "rejected"
            self._tables.update("adapters", version, changes, key="version")

    def mark_adapter_pruned(self, version: int) -> None:
        with self._tables.transaction():
            self._adapter_row(version)
            self._tables.update("adapters", version, {"pruned_at": self._tables.now()}, key="version")

    def activation_history(self) -> list[Adapter]:
        """Adapters that were ever served, the most recently activated first."""
        with self._tables.lock:
            rows = self._tables.rows(
                "SELECT * FROM adapters WHERE activated_at IS NOT NULL ORDER BY activated_at DESC")
        return [Adapter.from_row(r) for r in rows]

    # ---- helpers ---------------------------------------------------------------------------

    def _next_version(self) -> int:
        # Rows are never deleted (a trigger forbids it), so max + 1 is never a reused version.
        return self._tables.rows("SELECT coalesce(max(version), 0) + 1 AS v FROM adapters")[0]["v"]

    def _insert(self, version: int, *, path: str, base_model: str, parent_version: int | None,
                metrics: dict[str, Any], data: dict[str, Any], round_id: int | None) -> None:
        metrics_json = json_object(metrics, "Adapter metrics")
        data_json = json_object(data, "Adapter data")
        if parent_version is not None:
            self._adapter_row(parent_version)
        self._tables.insert("adapters", {
            "version": version, "path": path, "status": "candidate", "base_model": base_model,
            "parent_version": parent_version, "metrics": metrics_json, "data": data_json,
            "created_at": self._tables.now(), "round_id": round_id,
        })

    def _adapter_row(self, version: int) -> dict[str, Any]:
        rows = self._tables.rows("SELECT * FROM adapters WHERE version = ?", [version])
        if not rows:
            raise NotFound(f"Adapter version {version} does not exist.")
        return rows[0]

    def _check_round_open(self, round_id: int) -> None:
        claimed = self._rounds.round(round_id)
        earlier = claimed.adapter_version or next((a.version for a in self.adapters() if a.round_id == round_id),
                                                  None)
        if earlier is not None:
            raise Conflict(f"Round {round_id} already registered candidate v{earlier}; a round registers one.")
        if claimed.status != "running":
            raise Conflict(f"Round {round_id} is {claimed.status}, not running, so its candidate is not registered.")

    def _new_version_dir(self, version: int) -> Path:
        """adapters/<version>, or adapters/<version>-<random> where that name is taken: by a round killed
        between rename and commit, or by a newer database than the backup restored since. Never deleted
        here: it may hold an adapter that a newer database served."""
        final = self.adapters_dir / str(version)
        while os.path.lexists(final):
            final = self.adapters_dir / f"{version}-{uuid.uuid4().hex[:8]}"
        return final
