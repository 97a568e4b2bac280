"""Code bundles: a project's files, exactly those its fingerprint covers, signed with the cluster key.

A worker started without a project runs whatever code a job names by fingerprint, so what it runs
must come from someone holding the cluster's key (``SHOAL_CLUSTER_KEY``): a worker that ran what
arrived on a broker would be a remote shell for anyone who can write to it. The HMAC-SHA256
signature covers the whole archive and is checked before a byte of it is unpacked; the unpacked
files must then hash to the fingerprint the job asked for.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import os
import platform
import shutil
import tarfile
from dataclasses import asdict, dataclass
from pathlib import Path

from shoal.errors import BundleError, ConfigError, ProjectError
from shoal.project import Project, code_contents, digest_files

KEY_ENV = "SHOAL_CLUSTER_KEY"
MIN_KEY_BYTES = 16
MAGIC = b"shoal-bundle/1\n"
MANIFEST = "manifest.json"
FILES = "files"  #: the folder of the archive holding the project's files
REQUIREMENTS = "requirements.txt"


@dataclass(frozen=True)
class Manifest:
    """What a worker needs to know about a bundle before it runs a line of it."""

    fingerprint: str
    pipeline: str
    stages: list[str]
    python: str  #: the Python (major.minor) the bundle was made on
    requires_python: str | None  #: shoal.toml's [project] python: the versions the code runs on
    requirements: str | None  #: sha256 of requirements.txt; None without one
    made_on: str  #: the host that published it
    files: int
    entry: str | None = None  #: "script.py:main" for a per-file script (see shoal.project)


def cluster_key(needed_for: str) -> bytes:
    """The cluster's shared key, from SHOAL_CLUSTER_KEY; an error saying why it is needed."""
    key = os.environ.get(KEY_ENV, "").encode()
    if len(key) < MIN_KEY_BYTES:
        what = "is not set" if not key else f"is shorter than {MIN_KEY_BYTES} bytes"
        raise ConfigError(
            f"{KEY_ENV} {what}: {needed_for}. Give every worker and coordinator of the cluster the same "
            f'secret, e.g. export {KEY_ENV}="$(python3 -c "import secrets; print(secrets.token_hex(32))")"'
        )
    return key


def make_bundle(project: Project, key: bytes) -> bytes:
    """The signed archive of the project's code files, as they are now."""
    files = list(code_contents(project.root, project.config))
    if digest_files(files) != project.fingerprint:
        raise ProjectError(f"{project.root} changed while it was bundled: run again once the edit is saved")
    requirements = dict(files).get(REQUIREMENTS)
    python = project.config.get("project", {}).get("python")
    manifest = Manifest(
        fingerprint=project.fingerprint,
        pipeline=project.pipeline.name,
        stages=[stage.name for stage in project.pipeline.stages],
        python=_python(),
        requires_python=str(python) if python else None,
        requirements=hashlib.sha256(requirements).hexdigest() if requirements is not None else None,
        made_on=platform.node(),
        files=len(files),
        entry=project.entry,
    )
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz", compresslevel=6) as tar:
        _add(tar, MANIFEST, json.dumps(asdict(manifest), sort_keys=True).encode())
        for name, data in files:
            _add(tar, f"{FILES}/{name}", data)
    payload = archive.getvalue()
    return MAGIC + hmac.new(key, payload, hashlib.sha256).digest() + payload


def open_bundle(blob: bytes, key: bytes, fingerprint: str, into: Path) -> Manifest:
    """Check a bundle's signature and unpack it into ``into`` (a folder not there yet): the
    project's files land in ``into/files``. Raises BundleError saying why it was refused."""
    head = len(MAGIC) + hashlib.sha256().digest_size
    if not blob.startswith(MAGIC) or len(blob) <= head:
        raise BundleError(f"code bundle {fingerprint} is not a shoal bundle: refused")
    signature, payload = blob[len(MAGIC) : head], blob[head:]
    if not hmac.compare_digest(signature, hmac.new(key, payload, hashlib.sha256).digest()):
        raise BundleError(
            f"code bundle {fingerprint} is not signed with this worker's cluster key: refused. Someone without "
            f"the key published it, or {KEY_ENV} differs between this worker and the coordinator"
        )
    tmp = into.with_name(f"{into.name}.part-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _unpack(payload, tmp)
        manifest = Manifest(**json.loads((tmp / MANIFEST).read_text(encoding="utf-8")))
        root = tmp / FILES
        found = digest_files(
            (path.relative_to(root).as_posix(), path.read_bytes())
            for path in sorted(p for p in root.rglob("*") if p.is_file())
        )
        if manifest.fingerprint != fingerprint or found != fingerprint:
            raise BundleError(f"code bundle {fingerprint} holds version {found} of the code: refused")
        check_python(manifest)
        tmp.rename(into)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest


def _unpack(payload: bytes, folder: Path) -> None:
    """Regular files only, each strictly inside ``folder``: signed or not, an archive never writes
    a link, a device or a path outside (tarfile's extraction filters need Python 3.11.4)."""
    with tarfile.open(fileobj=io.BytesIO(payload), mode="r:gz") as tar:
        for member in tar:
            parts = Path(member.name).parts
            if not member.isfile() or not parts or Path(member.name).is_absolute() or ".." in parts:
                raise BundleError(f"code bundle holds {member.name!r}, which is not a file of a project: refused")
            target = folder.joinpath(*parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            source = tar.extractfile(member)
            assert source is not None
            target.write_bytes(source.read())


def check_python(manifest: Manifest) -> None:
    """Refuse code made for another Python: it may not even import, or may compute differently."""
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    wanted = manifest.requires_python or f"=={manifest.python}.*"
    try:
        allowed = SpecifierSet(wanted)
    except InvalidSpecifier:
        name = manifest.fingerprint
        raise BundleError(f"code bundle {name}: [project] python = {wanted!r} is no version range") from None
    here = platform.python_version()
    if here not in allowed:
        made = f"declares Python {wanted}" if manifest.requires_python else f"was published from Python {wanted[2:]}"
        raise BundleError(
            f"code bundle {manifest.fingerprint} ({manifest.pipeline}) {made}; this worker runs Python {here}: "
            "run workers on that Python, or say in the project's shoal.toml which versions its code runs on, "
            'e.g. [project] python = ">=3.11"'
        )


def _python() -> str:
    return ".".join(platform.python_version_tuple()[:2])


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    """A file entry with fixed owner and time: the same code makes the same archive."""
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0
    tar.addfile(info, io.BytesIO(data))
