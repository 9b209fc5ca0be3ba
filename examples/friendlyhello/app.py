"""friendlyhello: a tiny web page that greets, names its host and counts visits.

The visit counter lives in Redis at host ``redis``; without it the page still answers
and says the counter is off. PORT (default 80) and NAME (default "world") come from
the environment.
"""

import os
import socket

from flask import Flask
from redis import Redis, RedisError
from redis.backoff import NoBackoff
from redis.retry import Retry

# Short timeouts and no retries (recent redis-py retries three times with a backoff by
# default): a missing Redis must cost the visitor well under a second.
visits = Redis(
    host="redis",
    db=0,
    socket_connect_timeout=0.5,
    socket_timeout=0.5,
    retry=Retry(NoBackoff(), 0),
)

app = Flask(__name__)


@app.route("/")
def hello():
    try:
        count = visits.incr("counter")
        counter_line = f"<b>Visits:</b> {count}"
    except RedisError:
        counter_line = "<i>cannot connect to Redis, counter disabled</i>"

    name = os.getenv("NAME", "world")
    return (
        f"<h3>Hello {name}!</h3>"
        f"<b>Hostname:</b> {socket.gethostname()}<br/>"
        f"{counter_line}\n"
    )


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=int(os.getenv("PORT", "80")))
