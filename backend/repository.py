"""The model repository on disk and the life cycle of its models: scan, load (with version
policy and config overrides), unload (waiting for requests in flight), state and reasons."""

import asyncio
import functools
import logging
import os
import re
import shutil
import tempfile
import time

from proto import model_config_pb2 as mc

from . import config as config_util
from . import registry
from .backends import ensemble as ensemble_backend
from .errors import InvalidArgument, NotFound, ServerError, Unavailable, UnknownModel

log = logging.getLogger("backend.repository")

_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,255}$")  # 255: the longest file name


def valid_model_name(name: str) -> bool:
    return bool(_NAME.match(name)) and name not in (".", "..")


def version_dirs(model_dir: str) -> list:
    """Numeric version folders (Triton ignores names that are not numbers or start with 0)."""
    out = []
    try:
        entries = os.listdir(model_dir)
    except OSError:
        return out
    for e in entries:
        if e.isdigit() and not e.startswith("0") and os.path.isdir(os.path.join(model_dir, e)):
            out.append(int(e))
    return sorted(out)


def select_versions(config: mc.ModelConfig, available: list) -> list:
    policy = config.version_policy
    kind = policy.WhichOneof("policy_choice")
    if kind == "all":
        return list(available)
    if kind == "specific":
        return sorted(v for v in set(policy.specific.versions) if v in available)
    n = policy.latest.num_versions or 1
    return sorted(available)[-n:]


def parse_version(version: str) -> int:
    """A request's version string as a number, with Triton's message when it is not one."""
    try:
        # ASCII digits only: int() would also take " 1", "+1", "1_0" and other scripts' digits.
        if not (version.isascii() and version.isdigit()):
            raise ValueError("not an integer")
        v = int(version)
        if v <= 0 or v > 2**63 - 1:
            raise ValueError("out of range")
    except ValueError as err:
        raise InvalidArgument(
            f"failed to get model version from specified version string '{version}' "
            f"(details: {err}), version should be an integral value > 0")
    return v


def _write_model_files(name: str, files: dict):
    """RepositoryModelLoad's files in a fresh temporary model folder: (tmpdir, model folder).
    Any failure removes the folder."""
    # realpath: the containment check below compares resolved paths (/tmp may be a link).
    tmpdir = os.path.realpath(tempfile.mkdtemp(prefix="model-"))
    src_dir = os.path.join(tmpdir, name)
    try:
        os.makedirs(src_dir)
        for rel, data in files.items():
            dest = os.path.realpath(os.path.join(src_dir, rel))
            if not rel or os.path.isabs(rel) or not dest.startswith(src_dir + os.sep):
                raise InvalidArgument(f"failed to load '{name}': file path '{rel}' leaves the model folder")
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with open(dest, "wb") as f:
                f.write(data)
    except BaseException as err:
        shutil.rmtree(tmpdir, ignore_errors=True)
        if isinstance(err, (OSError, ValueError)):  # a name too long or with a NUL, a file where a folder must be...
            raise InvalidArgument(f"failed to load '{name}': cannot write the model files: "
                                  f"{getattr(err, 'strerror', None) or err}") from None
        raise
    return tmpdir, src_dir


class ModelEntry:
    def __init__(self, name: str):
        self.name = name
        self.versions = {}       # version -> Model (READY)
        self.state = "UNAVAILABLE"
        self.reason = "unloaded"
        self.in_flight = 0
        self.idle = asyncio.Event()
        self.idle.set()
        self.tmpdir = None       # model folder written from RepositoryModelLoad files
        self.dependents = set()  # ensembles that use this model (for unload_dependents)
        # Loads and unloads of one model run one at a time, as in Triton: two at once would each
        # build instances, and the loser's would never be retired.
        self.lock = asyncio.Lock()


