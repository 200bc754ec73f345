"""A local SMTP server that accepts every message and notes it in a file (aiosmtpd).

One line per message: `<unix time> <port> <recipients, comma-separated> <Message-ID>`.
Listening on several ports lets each worker send to its own port, so the file tells
which worker sent what. Only loopback addresses are listened on.

    python -m bench.smtp_sink --ports 8025,8026 --out /tmp/sink.log
"""

from __future__ import annotations

import argparse
import signal
import threading
import time
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any, TextIO

from aiosmtpd.controller import Controller


class Recorder:
    def __init__(self, port: int, out: TextIO, lock: threading.Lock) -> None:
        self.port = port
        self.out = out
        self.lock = lock
        self.parser = BytesHeaderParser()

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
        headers = self.parser.parsebytes(envelope.original_content or envelope.content or b"")
        message_id = (headers.get("Message-ID") or "-").strip().replace(" ", "")
        line = f"{time.time():.6f} {self.port} {','.join(envelope.rcpt_tos)} {message_id}\n"
        with self.lock:
            self.out.write(line)
            self.out.flush()
        return "250 OK"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ports", required=True, help="comma-separated ports on 127.0.0.1")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    lock = threading.Lock()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with args.out.open("a") as out:
        controllers = []
        for port in (int(p) for p in args.ports.split(",")):
            controller = Controller(
                Recorder(port, out, lock),
                hostname="127.0.0.1",
                port=port,
                # Without a name aiosmtpd calls socket.getfqdn() for every connection, on
                # its event loop: slow where DNS is (0.7 s here), and the sink would be
                # the bottleneck of the measurement.
                server_hostname="sink.bench.localhost",
                ready_timeout=30,
            )
            controller.start()
            controllers.append(controller)
        print("ready", flush=True)
        stop.wait(timeout=6 * 3600)  # bounded even if nobody stops it
        for controller in controllers:
            controller.stop()


if __name__ == "__main__":
    main()
