"""Read what a local run did from its ML Metadata store: component states, durations and the push."""

import dataclasses
from typing import List, Optional

from ml_metadata import errors
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

_STATE_NAMES = {value: name for name, value in metadata_store_pb2.Execution.State.items()}


@dataclasses.dataclass(frozen=True)
class ComponentRun:
    """One execution of a component: its node id, final state (COMPLETE, CACHED, FAILED, ...) and seconds."""

    component: str
    state: str
    seconds: float


@dataclasses.dataclass(frozen=True)
class Blessing:
    """The newest blessing artifact of one type: its verdict and, where the component wrote one, why."""

    blessed: bool
    message: str


@dataclasses.dataclass(frozen=True)
class PushResult:
    """The newest Pusher output: whether it pushed, and where."""

    pushed: bool
    destination: str


def open_store(metadata_path: str) -> metadata_store.MetadataStore:
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = metadata_path
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return metadata_store.MetadataStore(config)


def component_runs(store: metadata_store.MetadataStore, since_ms: int) -> List[ComponentRun]:
    """Return the executions created at or after `since_ms` (milliseconds since the epoch), oldest first."""
    runs = []
    for execution in sorted(store.get_executions(), key=lambda item: item.id):
        if execution.create_time_since_epoch < since_ms:
            continue
        node_contexts = [context.name for context in store.get_contexts_by_execution(execution.id)
                         if context.type_id == _node_context_type_id(store)]
        component = node_contexts[0].split(".")[-1] if node_contexts else str(execution.type_id)
        seconds = (execution.last_update_time_since_epoch - execution.create_time_since_epoch) / 1000.0
        runs.append(ComponentRun(component, _STATE_NAMES.get(execution.last_known_state, "UNKNOWN"), seconds))
    return runs


def _node_context_type_id(store: metadata_store.MetadataStore) -> int:
    return store.get_context_type("node").id


def latest_artifact_uri(store: metadata_store.MetadataStore, type_name: str) -> Optional[str]:
    """Return the URI of the newest artifact of `type_name` (e.g. "ModelEvaluation"), or None."""
    try:
        artifacts = store.get_artifacts_by_type(type_name)
    except errors.NotFoundError:
        return None
    return max(artifacts, key=lambda artifact: artifact.id).uri if artifacts else None


def latest_blessing(store: metadata_store.MetadataStore, type_name: str) -> Optional[Blessing]:
    """Return the newest `type_name` ("ModelBlessing" or "InfraBlessing") artifact's verdict, or None."""
    try:
        artifacts = store.get_artifacts_by_type(type_name)
    except errors.NotFoundError:
        return None
    if not artifacts:
        return None
    properties = max(artifacts, key=lambda artifact: artifact.id).custom_properties
    blessed = "blessed" in properties and properties["blessed"].int_value == 1
    message = properties["blessing_message"].string_value if "blessing_message" in properties else ""
    return Blessing(blessed, message)


def latest_push(store: metadata_store.MetadataStore) -> Optional[PushResult]:
    """Return the newest PushedModel artifact's outcome, or None before the first push attempt."""
    try:
        artifacts = store.get_artifacts_by_type("PushedModel")
    except errors.NotFoundError:
        return None  # The first Pusher run registers the type; before it there is nothing to read.
    if not artifacts:
        return None
    newest = max(artifacts, key=lambda artifact: artifact.id)
    properties = newest.custom_properties
    pushed = properties["pushed"].int_value == 1 if "pushed" in properties else False
    destination = properties["pushed_destination"].string_value if "pushed_destination" in properties else ""
    return PushResult(pushed, destination)
