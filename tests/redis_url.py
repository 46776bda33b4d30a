"""Print the Redis URL the test suite should use: $REDIS_URL, else a local Redis that answers.

Prints nothing when neither exists; the suite then starts an embedded fake Redis.
"""

from __future__ import annotations

import os
import socket

LOCAL = ("127.0.0.1", 6379)


def local_redis_answers() -> bool:
    """Whether a Redis on 127.0.0.1:6379 answers PING."""
    try:
        with socket.create_connection(LOCAL, timeout=0.5) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


if __name__ == "__main__":
    if os.environ.get("REDIS_URL"):
        print(os.environ["REDIS_URL"])
    elif local_redis_answers():
        print("redis://127.0.0.1:6379/0")
