"""Discovery, loading, hot swap and unloading of the versions of one served model.

Versions are the integer sub-folders of the model base path, as in TF Serving. The
manager serves the highest version that loads and unloads the others after it loaded.
A folder is loaded only when it is complete (saved_model.pb, variables.index and every
variables data shard present) and its file listing (names, sizes, modification times)
did not change between two scans, so a folder still being copied is skipped. A folder
that fails to load (for example a truncated data shard) is retried when its listing changes.
"""

import os
import re
import threading
import time
from typing import Dict, List, Optional, Tuple

from absl import logging

from components.serving.errors import not_found
from components.serving.servable import Servable

_DATA_SHARD = re.compile(r"^variables\.data-(\d{5})-of-(\d{5})$")

# Seconds between the two start-up scans that establish a stable file listing.
_STARTUP_SETTLE_SECONDS = 0.2

# Minimum seconds between two warnings that the model base path is missing, because the
# poll repeats the check every --file_system_poll_wait_seconds.
MISSING_BASE_PATH_WARNING_SECONDS = 60.0


def list_version_dirs(base_path: str) -> Dict[int, str]:
    """Return {version: path} for the integer-named sub-folders of base_path."""
    if not os.path.isdir(base_path):
        return {}

    versions = {}
    for entry in os.listdir(base_path):
        path = os.path.join(base_path, entry)
        if entry.isdigit() and os.path.isdir(path):
            versions[int(entry)] = path
    return versions


def find_incomplete_part(saved_model_dir: str) -> Optional[str]:
    """Return what a SavedModel folder still lacks, or None when it is complete.

    TF2 `tf.saved_model.save` always writes variables/variables.index and its data
    shards, even for a model without variables, so their absence means the copy is
    unfinished.
    """
    if not os.path.isfile(os.path.join(saved_model_dir, "saved_model.pb")):
        return "saved_model.pb is missing"

    variables_dir = os.path.join(saved_model_dir, "variables")
    if not os.path.isfile(os.path.join(variables_dir, "variables.index")):
        return "variables/variables.index is missing"

    shards = set()
    shard_count = None
    for entry in os.listdir(variables_dir):
        match = _DATA_SHARD.match(entry)
        if match:
            shards.add(int(match.group(1)))
            shard_count = int(match.group(2))
    if shard_count is None:
        return "variables/variables.data-* shards are missing"

    missing = sorted(set(range(shard_count)) - shards)
    if missing:
        return f"variables data shards {missing} of {shard_count} are missing"
    return None


def fingerprint_dir(path: str) -> Tuple:
    """Return a listing of (relative path, size, mtime_ns) of every file under path."""
    listing = []
    for root, _, files in os.walk(path):
        for name in files:
            file_path = os.path.join(root, name)
            try:
                stat = os.stat(file_path)
            except FileNotFoundError:
                continue
            listing.append((os.path.relpath(file_path, path), stat.st_size, stat.st_mtime_ns))
    return tuple(sorted(listing))


