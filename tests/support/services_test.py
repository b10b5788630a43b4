from __future__ import annotations

import os

import boto3
import psutil
import pytest
from confluent_kafka import Producer

from tests.support import services
from tests.support.services import (
    FAKE_AWS,
    ServiceError,
    consume_all,
    create_topics,
    moto_process,
    moto_server,
    tansu_broker,
    tansu_process,
)


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_moto_server_answers_s3_and_stops_by_pid() -> None:
    with moto_process() as (proc, endpoint_url):
        assert endpoint_url.startswith("http://127.0.0.1:")
        s3 = boto3.client("s3", endpoint_url=endpoint_url, **FAKE_AWS)
        s3.create_bucket(Bucket="diffs")
        s3.put_object(Bucket="diffs", Key="a/b.txt", Body=b"hi")
        assert s3.get_object(Bucket="diffs", Key="a/b.txt")["Body"].read() == b"hi"
        pid, log = proc.pid, proc.log_path
        listening = {
            c.laddr.ip for c in psutil.Process(pid).net_connections() if c.status == "LISTEN"
        }
        assert listening == {"127.0.0.1"}
    assert _gone(pid)
    assert not os.path.exists(log)


def test_tansu_round_trip_with_headers_and_stop() -> None:
    with tansu_process() as (proc, bootstrap):
        create_topics(bootstrap, {"t": 3})
        producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
        for i in range(30):
            producer.produce(
                "t", key=f"k{i % 5}".encode(), value=str(i).encode(), headers={"h": b"v"}
            )
        assert producer.flush(10) == 0
        messages = consume_all(bootstrap, "t", expected=30, idle_timeout=0.5)
        assert sorted(int(m.value()) for m in messages) == list(range(30))
        assert all(m.headers() == [("h", b"v")] for m in messages)
        listening = {
            c.laddr.ip for c in psutil.Process(proc.pid).net_connections() if c.status == "LISTEN"
        }
        assert listening == {"127.0.0.1"}
        pid = proc.pid
    assert _gone(pid)


def test_log_is_printed_when_the_block_fails(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(RuntimeError, match="boom"), tansu_broker():
        raise RuntimeError("boom")
    err = capsys.readouterr().err
    assert "tansu (pid" in err and "the block using it failed" in err


def test_start_failure_reports_log(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(services, "_START_ATTEMPTS", 1)
    with pytest.raises(ServiceError, match="exited during start-up"):
        with services._service(
            "false", lambda p: ["sh", "-c", "echo nope; exit 3"], lambda p: False, None, 5, None
        ):
            pass


def test_moto_server_on_a_given_port() -> None:
    port = services.free_port()
    with moto_server(port=port) as endpoint_url:
        assert endpoint_url == f"http://127.0.0.1:{port}"
