"""Connect jcecard's OpenPGP card emulator (PyPI ``jcecard``) to vsmartcard's vpcd reader driver.

The tests run it as a separate process, in pcscd's network namespace, to have a card OpenSC
recognises in a virtual reader. The vpcd protocol: each message is a 2-byte big-endian
length and a payload; a 1-byte payload is a control code (0 power off, 1 power on, 2 reset,
4 "send the ATR"), anything longer is a command APDU, answered with a response APDU.

jcecard 0.1 has no OpenPGP SELECT DATA (INS A5), without which OpenSC 0.23 gives up on the
card: ``--ack-select-data`` answers it with 9000.

Usage: python vpcd_bridge.py --port 35964 --state DIR [--ack-select-data]
"""

from __future__ import annotations

import argparse
import logging
import socket
import struct
import sys
from pathlib import Path


def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("vpcd closed the connection")
        buf += chunk
    return buf


def send(sock: socket.socket, payload: bytes) -> None:
    sock.sendall(struct.pack("!H", len(payload)) + payload)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=35964)
    ap.add_argument("--state", required=True)
    ap.add_argument("--ack-select-data", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from jcecard.main import OpenPGPCard

    card = OpenPGPCard(storage_path=Path(args.state))
    sock = socket.create_connection((args.host, args.port))
    print(f"connected to vpcd {args.host}:{args.port}", flush=True)
    try:
        while True:
            (n,) = struct.unpack("!H", recv_exact(sock, 2))
            msg = recv_exact(sock, n)
            if n == 1:
                code = msg[0]
                if code == 0:
                    card.power_off()
                elif code == 1:
                    card.power_on()
                elif code == 2:
                    card.reset()
                elif code == 4:
                    send(sock, card.get_atr())
            elif args.ack_select_data and len(msg) >= 4 and msg[1] == 0xA5:
                send(sock, b"\x90\x00")
            else:
                send(sock, card.process_apdu(msg))
    except ConnectionError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
