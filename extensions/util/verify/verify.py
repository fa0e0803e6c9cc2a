"""The logic of util/verify, standard library only: parse the `with` config and the
manifest, hash files inside the workspace, and write the report.

Kept free of the generated `wit_world` bindings so that `python3 -m unittest` runs it on
the build machine.
"""

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Callable, List, Optional

OK = "OK"
FAILED = "FAILED"
MISSING = "MISSING"

_ALGORITHMS = {"sha256": 64, "sha512": 128}
_KEYS = {"manifest", "algorithm", "report"}


class ConfigError(Exception):
    """The `with` mapping is unusable (`invalid-config`)."""


class Failure(Exception):
    """The step cannot produce a result (`failed`)."""


class Cancelled(Exception):
    """The run was cancelled between two files (`cancelled`)."""


@dataclass
class Config:
    manifest: str
    algorithm: str = "sha256"
    report: Optional[str] = None

    @staticmethod
    def parse(text: str) -> "Config":
        try:
            data = json.loads(text)
        except ValueError as err:
            raise ConfigError(f"invalid `with`: not JSON: {err}") from None
        if not isinstance(data, dict):
            raise ConfigError("invalid `with`: expected a mapping")
        unknown = sorted(set(data) - _KEYS)
        if unknown:
            raise ConfigError(
                f"invalid `with`: unknown key `{unknown[0]}` (expected one of "
                + ", ".join(f"`{k}`" for k in sorted(_KEYS))
                + ")"
            )
        if "manifest" not in data:
            raise ConfigError("invalid `with`: missing key `manifest`")
        for key in _KEYS & set(data):
            if not isinstance(data[key], str) or not data[key]:
                raise ConfigError(f"invalid `with`: at `{key}`: expected a non-empty string")
        config = Config(**data)
        if config.algorithm not in _ALGORITHMS:
            raise ConfigError(
                f"invalid `with`: at `algorithm`: `{config.algorithm}` is not one of "
                + ", ".join(f"`{a}`" for a in _ALGORITHMS)
            )
        for key in ("manifest", "report"):
            value = getattr(config, key)
            if value is not None:
                try:
                    relative(value)
                except Failure as err:
                    raise ConfigError(f"invalid `with`: at `{key}`: {err}") from None
        return config


def relative(path: str) -> str:
    """`path` as a normalised workspace-relative path; absolute paths and `..` refused."""
    if path.startswith("/") or "\\" in path:
        raise Failure(f"`{path}` is not a relative path with `/` separators")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise Failure(f"`{path}` is not a path inside the workspace")
    return "/".join(parts)


class Workspace:
    """The workspace directory (`/workspace` in the component)."""

    def __init__(self, root: str):
        self.root = root

    def path(self, path: str) -> str:
        return os.path.join(self.root, relative(path))

    def read_text(self, path: str) -> str:
        try:
            with open(self.path(path), encoding="utf-8") as f:
                return f.read()
        except OSError as err:
            raise Failure(f"cannot read `{path}`: {err.strerror or err}") from None
        except UnicodeDecodeError as err:
            raise Failure(f"cannot read `{path}`: not UTF-8 at byte {err.start}") from None

    def digest(self, path: str, algorithm: str) -> Optional[str]:
        """The hex digest of a workspace file, or None when it does not exist."""
        hasher = hashlib.new(algorithm)
        try:
            with open(self.path(path), "rb") as f:
                while chunk := f.read(64 * 1024):
                    hasher.update(chunk)
        except FileNotFoundError:
            return None
        except OSError as err:
            raise Failure(f"cannot read `{path}`: {err.strerror or err}") from None
        return hasher.hexdigest()

    def write(self, path: str, text: str) -> int:
        target = self.path(path)
        data = text.encode("utf-8")
        try:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "wb") as f:
                f.write(data)
        except OSError as err:
            raise Failure(f"cannot write `{path}`: {err.strerror or err}") from None
        return len(data)


@dataclass
class Entry:
    path: str
    expected: str


@dataclass
class Result:
    path: str
    status: str
    expected: str
    actual: Optional[str]


def parse_manifest(text: str, name: str, algorithm: str) -> List[Entry]:
    """The entries of a `sha256sum` manifest; a malformed line fails naming `name:line`."""
    width = _ALGORITHMS[algorithm]
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        digest, sep, path = line.partition("  ")
        if not sep:
            # `sha256sum -b` writes `DIGEST *PATH`.
            digest, sep, path = line.partition(" *")
        digest = digest.lower()
        if (
            not sep
            or len(digest) != width
            or any(c not in "0123456789abcdef" for c in digest)
            or not path
        ):
            raise Failure(
                f"{name}:{number}: expected `<{width} hex digits>  <path>` "
                f"({algorithm}), found `{line[:80]}`"
            )
        try:
            path = relative(path)
        except Failure as err:
            raise Failure(f"{name}:{number}: {err}") from None
        entries.append(Entry(path, digest))
    if not entries:
        raise Failure(f"{name} lists no files")
    return entries


def check(
    workspace: Workspace, config: Config, cancelled: Callable[[], bool] = lambda: False
) -> List[Result]:
    entries = parse_manifest(
        workspace.read_text(config.manifest), config.manifest, config.algorithm
    )
    results = []
    for entry in entries:
        if cancelled():
            raise Cancelled(f"cancelled after {len(results)} of {len(entries)} files")
        actual = workspace.digest(entry.path, config.algorithm)
        if actual is None:
            status = MISSING
        elif actual == entry.expected:
            status = OK
        else:
            status = FAILED
        results.append(Result(entry.path, status, entry.expected, actual))
    return results


def count(results: List[Result]) -> dict:
    return {
        "files": len(results),
        "ok": sum(r.status == OK for r in results),
        "failed": sum(r.status == FAILED for r in results),
        "missing": sum(r.status == MISSING for r in results),
    }


def report(results: List[Result]) -> str:
    return "".join(f"{r.path}: {r.status}\n" for r in results)