class Repository:
    def __init__(self, root: str, config_name: str = "", execution_timeout_s: float = 0,
                 auto_complete: bool = True):
        self.root = os.path.realpath(root)
        self.config_name = config_name
        self.execution_timeout_s = execution_timeout_s
        # Backends complete configs (inputs, outputs, max_batch_size; model.py's
        # auto_complete_config) unless --disable-auto-complete-config; then config.pbtxt is required.
        self.auto_complete = auto_complete
        self.entries = {}
        self.infer_internal = None   # set by the core: ensembles run steps through it

    def scan(self) -> list:
        """Model folders of the repository (folders with a config.pbtxt or version folders)."""
        names = []
        for e in sorted(os.listdir(self.root)):
            path = os.path.join(self.root, e)
            if e.startswith(".") or not os.path.isdir(path):
                continue
            if os.path.isfile(os.path.join(path, "config.pbtxt")) or version_dirs(path):
                names.append(e)
        return names

    def model_dir(self, name: str) -> str:
        if not valid_model_name(name):
            raise InvalidArgument(f"invalid model name '{name}': only letters, digits, '_', '-' and '.' are "
                                  f"allowed (at most 255)")
        path = os.path.realpath(os.path.join(self.root, name))
        if os.path.dirname(path) != self.root:
            raise InvalidArgument(f"invalid model name '{name}'")
        return path

    def entry(self, name: str) -> ModelEntry:
        e = self.entries.get(name)
        if e is None:
            e = self.entries[name] = ModelEntry(name)
        return e

    # ---- lookup -------------------------------------------------------------------------------
    def _known(self, name: str) -> ModelEntry:
        e = self.entries.get(name)
        if e is None:
            raise UnknownModel(f"Request for unknown model: '{name}' is not found")
        return e

    def get(self, name: str, version: str = ""):
        """The ready Model for a request, with Triton's messages."""
        e = self._known(name)
        if version:
            v = parse_version(version)
            model = e.versions.get(v)
            if model is None:
                if e.state in ("LOADING", "UNAVAILABLE") and e.reason not in ("unloaded", ""):
                    raise Unavailable(f"Request for unknown model: '{name}' version {v} is not at ready state")
                raise NotFound(f"Request for unknown model: '{name}' version {v} is not found")
            return model
        if not e.versions:
            if e.state == "LOADING" or (e.state == "UNAVAILABLE" and e.reason != "unloaded"):
                raise Unavailable(f"Request for unknown model: '{name}' has no available versions "
                                  f"({e.state.lower()}: {e.reason})" if e.reason else
                                  f"Request for unknown model: '{name}' has no available versions")
            raise NotFound(f"Request for unknown model: '{name}' has no available versions")
        return e.versions[max(e.versions)]

    def is_loaded(self, name: str) -> bool:
        """Whether some version of `name` is loaded (a known model with versions)."""
        e = self.entries.get(name)
        return e is not None and bool(e.versions)

    def is_ready(self, name: str, version: str = "") -> bool:
        """Whether `name` (`version`, or its latest) is loaded and ready. Loading, failed, unloaded
        or a version not loaded is just "not ready"; only an unknown name or a malformed version
        raises, with get()'s messages (ModelReady sends them as its error)."""
        try:
            return self.get(name, version).is_ready()
        except (NotFound, Unavailable):  # known, but nothing (of that version) loaded
            return False

    def index(self, ready_only: bool = False):
        """(name, version or '', state, reason) for every model the server knows or can see."""
        rows = []
        names = set(self.entries)
        try:
            names |= set(self.scan())
        except OSError:
            pass
        for name in sorted(names):
            e = self.entries.get(name)
            if e is None:
                if not ready_only:
                    rows.append((name, "", "UNAVAILABLE", "unloaded"))
                continue
            if e.versions:
                for v in sorted(e.versions):
                    rows.append((name, str(v), "READY", ""))
            elif not ready_only:
                rows.append((name, "", e.state, e.reason))
        return rows

    # ---- load / unload ------------------------------------------------------------------------
    async def load(self, name: str, override_json: str = "", files: dict | None = None, _stack=()):
        """Load (or reload) a model; an ensemble loads its steps first. Raises on failure and
        leaves the reason in the index."""
        model_dir = self.model_dir(name)
        if name in _stack:
            raise InvalidArgument(f"ensemble '{_stack[0]}' contains a cycle through '{name}'")
        src_dir = model_dir
        tmpdir = None
        if files:
            if not override_json:
                raise InvalidArgument(f"failed to load '{name}': 'config' must be provided together with "
                                      f"model files")
            tmpdir, src_dir = _write_model_files(name, files)
        elif not os.path.isdir(model_dir):
            raise InvalidArgument(f"failed to load '{name}', failed to poll from model repository: no "
                                  f"model folder '{name}'")
        e = self.entry(name)  # only now: a refused name leaves no entry behind
        async with e.lock:
            await self._load_entry(e, name, override_json, src_dir, tmpdir, _stack)

    async def _load_entry(self, e, name, override_json, src_dir, tmpdir, _stack):
        started = time.monotonic()
        log.debug("loading '%s' from %s", name, src_dir)
        old_versions = dict(e.versions)
        e.state, e.reason = "LOADING", ""
        try:
            config = (config_util.config_from_json(override_json) if override_json
                      else config_util.read_config(src_dir, self.config_name, required=not self.auto_complete))
            config_util.fill_backend(config, src_dir)  # Triton's autofill: the model file names it
            config = config_util.normalize(config, name)
            registry.normalize(config, config_util.backend_of(config))
            new_versions = await self._load_versions(config, src_dir, _stack + (name,))
        except ServerError as err:
            self._failed(e, old_versions, err.message, tmpdir)
            raise
        except Exception as err:  # a model's own code failed while loading
            log.exception("loading model '%s' failed", name)
            msg = f"{type(err).__name__}: {err}"
            self._failed(e, old_versions, msg, tmpdir)
            raise Unavailable(f"failed to load '{name}': {msg}")
        e.versions = new_versions
        e.state, e.reason = "READY", ""
        old_tmp, e.tmpdir = e.tmpdir, tmpdir
        for v, model in new_versions.items():
            log.info("successfully loaded '%s' version %d (%s)", name, v, model.platform)
        log.debug("'%s' loaded in %.0f ms", name, (time.monotonic() - started) * 1e3)
        # Retire replaced versions once their requests finish.
        retired = [m for v, m in old_versions.items() if new_versions.get(v) is not m]
        if retired or old_tmp:
            asyncio.get_running_loop().create_task(self._retire(e, retired, old_tmp))

    def _failed(self, e, old_versions, reason, tmpdir):
        if tmpdir:
            shutil.rmtree(tmpdir, ignore_errors=True)
        e.versions = old_versions  # a failed reload keeps serving what was there
        e.state = "READY" if old_versions else "UNAVAILABLE"
        e.reason = "" if old_versions else reason
        log.error("failed to load '%s': %s", e.name, reason)

    async def _load_versions(self, config, model_dir, stack):
        backend = config_util.backend_of(config)
        available = version_dirs(model_dir)
        chosen = select_versions(config, available)
        if not chosen:
            raise InvalidArgument(f"at least one version must be available under the version policy of "
                                  f"model '{config.name}'")
        loop = asyncio.get_running_loop()
        out = {}
        if backend == "ensemble":
            for step_name, step_version in ensemble_backend.step_models(config):
                if not self.is_loaded(step_name):
                    await self.load(step_name, _stack=stack)
                self.entry(step_name).dependents.add(config.name)
            for v in chosen:
                out[v] = ensemble_backend.EnsembleModel(config, v, model_dir, self.get, self.infer_internal)
            return out
        loader = registry.module(backend, config.name).load
        for v in chosen:
            cfg = mc.ModelConfig()
            cfg.CopyFrom(config)
            version_dir = os.path.join(model_dir, str(v))
            out[v] = await loop.run_in_executor(None, functools.partial(
                loader, cfg, v, model_dir, version_dir, self.execution_timeout_s,
                auto_complete_config=self.auto_complete))
            out[v].refresh_specs()
        return out

    async def unload(self, name: str, unload_dependents: bool = False):
        if not valid_model_name(name):
            raise InvalidArgument(f"invalid model name '{name}'")
        e = self.entries.get(name)
        if e is None:
            return
        async with e.lock:
            await self._unload_entry(e, name, unload_dependents)

    async def _unload_entry(self, e, name, unload_dependents):
        if not e.versions:
            e.state, e.reason = "UNAVAILABLE", "unloaded"
            return
        if unload_dependents:
            for dep in list(e.dependents):
                await self.unload(dep, unload_dependents=True)
        versions = list(e.versions.values())
        e.versions = {}
        e.state, e.reason = "UNAVAILABLE", "unloaded"
        await self._retire(e, versions, e.tmpdir)
        e.tmpdir = None
        if ensemble_backend and versions and versions[0].platform == "ensemble":
            for step_name, _ in ensemble_backend.step_models(versions[0].config):
                se = self.entries.get(step_name)
                if se is not None:
                    se.dependents.discard(name)
        log.info("successfully unloaded '%s'", name)

    async def _retire(self, e, models, tmpdir):
        await e.idle.wait()  # requests already in flight complete first
        for m in models:
            await m.close()
        if tmpdir:
            shutil.rmtree(tmpdir, ignore_errors=True)

    async def close(self):
        for name in list(self.entries):
            await self.unload(name)
