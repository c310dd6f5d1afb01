"""Run a real ComfyUI server (as a subprocess): used by the integration tests and the demo.

The ComfyUI tree is the one provisioned by ``scripts/setup_comfyui.sh``
(``<repo>/.cache/comfyui/ComfyUI``, an unmodified ComfyUI 0.3.75 with this
repository linked into ``custom_nodes/ComfyUI-LUA``).

Every server gets its own scratch directory (``root``) holding separate
output/input/temp/user directories, the sqlite database, the server log and an
``extra_model_paths.yaml`` that adds ``<root>/models/lua`` (or a folder given by
the caller) to the ``lua`` model folder, so tests can drop checkpoints there.

Nothing is mocked: the server is ``python main.py --cpu ...`` talking HTTP on a
free loopback port. Optionally (default on) a ``sitecustomize`` audit hook
records every non-loopback DNS lookup / socket connect the server attempts, so
tests can check that start-up stays offline (see :meth:`network_attempts`).

Only the standard library plus ``requests`` is needed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import requests

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_COMFY_DIR = REPO_ROOT / ".cache" / "comfyui" / "ComfyUI"
SETUP_SCRIPT = REPO_ROOT / "scripts" / "setup_comfyui.sh"

# Written to the server log by ComfyUI's custom node loader, e.g.
#   "   0.0 seconds (IMPORT FAILED): /.../custom_nodes/ComfyUI-LUA"
IMPORT_FAILED_MARKER = "(IMPORT FAILED)"
PACK_DIR_NAME = "ComfyUI-LUA"

_LOOPBACK_HOSTS = {"127.0.0.1", "::1", "localhost", "0.0.0.0", "::", ""}

# Installed as sitecustomize.py in the server's PYTHONPATH when auditing the
# network: it only records, it never blocks.
_AUDIT_SITECUSTOMIZE = r'''
import os, sys, json, threading
_path = os.environ.get("LUA_NET_AUDIT_FILE")
_lock = threading.Lock()
_loop = {"127.0.0.1", "::1", "localhost", "0.0.0.0", "::", ""}
def _record(kind, host, port):
    try:
        with _lock, open(_path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"kind": kind, "host": host, "port": port}) + "\n")
    except Exception:
        pass
def _hook(event, args):
    try:
        if event == "socket.getaddrinfo":
            host = args[0]
            if isinstance(host, bytes):
                host = host.decode("ascii", "replace")
            if host is not None and str(host) not in _loop:
                _record("getaddrinfo", str(host), args[1])
        elif event == "socket.connect":
            addr = args[1]
            if isinstance(addr, tuple) and len(addr) >= 2:
                host = str(addr[0])
                if host not in _loop and not host.startswith("127."):
                    _record("connect", host, addr[1])
    except Exception:
        pass
if _path:
    sys.addaudithook(_hook)
'''


class ComfyServerError(RuntimeError):
    """The server could not be started, died, or an HTTP call failed."""


class PromptValidationError(ComfyServerError):
    """``POST /prompt`` rejected the prompt (HTTP 400); ``.response`` holds the JSON body."""

    def __init__(self, message: str, response: dict[str, Any]):
        super().__init__(message)
        self.response = response
        self.error = response.get("error")
        self.node_errors = response.get("node_errors", {})


class PromptExecutionError(ComfyServerError):
    """Raised by :meth:`ComfyServer.wait_for` with ``raise_on_error=True``."""

    def __init__(self, result: "PromptResult"):
        super().__init__(f"prompt {result.prompt_id} {result.status}: {result.error}")
        self.result = result


@dataclass
class PromptResult:
    """The outcome of one queued prompt (wraps its ``/history`` entry)."""

    prompt_id: str
    status: str  # "success" | "error" | "interrupted"
    entry: dict[str, Any]  # the raw history entry
    seconds: float  # wall time from wait_for() start until the entry appeared
    error: str | None = None  # exception message (execution error) or a short note (interrupt)
    error_details: dict[str, Any] | None = None  # the execution_error / _interrupted message data

    @property
    def ok(self) -> bool:
        return self.status == "success"

    @property
    def outputs(self) -> dict[str, Any]:
        return self.entry.get("outputs", {})

    @property
    def node_type(self) -> str | None:
        """Class type of the node that failed (execution errors only)."""
        return (self.error_details or {}).get("node_type")

    @property
    def exception_type(self) -> str | None:
        return (self.error_details or {}).get("exception_type")

    @property
    def traceback(self) -> str:
        return "".join((self.error_details or {}).get("traceback") or [])

    def images(self, node_id: str | None = None) -> list[dict[str, Any]]:
        """Image records ``{"filename", "subfolder", "type"}`` from the outputs (optionally one node)."""
        out = []
        for nid, node_out in self.outputs.items():
            if node_id is not None and str(nid) != str(node_id):
                continue
            out.extend(node_out.get("images", []) or [])
        return out


@dataclass
class ComfyServer:
    """A real ComfyUI process on ``127.0.0.1:<free port>``.

    Typical use::

        with ComfyServer(root=tmp_dir) as srv:
            pid = srv.queue_prompt(prompt)
            res = srv.wait_for(pid, timeout=120)
            assert res.ok, res.error
            paths = srv.image_paths(res)
    """

    root: Path | str | None = None  # scratch dir; a new temp dir when None
    comfy_dir: Path | str | None = None  # defaults to $LUA_COMFYUI_DIR or <repo>/.cache/comfyui/ComfyUI
    python: str | None = None  # defaults to $LUA_COMFY_PYTHON or sys.executable
    port: int | None = None  # a free port when None
    lua_models_dir: Path | str | None = None  # folder added to the `lua` model type (default <root>/models/lua)
    extra_model_paths: Mapping[str, str] | None = None  # more `<folder key>: <path>` entries for the yaml
    cpu: bool = True
    disable_api_nodes: bool = True  # skip comfy_api_nodes (cloud API nodes): faster, and no web calls from the UI
    audit_network: bool = True  # record non-loopback DNS/connect attempts (never blocks)
    extra_args: Iterable[str] = ()
    extra_env: Mapping[str, str] | None = None
    startup_timeout: float = 180.0

    # filled in by start()
    process: subprocess.Popen | None = field(default=None, init=False, repr=False)
    startup_seconds: float | None = field(default=None, init=False)
    base_url: str = field(default="", init=False)
    client_id: str = field(default_factory=lambda: uuid.uuid4().hex, init=False)
    _log_file: Any = field(default=None, init=False, repr=False)
    _object_info: dict[str, Any] | None = field(default=None, init=False, repr=False)
    _owns_root: bool = field(default=False, init=False, repr=False)

    # ------------------------------------------------------------------ paths
    def __post_init__(self) -> None:
        if self.root is None:
            self.root = Path(tempfile.mkdtemp(prefix="comfy-lua-"))
            self._owns_root = True
        self.root = Path(self.root).resolve()
        self.comfy_dir = Path(
            self.comfy_dir or os.environ.get("LUA_COMFYUI_DIR") or DEFAULT_COMFY_DIR
        ).resolve()
        self.python = self.python or os.environ.get("LUA_COMFY_PYTHON") or sys.executable
        self.lua_models_dir = Path(self.lua_models_dir or self.root / "models" / "lua").resolve()
        self.session = requests.Session()

    @property
    def output_dir(self) -> Path:
        return self.root / "output"

    @property
    def input_dir(self) -> Path:
        return self.root / "input"

    @property
    def temp_dir(self) -> Path:
        """Passed as --temp-directory; ComfyUI itself writes to ``<temp_dir>/temp``."""
        return self.root / "tmp"

    @property
    def user_dir(self) -> Path:
        return self.root / "user"

    @property
    def log_path(self) -> Path:
        return self.root / "comfyui.log"

    @property
    def extra_model_paths_yaml(self) -> Path:
        return self.root / "extra_model_paths.yaml"

    @property
    def net_audit_path(self) -> Path:
        return self.root / "net_audit.jsonl"

    @property
    def pack_path(self) -> Path:
        return self.comfy_dir / "custom_nodes" / PACK_DIR_NAME

    # -------------------------------------------------------------- lifecycle
    def __enter__(self) -> "ComfyServer":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _command(self) -> list[str]:
        cmd = [
            self.python, "-u", str(self.comfy_dir / "main.py"),
            "--listen", "127.0.0.1",
            "--port", str(self.port),
            "--output-directory", str(self.output_dir),
            "--input-directory", str(self.input_dir),
            "--temp-directory", str(self.temp_dir),
            "--user-directory", str(self.user_dir),
            # default db lives next to the ComfyUI tree (<comfy>/../user/comfyui.db)
            "--database-url", f"sqlite:///{self.root / 'comfyui.db'}",
            "--extra-model-paths-config", str(self.extra_model_paths_yaml),
            "--disable-auto-launch",
        ]
        if self.cpu:
            cmd.append("--cpu")
        if self.disable_api_nodes:
            cmd.append("--disable-api-nodes")
        cmd.extend(self.extra_args)
        return cmd

    def _write_extra_model_paths(self) -> None:
        lines = [
            "# written by tests/support/comfy_server.py",
            "lua_tests:",
            f"    base_path: {json.dumps(str(self.lua_models_dir.parent))}",
            f"    lua: {json.dumps(self.lua_models_dir.name)}",
        ]
        for key, path in (self.extra_model_paths or {}).items():
            lines.append(f"    {key}: {json.dumps(str(Path(path).resolve()))}")
        self.extra_model_paths_yaml.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "PYTHONUNBUFFERED": "1",
            # nothing in a core-only start-up should need the hub; make sure it never tries
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "DO_NOT_TRACK": "1",
        })
        if self.audit_network:
            site_dir = self.root / "netaudit_site"
            site_dir.mkdir(parents=True, exist_ok=True)
            (site_dir / "sitecustomize.py").write_text(_AUDIT_SITECUSTOMIZE, encoding="utf-8")
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(site_dir), env.get("PYTHONPATH", "")) if p
            )
            env["LUA_NET_AUDIT_FILE"] = str(self.net_audit_path)
        if self.extra_env:
            env.update(self.extra_env)
        return env

    def start(self) -> "ComfyServer":
        """Start the server and block until ``/object_info`` answers."""
        if self.process is not None:
            raise ComfyServerError("server already started")
        main_py = self.comfy_dir / "main.py"
        if not main_py.is_file():
            raise ComfyServerError(
                f"ComfyUI not found at {self.comfy_dir}; run {SETUP_SCRIPT} first"
            )
        for d in (self.output_dir, self.input_dir, self.temp_dir, self.user_dir, self.lua_models_dir):
            d.mkdir(parents=True, exist_ok=True)
        self._write_extra_model_paths()
        if self.port is None:
            self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"

        cmd = self._command()
        self._log_file = open(self.log_path, "ab", buffering=0)
        self._log_file.write(("$ " + " ".join(cmd) + "\n").encode())
        t0 = time.monotonic()
        self.process = subprocess.Popen(
            cmd,
            cwd=str(self.comfy_dir),
            env=self._env(),
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: stop() can signal it as a whole
        )
        deadline = t0 + self.startup_timeout
        while True:
            rc = self.process.poll()
            if rc is not None:
                self._close_log()
                raise ComfyServerError(
                    f"ComfyUI exited with code {rc} during start-up; log {self.log_path}:\n"
                    + self.log_tail()
                )
            try:
                r = self.session.get(self.base_url + "/system_stats", timeout=2)
                if r.status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise ComfyServerError(
                    f"ComfyUI did not answer within {self.startup_timeout:.0f}s; "
                    f"log {self.log_path}:\n" + self.log_tail()
                )
            time.sleep(0.2)
        # custom nodes are imported before the HTTP site starts, so this is complete
        self.object_info(refresh=True)
        self.startup_seconds = time.monotonic() - t0
        return self

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 15.0) -> int | None:
        """Stop the server (SIGINT, then SIGTERM, then SIGKILL to its process group). Returns the exit code."""
        proc = self.process
        if proc is None:
            return None
        if proc.poll() is None:
            for sig, wait in ((signal.SIGINT, timeout), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        # reap anything left in the group (e.g. helper processes)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self._close_log()
        self.session.close()
        return proc.returncode

    def cleanup(self) -> None:
        """Stop and delete the scratch directory (only if this object created it)."""
        self.stop()
        if self._owns_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    # -------------------------------------------------------------------- log
    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 80) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def import_failures(self) -> list[str]:
        """Log lines of custom node packs that failed to import."""
        return [ln.strip() for ln in self.log_text().splitlines() if IMPORT_FAILED_MARKER in ln]

    def network_attempts(self) -> list[dict[str, Any]]:
        """Non-loopback DNS lookups / connects seen so far (needs audit_network=True)."""
        if not self.net_audit_path.exists():
            return []
        return [json.loads(ln) for ln in self.net_audit_path.read_text().splitlines() if ln.strip()]

    # ------------------------------------------------------------------- HTTP
    def _check_alive(self) -> None:
        if not self.is_running():
            rc = None if self.process is None else self.process.returncode
            raise ComfyServerError(
                f"ComfyUI is not running (exit code {rc}); log {self.log_path}:\n" + self.log_tail()
            )

    def request(self, method: str, path: str, *, timeout: float = 30.0, **kw: Any) -> requests.Response:
        self._check_alive()
        try:
            return self.session.request(method, self.base_url + path, timeout=timeout, **kw)
        except requests.RequestException as e:
            raise ComfyServerError(f"{method} {path} failed: {e}\nlog tail:\n{self.log_tail()}") from e

    def get_json(self, path: str, **kw: Any) -> Any:
        r = self.request("GET", path, **kw)
        if r.status_code != 200:
            raise ComfyServerError(f"GET {path}: HTTP {r.status_code}: {r.text[:2000]}")
        return r.json()

    def system_stats(self) -> dict[str, Any]:
        return self.get_json("/system_stats")

    def object_info(self, node_class: str | None = None, refresh: bool = False) -> dict[str, Any]:
        """``/object_info`` (all nodes, cached unless refresh) or ``/object_info/<node_class>``."""
        if node_class is not None:
            return self.get_json(f"/object_info/{node_class}").get(node_class, {})
        if refresh or self._object_info is None:
            self._object_info = self.get_json("/object_info", timeout=60)
        return self._object_info

    def combo_options(self, node_class: str, input_name: str) -> list[Any]:
        """The choices of a combo input, fresh from the server (e.g. model file lists)."""
        info = self.object_info(node_class)
        for section in ("required", "optional"):
            spec = info.get("input", {}).get(section, {}).get(input_name)
            if spec is not None:
                if isinstance(spec[0], list):  # classic combo: [[choices], {...}]
                    return list(spec[0])
                if spec[0] == "COMBO" and len(spec) > 1:  # V3 style: ["COMBO", {"options": [...]}]
                    return list(spec[1].get("options", []))
                raise ComfyServerError(f"{node_class}.{input_name} is not a combo: {spec!r}")
        raise ComfyServerError(f"{node_class} has no input {input_name!r}")

    def queue_prompt(self, api_prompt: Mapping[str, Any], *, prompt_id: str | None = None,
                     extra_data: Mapping[str, Any] | None = None) -> str:
        """``POST /prompt``; returns the prompt id. Raises PromptValidationError on HTTP 400."""
        body: dict[str, Any] = {"prompt": api_prompt, "client_id": self.client_id}
        if prompt_id:
            body["prompt_id"] = prompt_id
        if extra_data:
            body["extra_data"] = dict(extra_data)
        r = self.request("POST", "/prompt", json=body)
        if r.status_code == 400:
            data = r.json()
            err = data.get("error") or {}
            msg = err.get("message", "invalid prompt") if isinstance(err, dict) else str(err)
            details = err.get("details", "") if isinstance(err, dict) else ""
            raise PromptValidationError(
                f"prompt rejected: {msg} {details} node_errors={json.dumps(data.get('node_errors', {}))[:2000]}",
                data,
            )
        if r.status_code != 200:
            raise ComfyServerError(f"POST /prompt: HTTP {r.status_code}: {r.text[:2000]}")
        return r.json()["prompt_id"]

    def history(self, prompt_id: str | None = None) -> dict[str, Any]:
        return self.get_json(f"/history/{prompt_id}" if prompt_id else "/history")

    def queue(self) -> dict[str, Any]:
        """``GET /queue``: ``{"queue_running": [...], "queue_pending": [...]}``."""
        return self.get_json("/queue")

    def wait_for(self, prompt_id: str, timeout: float = 300.0, *, poll: float = 0.1,
                 raise_on_error: bool = False) -> PromptResult:
        """Block until the prompt has a history entry; classify it as success / error / interrupted."""
        t0 = time.monotonic()
        while True:
            hist = self.history(prompt_id)
            entry = hist.get(prompt_id)
            if entry is not None and entry.get("status", {}).get("completed") is not None:
                result = _classify(prompt_id, entry, time.monotonic() - t0)
                if raise_on_error and not result.ok:
                    raise PromptExecutionError(result)
                return result
            if time.monotonic() - t0 > timeout:
                raise ComfyServerError(
                    f"prompt {prompt_id} not finished after {timeout:.0f}s; queue={self.queue()}\n"
                    f"log tail:\n{self.log_tail()}"
                )
            time.sleep(poll)

    def run_prompt(self, api_prompt: Mapping[str, Any], timeout: float = 300.0,
                   raise_on_error: bool = False) -> PromptResult:
        """queue_prompt + wait_for."""
        return self.wait_for(self.queue_prompt(api_prompt), timeout, raise_on_error=raise_on_error)

    def upload_image(self, path: Path | str, *, subfolder: str = "", overwrite: bool = True,
                     image_type: str = "input") -> str:
        """``POST /upload/image``; returns the name to use in LoadImage (``subfolder/name``)."""
        path = Path(path)
        data = {"overwrite": "true" if overwrite else "false", "type": image_type}
        if subfolder:
            data["subfolder"] = subfolder
        with open(path, "rb") as f:
            r = self.request("POST", "/upload/image", files={"image": (path.name, f, "image/png")}, data=data)
        if r.status_code != 200:
            raise ComfyServerError(f"upload of {path} failed: HTTP {r.status_code}: {r.text[:500]}")
        j = r.json()
        return f"{j['subfolder']}/{j['name']}" if j.get("subfolder") else j["name"]

    def interrupt(self, prompt_id: str | None = None) -> None:
        """``POST /interrupt`` (the running prompt, or only ``prompt_id`` if it is the running one)."""
        r = self.request("POST", "/interrupt", json={"prompt_id": prompt_id} if prompt_id else {})
        if r.status_code != 200:
            raise ComfyServerError(f"POST /interrupt: HTTP {r.status_code}")

    def clear_queue(self) -> None:
        self.request("POST", "/queue", json={"clear": True})

    def free(self, unload_models: bool = True, free_memory: bool = True) -> None:
        """``POST /free``: flags handled by the prompt worker when it is next idle."""
        r = self.request("POST", "/free", json={"unload_models": unload_models, "free_memory": free_memory})
        if r.status_code != 200:
            raise ComfyServerError(f"POST /free: HTTP {r.status_code}")

    def output_path(self, image: Mapping[str, Any]) -> Path:
        """File on disk for an image record ``{"filename", "subfolder", "type"}``."""
        base = {"output": self.output_dir, "input": self.input_dir,
                "temp": self.temp_dir / "temp"}[image.get("type", "output")]
        return base / image.get("subfolder", "") / image["filename"]

    def image_paths(self, result: PromptResult, node_id: str | None = None) -> list[Path]:
        return [self.output_path(img) for img in result.images(node_id)]


def _classify(prompt_id: str, entry: dict[str, Any], seconds: float) -> PromptResult:
    status = entry.get("status", {}) or {}
    messages = status.get("messages", []) or []
    by_event = {m[0]: m[1] for m in messages if isinstance(m, (list, tuple)) and len(m) == 2}
    if "execution_error" in by_event:
        d = by_event["execution_error"]
        msg = f"{d.get('exception_type', 'Exception')}: {d.get('exception_message', '')}".strip()
        if d.get("node_type"):
            msg = f"[{d.get('node_type')} #{d.get('node_id')}] {msg}"
        return PromptResult(prompt_id, "error", entry, seconds, msg, d)
    if "execution_interrupted" in by_event:
        d = by_event["execution_interrupted"]
        return PromptResult(prompt_id, "interrupted", entry, seconds,
                            f"interrupted at node {d.get('node_id')} ({d.get('node_type')})", d)
    if status.get("status_str") == "success" and status.get("completed"):
        return PromptResult(prompt_id, "success", entry, seconds)
    return PromptResult(prompt_id, "error", entry, seconds,
                        f"not completed, status={json.dumps(status)[:1000]}", None)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
