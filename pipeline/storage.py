"""Where data lives: a local path or an object-storage URI, opened through ``pyarrow.fs``.

Every location the pipeline reads or writes (image folders, run directories, checkpoints,
exports) goes through :func:`location`, which returns a :class:`pathlib.Path` for a local
path (or a ``file://`` URI) and an :class:`ObjectPath` for ``s3://``, ``gs://`` or
``gcs://``. An :class:`ObjectPath` offers the few ``Path`` operations the run directory
needs (``/``, ``name``, ``parent``, ``is_file``, ``read_bytes``, ``write_bytes``,
``unlink``), so one code path serves a disk and a bucket.

Credentials and endpoints come only from each store's standard environment (for S3:
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_REGION``,
``AWS_ENDPOINT_URL``; for GCS: ``GOOGLE_APPLICATION_CREDENTIALS`` and its own). The names of
:data:`FORWARDED_ENV` are the only ones :func:`forwarded_env` passes on to Ray workers; their
values are never written to ``run.json``, logs or error messages.

Object storage has no rename: :meth:`ObjectPath.write_bytes` writes an object in one request,
so it appears whole or not at all. Nothing here imports torch or Ray.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import unquote, urlparse

import pyarrow.fs as pafs

REMOTE_SCHEMES: frozenset[str] = frozenset({"s3", "gs", "gcs"})
"""URI schemes of object stores (``gcs`` is read as ``gs``)."""

FORWARDED_ENV: tuple[str, ...] = (
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION",
    "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE",
    "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CA_BUNDLE", "AWS_EC2_METADATA_DISABLED",
    "GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT", "STORAGE_EMULATOR_HOST",
)
"""The environment variables that configure a store and reach the Ray workers (names only
from this list; anything else in the driver's environment stays there)."""

_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


class StorageError(OSError):
    """An object-storage request failed; ``str(error)`` is one line naming the URI and the
    reason (no such key, access denied, no such bucket, unreachable endpoint)."""


def scheme_of(text: str | os.PathLike[str]) -> str | None:
    """The lower-case URI scheme of ``text`` (``"s3"``, ``"file"``), None for a plain path."""
    if not isinstance(text, str):
        return None
    found = _SCHEME_RE.match(text)
    return found[1].lower() if found else None


def is_remote(text: str | os.PathLike[str] | ObjectPath) -> bool:
    """Whether ``text`` names an object in an object store (``s3://``, ``gs://``)."""
    if isinstance(text, ObjectPath):
        return True
    return scheme_of(text) in REMOTE_SCHEMES


def forwarded_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The :data:`FORWARDED_ENV` variables set in ``environ`` (default ``os.environ``), for a
    Ray ``runtime_env={"env_vars": ...}``; never log or record the values."""
    env = os.environ if environ is None else environ
    return {name: env[name] for name in FORWARDED_ENV if env.get(name)}


_FS_CACHE: dict[tuple[Any, ...], pafs.FileSystem] = {}
_FS_LOCK = threading.Lock()


def _filesystem(scheme: str, bucket: str) -> pafs.FileSystem:
    """The (cached) file system of ``scheme://bucket``, configured from the environment."""
    key = (scheme, bucket, tuple(sorted(forwarded_env().items())))
    with _FS_LOCK:
        cached = _FS_CACHE.get(key)
    if cached is not None:
        return cached
    try:
        fs, _ = pafs.FileSystem.from_uri(f"{scheme}://{bucket}")
    except (OSError, ValueError) as exc:
        raise StorageError(f"{scheme}://{bucket}: cannot open the store "
                           f"({_reason(exc)})") from None
    with _FS_LOCK:
        _FS_CACHE[key] = fs
    return fs


def _reason(exc: BaseException) -> str:
    """The first line of an Arrow or OS error, shortened to what a user acts on."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    upper = text.upper()
    if "ACCESS_DENIED" in upper or "ACCESSDENIED" in upper or "FORBIDDEN" in upper \
            or "HTTP STATUS 403" in upper:
        return "access denied (check the credentials and the bucket policy)"
    if "NO_SUCH_BUCKET" in upper or "NOSUCHBUCKET" in upper:
        return "no such bucket"
    if "INVALIDACCESSKEYID" in upper or "SIGNATUREDOESNOTMATCH" in upper:
        return "the credentials were refused (check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)"
    if "COULDN'T CONNECT" in upper or "CONNECTION REFUSED" in upper or "CURL" in upper:
        return "cannot reach the store (check AWS_ENDPOINT_URL and the network)"
    return first[:300]


class ObjectPath:
    """An object (or a prefix, a "folder") in an object store: ``scheme://bucket/key``.

    Immutable and picklable (the file system is looked up from the environment where it is
    used, so credentials never travel with it).

    Args:
        uri: ``s3://bucket/key``, ``gs://bucket/key`` or ``gcs://bucket/key``.

    Raises:
        ValueError: not such a URI, or no bucket.
    """

    __slots__ = ("bucket", "key", "scheme")

    def __init__(self, uri: str) -> None:
        scheme = scheme_of(uri)
        if scheme not in REMOTE_SCHEMES:
            raise ValueError(f"{uri!r}: not an object-storage URI (s3://, gs://)")
        rest = uri[len(scheme) + 3:]
        parts = [p for p in rest.split("/") if p not in ("", ".")]
        if not parts:
            raise ValueError(f"{uri!r}: no bucket in the URI")
        if ".." in parts:
            raise ValueError(f"{uri!r}: '..' is not allowed in an object key")
        if "@" in parts[0]:  # s3://KEY:SECRET@bucket would end up in run.json and messages
            raise ValueError(f"{scheme}://...@{parts[0].rsplit('@', 1)[1]}: credentials in a "
                             "URI are not accepted; set them in the environment "
                             "(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)")
        self.scheme = "gs" if scheme == "gcs" else scheme
        self.bucket = parts[0]
        self.key = "/".join(parts[1:])

    # ------------------------------------------------------------- pure path operations
    @property
    def fs_path(self) -> str:
        """``bucket/key``: the path ``pyarrow.fs`` takes."""
        return f"{self.bucket}/{self.key}" if self.key else self.bucket

    def __str__(self) -> str:
        return f"{self.scheme}://{self.fs_path}"

    def __repr__(self) -> str:
        return f"ObjectPath({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ObjectPath) and str(other) == str(self)

    def __hash__(self) -> int:
        return hash(str(self))

    def __lt__(self, other: ObjectPath) -> bool:
        return str(self) < str(other)

    def __truediv__(self, name: str | os.PathLike[str]) -> ObjectPath:
        return ObjectPath(f"{self}/{os.fspath(name)}")

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1] if self.key else ""

    @property
    def parent(self) -> ObjectPath:
        if "/" not in self.key:
            return ObjectPath(f"{self.scheme}://{self.bucket}")
        return ObjectPath(f"{self.scheme}://{self.bucket}/{self.key.rsplit('/', 1)[0]}")

    @property
    def parents(self) -> list[ObjectPath]:
        out, path = [], self
        while path.key:
            path = path.parent
            out.append(path)
        return out

    def with_name(self, name: str) -> ObjectPath:
        return self.parent / name

    def expanduser(self) -> ObjectPath:
        return self

    def absolute(self) -> ObjectPath:
        return self

    def relative_to(self, other: ObjectPath) -> str:
        """The key of ``self`` below ``other`` (``/``-separated)."""
        base = str(other).rstrip("/") + "/"
        if not str(self).startswith(base):
            raise ValueError(f"{self} is not under {other}")
        return str(self)[len(base):]

    # ------------------------------------------------------------- requests
    @property
    def filesystem(self) -> pafs.FileSystem:
        return _filesystem(self.scheme, self.bucket)

    def error(self, exc: BaseException, doing: str) -> StorageError:
        """A one-line :class:`StorageError` about ``self`` (``doing``: what was tried)."""
        return StorageError(f"{self}: cannot {doing}: {_reason(exc)}")

    def info(self) -> pafs.FileInfo:
        try:
            return self.filesystem.get_file_info(self.fs_path)
        except OSError as exc:
            raise self.error(exc, "look it up") from None

    def exists(self) -> bool:
        return self.info().type != pafs.FileType.NotFound

    def is_file(self) -> bool:
        return self.info().type == pafs.FileType.File

    def is_dir(self) -> bool:
        return self.info().type == pafs.FileType.Directory

    def read_bytes(self) -> bytes:
        """The object's content (one request).

        Raises:
            FileNotFoundError: no such object (one line naming the URI).
            StorageError: access denied, no bucket, store unreachable (one line).
        """
        with self.open_binary() as fh:
            try:
                return bytes(fh.read())
            except OSError as exc:  # a store may answer only once the read starts
                raise self._read_error(exc) from None

    def open_binary(self) -> BinaryIO:
        """A buffered binary stream over the object (read as it is consumed; iterating it
        yields lines), for files too large to hold whole (a list of a million images).

        Raises:
            FileNotFoundError: no such object (one line naming the URI).
            StorageError: access denied, no bucket, store unreachable (one line).
        """
        try:
            stream = self.filesystem.open_input_stream(self.fs_path)
        except OSError as exc:
            raise self._read_error(exc) from None
        return io.BufferedReader(stream)  # type: ignore[arg-type]

    def _read_error(self, exc: OSError) -> Exception:
        """The one-line error of a failed read: no such object (or bucket), or the store's."""
        if isinstance(exc, FileNotFoundError) or "NO_SUCH_KEY" in str(exc).upper() \
                or "NOSUCHKEY" in str(exc).upper():
            return self._not_found()
        return self.error(exc, "read it")

    def _not_found(self) -> FileNotFoundError:
        """No such object, or (one more request to tell) no such bucket."""
        try:
            bucket = self.filesystem.get_file_info(self.bucket)
            if bucket.type == pafs.FileType.NotFound:
                return FileNotFoundError(f"{self}: no such bucket {self.bucket!r}")
        except OSError:
            pass
        return FileNotFoundError(f"{self}: no such object")

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    def write_bytes(self, data: bytes) -> int:
        """Write ``data`` as the whole object in one write (it appears whole or not at all)."""
        try:
            stream = self.filesystem.open_output_stream(self.fs_path, metadata={})
            try:
                stream.write(data)
            finally:
                stream.close()
        except OSError as exc:
            raise self.error(exc, "write it") from None
        return len(data)

    def unlink(self, missing_ok: bool = False) -> None:
        try:
            self.filesystem.delete_file(self.fs_path)
        except FileNotFoundError:
            if not missing_ok:
                raise FileNotFoundError(f"{self}: no such object") from None
        except OSError as exc:
            raise self.error(exc, "delete it") from None

    def mkdir(self, mode: int = 0o777, parents: bool = False, exist_ok: bool = False) -> None:
        """Nothing to create in an object store (a prefix exists through its objects); the
        bucket must exist.

        Raises:
            StorageError: no such bucket, or it cannot be reached.
        """
        bucket = ObjectPath(f"{self.scheme}://{self.bucket}")
        if bucket.info().type == pafs.FileType.NotFound:
            raise StorageError(f"{self}: no such bucket {self.bucket!r}")

    def copy_to(self, target: ObjectPath) -> None:
        try:
            self.filesystem.copy_file(self.fs_path, target.fs_path)
        except OSError as exc:
            raise self.error(exc, f"copy it to {target}") from None

    def walk_files(self) -> list[pafs.FileInfo]:
        """Every object below this prefix (recursive), in key order."""
        selector = pafs.FileSelector(self.fs_path, recursive=True, allow_not_found=True)
        try:
            infos = self.filesystem.get_file_info(selector)
        except OSError as exc:
            raise self.error(exc, "list it") from None
        return sorted((i for i in infos if i.type == pafs.FileType.File), key=lambda i: i.path)


Location = Path | ObjectPath
"""A local path or an object in an object store."""


def location(text: str | os.PathLike[str] | ObjectPath) -> Location:
    """``text`` as a :class:`Path` (a local path or ``file://`` URI, ``~`` expanded) or an
    :class:`ObjectPath` (``s3://``, ``gs://``, ``gcs://``).

    Raises:
        ValueError: a URI of a scheme this project does not open (``http://``).
    """
    if isinstance(text, ObjectPath | Path):
        return text
    scheme = scheme_of(text)
    if scheme is None:
        return Path(text).expanduser()
    assert isinstance(text, str)
    if scheme == "file":
        parsed = urlparse(text)
        return Path(unquote(parsed.path))
    if scheme in REMOTE_SCHEMES:
        return ObjectPath(text)
    raise ValueError(f"{text!r}: unsupported URI scheme {scheme!r} (expected a local path, "
                     "file://, s3:// or gs://)")


def filesystem_for(uri: str | os.PathLike[str]) -> tuple[pafs.FileSystem, str]:
    """``(file system, path on it)`` of a local path or URI, for ``pyarrow`` readers
    (``pq.read_table(path, filesystem=fs)``)."""
    where = location(uri)
    if isinstance(where, ObjectPath):
        return where.filesystem, where.fs_path
    return pafs.LocalFileSystem(), str(where.absolute())


def arrow_file(path: Location) -> tuple[str, pafs.FileSystem | None]:
    """``(path, filesystem)`` for ``pyarrow.parquet``'s readers and writers (None: local)."""
    if isinstance(path, ObjectPath):
        return path.fs_path, path.filesystem
    return str(path), None


def open_input(uri: str | os.PathLike[str]) -> bytes:
    """The bytes of one file or object (a manifest row's ``s3://`` URI, a local path).

    Raises:
        FileNotFoundError: no such file or object (one line naming it).
        StorageError: access denied, no bucket, store unreachable (one line naming it).
    """
    where = location(uri)
    return where.read_bytes()


def open_binary(where: str | os.PathLike[str] | ObjectPath) -> BinaryIO:
    """A binary stream over a local file or an object (close it, or use ``with``); iterating
    it yields lines, read as they are consumed.

    Raises:
        FileNotFoundError: no such file or object (one line naming it).
        StorageError: access denied, no bucket, store unreachable (one line naming it).
    """
    place = location(where)
    if isinstance(place, ObjectPath):
        return place.open_binary()
    return open(place, "rb")


def missing_reason(where: Location) -> str:
    """Why ``where`` (found neither a file nor a folder) is not there, for a one-line error:
    ``no such bucket 'name'`` when its bucket is missing, else ``not found``."""
    if isinstance(where, ObjectPath) and where.key:
        if not ObjectPath(f"{where.scheme}://{where.bucket}").exists():
            return f"no such bucket {where.bucket!r}"
    return "not found"


@dataclass(frozen=True)
class Entry:
    """One name in a folder listing: its path and whether it is a plain file."""

    name: str
    path: Location
    is_file: bool


def list_dir(folder: Location) -> list[Entry]:
    """The entries directly in ``folder``, sorted by name (empty when it does not exist).

    A local symbolic link is not a plain file here (``is_file`` does not follow links).
    """
    if isinstance(folder, ObjectPath):
        selector = pafs.FileSelector(folder.fs_path, recursive=False, allow_not_found=True)
        try:
            infos = folder.filesystem.get_file_info(selector)
        except OSError as exc:
            raise folder.error(exc, "list it") from None
        out = [Entry(i.base_name, folder / i.base_name, i.type == pafs.FileType.File)
               for i in infos if i.base_name]
        return sorted(out, key=lambda e: e.name)
    if not folder.is_dir():
        return []
    with os.scandir(folder) as it:
        local = [Entry(e.name, Path(e.path), e.is_file(follow_symlinks=False)) for e in it]
    return sorted(local, key=lambda e: e.name)


def write_whole(path: Location, data: bytes, *, tmp_name: str) -> None:
    """Write ``data`` to ``path`` so that it appears only complete: on a disk through
    ``tmp_name`` beside it (fsync, rename); on object storage in one object write."""
    if isinstance(path, ObjectPath):
        path.write_bytes(data)
        return
    tmp = path.with_name(tmp_name)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def cache_dir() -> Path:
    """Where fetched objects (checkpoints) are kept: ``$DSFD_CACHE_DIR``, else
    ``~/.cache/dsfd/objects``."""
    configured = os.environ.get("DSFD_CACHE_DIR")
    return Path(configured) if configured else Path.home() / ".cache" / "dsfd" / "objects"


def fetch_to_cache(uri: str) -> Path:
    """A local copy of the object ``uri`` (a checkpoint), fetched once per content version.

    The copy's name carries a digest of the URI and of the object's size and modification
    time, so a replaced object is fetched again; it is written to a temporary name and
    renamed, so a killed fetch leaves no partial copy under the final name.

    Raises:
        FileNotFoundError: no such object.
        StorageError: it cannot be read.
    """
    where = location(uri)
    if not isinstance(where, ObjectPath):
        return where
    info = where.info()
    if info.type != pafs.FileType.File:
        raise FileNotFoundError(f"{where}: no such object")
    stamp = f"{where}|{info.size}|{info.mtime_ns}"
    digest = hashlib.sha256(stamp.encode("utf-8")).hexdigest()[:16]
    target = cache_dir() / f"{digest}-{where.name}"
    if target.is_file() and target.stat().st_size == info.size:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    write_whole(target, where.read_bytes(), tmp_name=f".tmp-{os.getpid()}-{target.name}")
    return target


def iter_object_files(prefix: ObjectPath) -> Iterator[ObjectPath]:
    """The objects below ``prefix`` in key order (hidden names, starting with ``.``, left
    out)."""
    base = prefix.fs_path.rstrip("/") + "/"
    for info in prefix.walk_files():
        rel = info.path[len(base):] if info.path.startswith(base) else info.base_name
        if any(part.startswith(".") for part in rel.split("/")):
            continue
        yield ObjectPath(f"{prefix.scheme}://{info.path}")


__all__ = [
    "FORWARDED_ENV", "REMOTE_SCHEMES", "Entry", "Location", "ObjectPath", "StorageError",
    "arrow_file", "cache_dir", "fetch_to_cache", "filesystem_for", "forwarded_env",
    "is_remote", "iter_object_files", "list_dir", "location", "missing_reason", "open_binary",
    "open_input",
    "scheme_of", "write_whole",
]
