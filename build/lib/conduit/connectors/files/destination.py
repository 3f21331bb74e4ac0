"""Parquet, CSV and NDJSON files as destinations, local or on any fsspec store (S3, GCS, ...).

Layout under the destination ``path`` (``<root>``)::

    <root>/<table>/[col=value/...]part-<load id>-<chunk>-<n>.<ext>   the data readers see
    <root>/_conduit_tables/<table>.json                               manifest: current files + schema
    <root>/_conduit_staging/<load id>/...                             a load before publish
    <root>/_conduit_loads/<load id>.json                              the publish record

A chunk is staged as files of about ``file_size_mb`` (rolling to a new file when
reached; hive-style ``col=value/`` folders with ``partition_by``) plus a ledger
entry naming them, written last, so a chunk is either fully staged or ignored.
Publish is idempotent and crash-safe without renames (object stores have none):

1. write ``_publish.json`` in the staging folder (the files to move, and for
   ``replace`` the old files to drop, computed once);
2. move each staged file into the table folder (a rename locally, copy + delete on
   object stores; a file already moved is skipped);
3. write the load record (the commit point);
4. write the table manifest, delete the replaced files, drop the staging folder.

A crash before 3 leaves nothing new visible after :meth:`abort` (moved files are
deleted again); a crash after 3 is finished by the next ``is_published``/``publish``.
Old files are removed only after the new ones are in place.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from pydantic import Field

from conduit.config import Strict
from conduit.connectors.base import Capabilities, Destination, Load, StagedChunk
from conduit.connectors.files.chunk_writer import ChunkWriter
from conduit.connectors.files.storage import bucket, describe, filesystem, is_url
from conduit.errors import ConduitError, ConfigError, DestinationError

if TYPE_CHECKING:
    from pathlib import Path

    import pyarrow as pa

_F = TypeVar("_F", bound=Callable[..., Any])
TEXT_CODECS = {"gzip": "gz", "zstd": "zst", "bz2": "bz2", "lz4": "lz4"}


class FileDestinationOptions(Strict):
    """Keys of a file destination (table-shaped keys are handled by the config)."""

    path: str
    storage_options: dict[str, Any] = Field(default_factory=dict)


def _storage_errors(action: str) -> Callable[[_F], _F]:
    """Turn a storage client's exception in a destination method into one :class:`DestinationError` line."""

    def wrap(method: _F) -> _F:
        @functools.wraps(method)
        def guarded(self: FileDestination, *args: Any, **kwargs: Any) -> Any:
            try:
                return method(self, *args, **kwargs)
            except ConduitError:
                raise
            except Exception as exc:  # noqa: BLE001 - storage clients raise many types; one line each
                raise self._fail(exc, f"{action} {self.root}") from None

        return guarded  # type: ignore[return-value]

    return wrap


