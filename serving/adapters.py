"""Which adapter serves: promotion (hot-swap into the running vLLM engine), rollback, restoring the
active version at start-up (falling back to the last good one) and retention of old adapter files.

A swap is two steps: load the new version into the engine (vLLM validates and preloads it under a
name no other weights ever had), then point new requests at it. The load, the slow step, happens
when the loop first sees a candidate (`prepare`), so a promotion is only the switch. Requests
already running keep the model object they started with (ChatService takes a snapshot of
`engine.active`), so nothing that is streaming is cut off or switched mid-answer.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from serving.backend import ActiveModel, EngineBackend
from storage.errors import IncompleteAdapter
from storage.records import Adapter
from storage.store import FeedbackStore

log = logging.getLogger(__name__)


@dataclass
class AdapterConfig:
    retention: int = field(
        default=5,
        metadata={"help": "Newest adapter versions whose files are kept on disk; older ones are deleted "
                          "(never the active version or the one before it, nor undecided candidates)."},
    )


class AdapterError(Exception):
    """An activation that cannot happen; the message is a sentence for the admin."""

    def __init__(self, message: str, *, status: int = 409):
        super().__init__(message)
        self.message, self.status = message, status


class AdapterManager:
    def __init__(self, *, engine: EngineBackend, store: FeedbackStore, cfg: AdapterConfig):
        self.engine = engine
        self.store = store
        self.cfg = cfg
        self._swap = asyncio.Lock()  # one activation at a time; serving never waits on it

    async def restore(self) -> ActiveModel:
        """At start-up: serve the version that was active; if its files are gone or broken, the
        newest one served before it that still loads; else the base model. Says why in the log
        and on the adapter (its error, shown in the admin tab). The version served before it is
        loaded too, so that a rollback after a restart is also only a switch."""
        served = await self._restore_active()
        await self._prepare_rollback_target(served.adapter_version)
        return served

    async def _restore_active(self) -> ActiveModel:
        active = self.store.registry.active_adapter()
        if active is None:
            log.info("Serving the base model (no adapter is active).")
            return await self.activate(None, by="start-up")
        earlier = [a for a in self.store.registry.activation_history() if a.version != active.version]
        for adapter in [active, *earlier]:
            if adapter.status == "failed":
                continue
            try:
                return await self.activate(adapter.version, by="start-up")
            except AdapterError as e:
                log.error("Could not restore adapter v%d: %s Falling back to the version served before it.",
                          adapter.version, e.message)
        log.error("No earlier adapter loads either; serving the base model.")
        return await self.activate(None, by="start-up")

    async def _prepare_rollback_target(self, serving: int | None) -> None:
        previous = next((a for a in self.store.registry.activation_history()
                         if a.version != serving and a.status != "failed" and not a.pruned_at), None)
        if previous is None:
            return
        try:
            await self.prepare(previous.version)
        except AdapterError as e:  # only a rollback to it would fail, and say so then
            log.warning("Adapter v%d (served before) could not be loaded ahead: %s", previous.version, e.message)

    async def prepare(self, version: int) -> None:
        """Load a candidate into the engine while it waits for the gate, so that promoting it later is
        only the switch of activate() (milliseconds) and not a load from disk (seconds). A candidate
        whose files vLLM refuses is marked failed here, before anyone can promote it."""
        async with self._swap:
            await self._load(version)

    async def _load(self, version: int) -> Adapter:
        adapter = self.store.registry.adapter(version)  # NotFound for unknown versions
        if adapter.pruned_at:
            raise AdapterError(f"Adapter v{version}'s files were deleted by retention on {adapter.pruned_at}.")
        try:
            self._check_files(adapter)
            try:
                await self.engine.load_adapter(version, adapter.path)  # returns at once when already loaded
            except Exception as e:  # vLLM refuses corrupt weights, wrong ranks or another base model
                raise AdapterError(f"vLLM could not load adapter v{version}: {e}") from e
        except AdapterError as e:
            if version != self.engine.active.adapter_version:  # what serves keeps serving
                self.store.registry.set_adapter_status(version, "failed", error=e.message)
            raise
        return adapter

    def _check_files(self, adapter: Adapter) -> None:
        """Refuse before vLLM sees it: a missing folder or file gets a clear sentence."""
        try:
            self.store.registry.check_files(adapter)
        except IncompleteAdapter as e:
            raise AdapterError(str(e)) from e

    async def activate(self, version: int | None, *, by: str) -> ActiveModel:
        """Serve new requests with adapter `version` (None: the base model). On failure nothing changes."""
        async with self._swap:
            if version is None:
                active = await self._merge_and_switch(None, by=by)
                log.info("Now serving the base model (by %s).", by)
                return active
            adapter = await self._load(version)
            active = await self._merge_and_switch(version, by=by, adapter=adapter)
            log.info("Now serving adapter v%d (by %s).", version, by)
        self.prune()
        return active

    async def _merge_and_switch(self, version: int | None, *, by: str, adapter: Adapter | None = None) -> ActiveModel:
        """Merge the new version into the engine's weights first (every version stays exact through
        its LoRA, so running requests do not notice), then switch; the first request after the
        switch already runs at full speed. If the switch fails, the merge is undone."""
        before = self.engine.active.adapter_version
        await self.engine.merge(version)
        try:
            return await asyncio.to_thread(self._switch, version, by=by, adapter=adapter)
        except BaseException:
            await self.engine.merge(before)
            raise

    def _switch(self, version: int | None, *, by: str, adapter: Adapter | None = None) -> ActiveModel:
        """Record `version` as active, then point the engine at it, as one step (in a worker thread:
        the write may wait for a lock). An engine that refuses rolls the write back, and a commit that
        fails puts the engine back, so the database and the engine always agree on what serves."""
        before = self.engine.active.adapter_version
        try:
            with self.store.transaction():
                if version is None:
                    self.store.registry.deactivate_adapters()
                else:
                    self.store.registry.set_adapter_status(version, "active")
                    if by not in ("gate", "start-up"):
                        self._record_manual_decision(adapter, by)
                return self.engine.activate(version)
        except BaseException:
            if self.engine.active.adapter_version != before:  # switched, but the commit failed
                self.engine.activate(before)
            raise

    def _record_manual_decision(self, adapter: Adapter, by: str) -> None:
        earlier = adapter.decision or {}
        if earlier.get("promote") is False:
            reasons = [f"Promoted by hand by {by}, overriding the gate."] + earlier.get("reasons", [])
        else:
            reasons = [f"Activated by hand by {by}."] + earlier.get("reasons", [])
        self.store.registry.set_adapter_decision(adapter.version, promote=True, reasons=reasons, by=by)

    def prune(self) -> list[int]:
        """Delete the files of old adapters beyond the retention count (storage.adapters.AdapterRegistry.prune);
        returns the versions pruned."""
        return self.store.registry.prune(retention=self.cfg.retention)
