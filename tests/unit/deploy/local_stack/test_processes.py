import socket
import sys

import pytest

from deploy.local_stack.processes import ManagedProcess, StackError, require_free_port, wait_until


def test_stale_pid_file_is_reported_then_removed(tmp_path):
    proc = ManagedProcess("ghost", tmp_path / "run", tmp_path / "logs")
    proc.run_dir.mkdir()
    proc.pid_file.write_text("999999999\n")
    assert proc.pid() is None
    assert proc.stale_pid() == 999999999
    assert proc.remove_stale() == 999999999
    assert not proc.pid_file.exists() and proc.stale_pid() is None


def test_start_and_stop_by_pid_file(tmp_path):
    proc = ManagedProcess("sleeper", tmp_path / "run", tmp_path / "logs")
    popen = proc.start([sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)"])
    assert proc.pid() == popen.pid
    assert wait_until(lambda: "up" in proc.log_file.read_text(), 10)
    assert proc.stop(timeout_s=5)
    popen.wait(timeout=5)
    assert proc.pid() is None and not proc.pid_file.exists()


def test_port_in_use_names_the_setting():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(StackError, match=f"port {port}.*KAFKA_PORT=<port>"):
            require_free_port("127.0.0.1", port, "KAFKA_PORT", "kafka")


def test_wait_until_gives_up_at_the_deadline_and_propagates_stack_errors():
    assert wait_until(lambda: False, 0.3, interval_s=0.05) is False

    def dead():
        raise StackError("process died")

    with pytest.raises(StackError):
        wait_until(dead, 5)