class FileDestination(Destination):
    """Base of the file destinations; subclasses write one format."""

    Options = FileDestinationOptions
    capabilities = Capabilities(write_modes=frozenset({"append", "replace"}), schema_evolution=False)
    ext: ClassVar[str]

    def __init__(self, name: str, options: FileDestinationOptions, project_dir: Path):
        super().__init__(name, options, project_dir)
        import os

        root = options.path if is_url(options.path) else str(project_dir / os.path.expanduser(options.path))
        self.fs, _ = filesystem(root, options.storage_options, f"destinations.{name}")
        self.root = root.rstrip("/")
        self.remote = is_url(root)
        self._checked = False

    def describe(self) -> str:
        """Where the files go."""
        return f"{self.name} ({self.root})"

    def _fail(self, exc: BaseException, action: str) -> DestinationError:
        return DestinationError(f"destination {self.name}: {describe(exc, action)}")

    def check(self) -> None:
        """The bucket (or the local parent folder) must exist; the folder itself is created."""
        if self._checked:
            return
        parent = self.root.rsplit("/", 1)[0]
        name = bucket(self.root)
        try:
            if not self.remote and not self.fs.isdir(parent):
                msg = f"destination {self.name}: folder {parent} does not exist"
                raise DestinationError(msg)
            if name is not None and not self.fs.exists(name):
                msg = f"destination {self.name}: bucket {name!r} does not exist or is not visible with these credentials ({self.root})"
                raise DestinationError(msg)
            if not self.remote:
                self.fs.makedirs(self.root, exist_ok=True)
        except DestinationError:
            raise
        except Exception as exc:  # noqa: BLE001 - storage clients raise many types; one line each
            raise self._fail(exc, f"write to {self.root}") from None
        self._checked = True

    # --- layout -------------------------------------------------------------------

    def staging(self, load: Load) -> str:
        """The staging folder of a load."""
        return f"{self.root}/_conduit_staging/{load.load_id}"

    def table_dir(self, table: str) -> str:
        """Where a table's files live."""
        return f"{self.root}/{table.replace('.', '/')}"

    def manifest(self, table: str) -> str:
        """The table's manifest (outside its folder, so directory scans see only data files)."""
        return f"{self.root}/_conduit_tables/{table}.json"

    def suffix(self, load: Load) -> str:
        """The file extension for ``load`` (``csv.gz`` for compressed text)."""
        return self.ext

    def _is_data(self, path: str) -> bool:
        name = path.rsplit("/", 1)[-1]
        return not name.startswith(("_", ".")) and (name.endswith(f".{self.ext}") or any(name.endswith(f".{self.ext}.{e}") for e in TEXT_CODECS.values()))

    def _data_files(self, folder: str) -> list[str]:
        """Data files under ``folder``, recursively (partition folders), without the protocol."""
        try:
            self.fs.invalidate_cache(folder)
            found = self.fs.find(folder) if self.fs.isdir(folder) else []
        except FileNotFoundError:
            return []
        return sorted(p for p in found if self._is_data(p))

    def _abs(self, path: str) -> str:
        """A path from fsspec listings (no protocol) as a full URL."""
        if not self.remote or "://" in path:
            return path
        return f"{self.root.split('://', 1)[0]}://{path}"

    def _read_json(self, path: str) -> dict[str, Any] | None:
        try:
            with self.fs.open(path, "rb") as fh:
                return dict(json.loads(fh.read()))
        except FileNotFoundError:
            return None

    def _write_json(self, path: str, data: dict[str, Any]) -> None:
        if not self.remote:
            self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        with self.fs.open(path, "wb") as fh:
            fh.write(json.dumps(data, indent=1).encode())

    # --- schema -------------------------------------------------------------------

    @_storage_errors("read the table schema under")
    def table_schema(self, table: str) -> pa.Schema | None:
        """The schema recorded in the table manifest, else the first data file's."""
        manifest = self._read_json(self.manifest(table))
        if manifest and manifest.get("arrow_schema"):
            import pyarrow as pa

            return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(manifest["arrow_schema"])))
        files = self._data_files(self.table_dir(table))
        return self.read_schema(self._abs(files[0])) if files else None

    def read_schema(self, path: str) -> pa.Schema | None:
        """Schema of one file (None where the format does not carry one)."""
        return None

    # --- staging ------------------------------------------------------------------

    @_storage_errors("read staged chunks under")
    def staged(self, load: Load) -> list[StagedChunk]:
        """Chunks whose ledger entry exists."""
        ledger = f"{self.staging(load)}/_chunks"
        names = set(StagedChunk.__dataclass_fields__)
        return [StagedChunk(**{k: v for k, v in entry.items() if k in names}) for entry in self._ledger(ledger)]

    def _ledger(self, ledger: str) -> list[dict[str, Any]]:
        try:
            self.fs.invalidate_cache(ledger)
            paths = sorted(self.fs.ls(ledger, detail=False)) if self.fs.exists(ledger) else []
        except FileNotFoundError:
            return []
        return [e for e in (self._read_json(p) for p in paths if p.endswith(".json")) if e is not None]

    @_storage_errors("write to")
    def stage(self, load: Load, chunk: StagedChunk, batches: pa.RecordBatchReader) -> int:
        """Write the chunk's files, then its ledger entry naming them (the commit point)."""
        self.check()
        self.validate(load)
        writer = ChunkWriter(self, load, chunk.chunk, int(load.options.file_size_mb * 1024 * 1024))
        try:
            for batch in batches:
                writer.write(batch)
            writer.close()
        except BaseException:
            writer.discard()
            raise
        entry = {**chunk.__dict__, "rows": writer.rows, "files": writer.files}
        try:
            self._write_json(f"{self.staging(load)}/_chunks/{chunk.chunk:05d}.json", entry)
        except OSError as exc:
            raise self._fail(exc, f"write to {self.staging(load)}") from None
        return writer.rows

    def validate(self, load: Load) -> None:
        """Reject a compression this format cannot write."""
        codec = (load.options.compression or "").lower()
        if codec and codec not in TEXT_CODECS and codec != "none":
            msg = f"destination {self.name}: compression {load.options.compression!r} is not supported for {self.ext}; use one of none, {', '.join(TEXT_CODECS)}"
            raise ConfigError(msg)

    # --- publish ------------------------------------------------------------------

    def _load_marker(self, load_id: str) -> str:
        return f"{self.root}/_conduit_loads/{load_id}.json"

    @_storage_errors("read the load records under")
    def is_published(self, load: Load) -> bool:
        """Whether the load's record exists (finishing its cleanup if a crash interrupted it)."""
        marker = self._read_json(self._load_marker(load.load_id))
        if marker is None:
            return False
        intent = self._read_json(f"{self.staging(load)}/_publish.json")
        if intent is not None:
            self._finish(load.load_id, intent)
        return True

    @_storage_errors("publish to")
    def publish(self, load: Load) -> int:
        """Move the staged files into place, record the load, then drop replaced files."""
        if self.is_published(load):
            return 0
        self.check()
        intent_path = f"{self.staging(load)}/_publish.json"
        try:
            intent = self._read_json(intent_path)
            if intent is None:
                entries = self._ledger(f"{self.staging(load)}/_chunks")
                target = self.table_dir(load.table)
                intent = {
                    "load_id": load.load_id,
                    "table": load.table,
                    "table_dir": target,
                    "files": [f for e in entries for f in e.get("files", [])],
                    "rows": sum(int(e["rows"]) for e in entries),
                    "old": self._data_files(target) if load.write_mode == "replace" else [],
                    "partition_by": load.options.partition_by,
                    "arrow_schema": base64.b64encode(load.schema.serialize().to_pybytes()).decode() if load.schema is not None else None,
                }
                self._write_json(intent_path, intent)
            self._move(self.staging(load), intent["table_dir"], intent["files"])
            marker = {k: intent[k] for k in ("load_id", "table", "rows")} | {"run_id": load.run_id, "published_at": _now(), "files": [f"{intent['table_dir']}/{f}" for f in intent["files"]]}
            self._write_json(self._load_marker(load.load_id), marker)
        except (OSError, ValueError) as exc:
            raise self._fail(exc, f"publish {load.table} to {self.root}") from None
        with contextlib.suppress(Exception):  # committed: is_published finishes the cleanup later
            self._finish(load.load_id, intent)
        return int(intent["rows"])

    def _move(self, staging: str, target: str, files: list[str]) -> None:
        """Move ``files`` (relative) from ``staging`` to ``target``; files already moved are skipped."""
        present = set(self._data_files(staging))
        todo = [f for f in files if self._strip(f"{staging}/{f}") in present]
        if not todo:
            return
        if self.remote:  # copy (server side) then delete: object stores have no rename
            self.fs.copy([f"{staging}/{f}" for f in todo], [f"{target}/{f}" for f in todo])
            self.fs.rm([f"{staging}/{f}" for f in todo])
            return
        for f in todo:
            self.fs.makedirs(f"{target}/{f}".rsplit("/", 1)[0], exist_ok=True)
            self.fs.mv(f"{staging}/{f}", f"{target}/{f}")

    def _strip(self, path: str) -> str:
        return path.split("://", 1)[1] if "://" in path else path

    def _finish(self, load_id: str, intent: dict[str, Any]) -> None:
        """After commit: write the table manifest, drop replaced files, drop staging (idempotent)."""
        target = intent["table_dir"]
        old = {self._strip(p) for p in intent.get("old", [])}
        current = [p for p in self._data_files(target) if p not in old]
        prefix = self._strip(target) + "/"
        self._write_json(
            self.manifest(intent["table"]),
            {
                "table": intent["table"],
                "load_id": load_id,
                "published_at": _now(),
                "partition_by": intent.get("partition_by") or [],
                "arrow_schema": intent.get("arrow_schema"),
                "files": [p.removeprefix(prefix) for p in current],
            },
        )
        gone = [self._abs(p) for p in sorted(old & set(self._data_files(target)))]
        if gone:
            self.fs.rm(gone)
        if not self.remote:
            _remove_empty_dirs(self.fs, target)
        self._drop(f"{self.root}/_conduit_staging/{load_id}")

    def _drop(self, folder: str) -> None:
        try:
            if self.fs.exists(folder):
                self.fs.rm(folder, recursive=True)
        except FileNotFoundError:
            pass

    @_storage_errors("clean up staging under")
    def abort(self, load: Load) -> None:
        """Drop the staging folder; files a crashed publish had moved are deleted again."""
        if self._read_json(self._load_marker(load.load_id)) is not None:
            return
        intent = self._read_json(f"{self.staging(load)}/_publish.json")
        if intent is not None:
            moved = set(self._data_files(intent["table_dir"]))
            back = [f"{intent['table_dir']}/{f}" for f in intent["files"]]
            gone = [p for p in back if self._strip(p) in moved]
            if gone:
                self.fs.rm(gone)
        self._drop(self.staging(load))

    # --- formats ------------------------------------------------------------------

    def wrap(self, raw: Any, load: Load) -> Any:
        """The stream a writer writes to (a compressor over ``raw`` for compressed text)."""
        return raw

    def open_writer(self, handle: Any, schema: pa.Schema, load: Load) -> Any:
        """A format writer over an open binary file."""
        raise NotImplementedError

    def write_batch(self, writer: Any, handle: Any, batch: pa.RecordBatch) -> None:
        """Write one batch."""
        writer.write_batch(batch)

    def close_writer(self, writer: Any) -> None:
        """Finish a file."""
        writer.close()


def _remove_empty_dirs(fs: Any, folder: str) -> None:
    """Drop empty partition folders left locally after replaced files were deleted."""
    import os

    for dirpath, _, _ in os.walk(folder, topdown=False):
        if dirpath != folder and not os.listdir(dirpath):
            os.rmdir(dirpath)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