class VersionManager:
    """Polls a model base path and keeps the latest complete version loaded."""

    def __init__(self, model_name: str, base_path: str, poll_wait_seconds: float):
        if poll_wait_seconds < 0:
            raise ValueError(
                f"file_system_poll_wait_seconds={poll_wait_seconds} is negative; use 0 to "
                "scan once at start-up or a positive number of seconds between scans."
            )
        self.model_name = model_name
        self.base_path = os.path.abspath(base_path)
        self.poll_wait_seconds = poll_wait_seconds

        self._lock = threading.Lock()
        self._servables: Dict[int, Servable] = {}
        self._previous_fingerprints: Dict[int, Tuple] = {}
        self._failed_fingerprints: Dict[int, Tuple] = {}
        self._skip_reasons: Dict[int, str] = {}
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._missing_warned_at: Optional[float] = None

    def start(self) -> None:
        """Scan at start-up, then poll in a daemon thread every poll_wait_seconds (0 = never)."""
        logging.info(
            "Watching model %s at %s (poll every %s s).",
            self.model_name, self.base_path, self.poll_wait_seconds,
        )
        self.scan()
        time.sleep(_STARTUP_SETTLE_SECONDS)
        self.scan()

        if self.poll_wait_seconds > 0:
            self._thread = threading.Thread(target=self._poll_loop, name="version-poller", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def get(self, version: Optional[int] = None) -> Servable:
        """Return the servable for `version`, or the latest one if None. Raises NOT_FOUND otherwise."""
        with self._lock:
            servables = dict(self._servables)

        if version is None:
            if not servables:
                raise not_found(f"Servable not found for request: Latest({self.model_name})")
            return servables[max(servables)]
        if version not in servables:
            raise not_found(
                f"Servable not found for request: Specific({self.model_name}, {version})"
            )
        return servables[version]

    def loaded_versions(self) -> List[int]:
        with self._lock:
            return sorted(self._servables)

    def scan(self) -> None:
        """Serve the highest version that is loaded or loads now, then unload every other version.

        A version that fails to load is skipped in favour of the next lower one, so a broken
        new folder never leaves the model without a served version.
        """
        self._warn_if_base_path_missing()
        on_disk = list_version_dirs(self.base_path)
        loaded = self.loaded_versions()
        # A loaded version stays a candidate while its folder exists, even if its files change.
        candidates = set(self._loadable_versions(on_disk)) | (set(loaded) & set(on_disk))

        if not on_disk and loaded:
            logging.warning("No versions left under %s; unloading all versions.", self.base_path)
            self._unload(loaded)
            return

        served = None
        for version in sorted(candidates, reverse=True):
            if version in loaded or self._load(version, on_disk[version]):
                served = version
                break
        if served is None:
            return

        stale = [version for version in self.loaded_versions() if version != served]
        self._unload(stale)

    def _warn_if_base_path_missing(self) -> None:
        """Log a warning at most once per MISSING_BASE_PATH_WARNING_SECONDS while base_path is missing."""
        if os.path.isdir(self.base_path):
            if self._missing_warned_at is not None:
                logging.info("Model base path %s exists now.", self.base_path)
                self._missing_warned_at = None
            return

        now = time.monotonic()
        recently_warned = (
            self._missing_warned_at is not None
            and now - self._missing_warned_at < MISSING_BASE_PATH_WARNING_SECONDS
        )
        if recently_warned:
            return
        self._missing_warned_at = now
        if self.poll_wait_seconds > 0:
            next_step = (
                f"The server keeps polling every {self.poll_wait_seconds} s and repeats this "
                f"warning at most every {MISSING_BASE_PATH_WARNING_SECONDS:.0f} s."
            )
        else:
            next_step = "Polling is off (--file_system_poll_wait_seconds=0), so restart the server afterwards."
        logging.warning(
            "Model base path %s does not exist or is not a folder, so model %s has no version "
            "to serve. Create it with integer version sub-folders (for example %s) or fix "
            "--model_base_path. %s",
            self.base_path, self.model_name, os.path.join(self.base_path, "1"), next_step,
        )

    def _loadable_versions(self, on_disk: Dict[int, str]) -> List[int]:
        loadable = []
        fingerprints = {}
        for version, path in sorted(on_disk.items()):
            fingerprint = fingerprint_dir(path)
            fingerprints[version] = fingerprint
            reason = find_incomplete_part(path)
            previous = self._previous_fingerprints.get(version)
            if reason is None and previous is None:
                reason = "first seen; waiting one scan for its files to stop changing"
            elif reason is None and fingerprint != previous:
                reason = "files changed since the last scan"
            if reason is None and fingerprint == self._failed_fingerprints.get(version):
                reason = "the last load failed and the files did not change since"

            if reason is None:
                loadable.append(version)
                self._skip_reasons.pop(version, None)
            elif self._skip_reasons.get(version) != reason:
                # Log each reason once per version, because polling repeats it every scan.
                logging.info("Skipping version %d at %s: %s.", version, path, reason)
                self._skip_reasons[version] = reason
        self._previous_fingerprints = fingerprints
        return loadable

    def _load(self, version: int, path: str) -> bool:
        logging.info("Loading model %s version %d from %s.", self.model_name, version, path)
        started = time.monotonic()
        try:
            servable = Servable(self.model_name, version, path)
        except Exception:  # noqa: BLE001 - any load failure must leave the server running.
            logging.exception(
                "Failed to load model %s version %d from %s; will retry when its files change.",
                self.model_name, version, path,
            )
            self._failed_fingerprints[version] = self._previous_fingerprints.get(version)
            return False

        with self._lock:
            self._servables[version] = servable
        self._failed_fingerprints.pop(version, None)
        logging.info(
            "Loaded model %s version %d from %s in %.2f s; signatures: %s.",
            self.model_name, version, path, time.monotonic() - started,
            sorted(servable.signature_defs),
        )
        return True

    def _unload(self, versions: List[int]) -> None:
        for version in versions:
            with self._lock:
                servable = self._servables.pop(version, None)
            if servable is not None:
                # In-flight requests keep their own reference, so they finish on this version.
                logging.info(
                    "Unloaded model %s version %d from %s.", self.model_name, version, servable.path
                )

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.poll_wait_seconds):
            try:
                self.scan()
            except Exception:  # noqa: BLE001 - a failed scan is retried at the next poll.
                logging.exception("Scan of %s failed; retrying in %s s.", self.base_path, self.poll_wait_seconds)


class ModelRegistry:
    """Registry of the served models by name, used by the gRPC and REST front ends."""

    def __init__(self, managers: List[VersionManager]):
        self._managers = {manager.model_name: manager for manager in managers}

    def get(self, model_name: str, version: Optional[int] = None) -> Servable:
        """Return the servable of model_name at version (latest if None). Raises NOT_FOUND."""
        manager = self._managers.get(model_name)
        if manager is None:
            spec = f"Latest({model_name})" if version is None else f"Specific({model_name}, {version})"
            raise not_found(f"Servable not found for request: {spec}")
        return manager.get(version)

    def loaded_versions(self, model_name: str) -> List[int]:
        """Return the loaded versions of model_name. Raises NOT_FOUND if none is loaded."""
        manager = self._managers.get(model_name)
        versions = manager.loaded_versions() if manager is not None else []
        if not versions:
            raise not_found(f"Could not find any versions of model {model_name}")
        return versions

    def start(self) -> None:
        for manager in self._managers.values():
            manager.start()

    def stop(self) -> None:
        for manager in self._managers.values():
            manager.stop()
