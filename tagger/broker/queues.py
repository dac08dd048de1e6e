"""What waits in the broker: messages per queue and deliveries not yet acknowledged, and taking a job's batches out
of its queue (Redis through kombu)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tagger_client.contract import QUEUE_BULK, QUEUE_INTERACTIVE, QUEUE_NOTIFICATIONS, QUEUE_TRAINING, TASK_TAG_BATCH

QUEUES = (QUEUE_INTERACTIVE, QUEUE_BULK, QUEUE_TRAINING, QUEUE_NOTIFICATIONS)

# kombu's Redis transport keeps delivered, unacknowledged messages in this hash until they are acked
# (or restored after the visibility timeout).
UNACKED_KEY = "unacked"


@dataclass(frozen=True)
class BrokerDepths:
    """Messages waiting per queue (every priority level summed) and deliveries in flight, broker-wide."""

    waiting: dict[str, int]
    unacked: int


def broker_depths(broker_url: str, queues: tuple[str, ...] = QUEUES, *, timeout: float = 3.0) -> BrokerDepths:
    """Ask the broker, through kombu's own accounting (a declare counts every priority level's list; an
    empty queue has no key in Redis, so the declare is not passive).

    Raises kombu's OperationalError (or the socket's error) when the broker cannot be reached within `timeout`.
    """
    from kombu import Connection

    with Connection(broker_url, connect_timeout=timeout, transport_options={"socket_timeout": timeout}) as conn:
        conn.ensure_connection(max_retries=0, timeout=timeout)  # one try: a probe must not linger
        channel = conn.default_channel
        waiting = {q: int(channel.queue_declare(queue=q).message_count) for q in queues}
        client = getattr(channel, "client", None)
        unacked = int(client.hlen(UNACKED_KEY)) if client is not None else 0
    return BrokerDepths(waiting, unacked)


# A queue's Redis list, rewritten without one job's batch messages, in one atomic step (no worker pops or
# publisher pushes in between) and in order. A message is the job's when it is a `tagger.tag_batch` whose
# arguments begin with the job id (its `argsrepr` header, which Celery writes from the arguments; the body
# is base64). Most messages are told by two plain substring searches of kombu's JSON; one that names the job
# but is written otherwise is decoded to be sure, and a message of another job is never decoded. Two passes:
# the first finds them, the second copies the others to a scratch list that replaces the queue. It runs
# inside Redis, which answers nothing else meanwhile: 0.4 s for 100,000 messages here (BENCHMARKS.md).
_DROP_JOB = """
local job, task, step = ARGV[1], ARGV[2], 1000
local prefix = "['" .. job .. "'"
local named_task, named_args = '"task": "' .. task .. '"', '"argsrepr": "' .. prefix
local function theirs_by_json(raw)
    local ok, message = pcall(cjson.decode, raw)
    local headers = ok and type(message) == 'table' and message.headers
    return type(headers) == 'table' and headers.task == task and type(headers.argsrepr) == 'string'
        and string.sub(headers.argsrepr, 1, #prefix) == prefix
end
local n = redis.call('LLEN', KEYS[1])
local theirs, found = {}, 0
for first = 0, n - 1, step do
    for i, raw in ipairs(redis.call('LRANGE', KEYS[1], first, first + step - 1)) do
        if string.find(raw, job, 1, true) then
            local fast = string.find(raw, named_args, 1, true) and string.find(raw, named_task, 1, true)
            if fast or theirs_by_json(raw) then
                theirs[first + i] = true
                found = found + 1
            end
        end
    end
end
if found == 0 then return 0 end
if found == n then redis.call('DEL', KEYS[1]) return found end
redis.call('DEL', KEYS[2])
for first = 0, n - 1, step do
    local kept = {}
    for i, raw in ipairs(redis.call('LRANGE', KEYS[1], first, first + step - 1)) do
        if not theirs[first + i] then kept[#kept + 1] = raw end
    end
    if #kept > 0 then redis.call('RPUSH', KEYS[2], unpack(kept)) end
end
redis.call('RENAME', KEYS[2], KEYS[1])
return found
"""


def drop_job_batches(connection: Any, job_id: str, queue: str) -> int:
    """Remove the job's batch messages still waiting in `queue` (every priority level) on a kombu Redis
    `connection`; returns how many. Only messages no worker has taken: one delivered and not yet
    acknowledged stays where it is, and its worker answers it (tagger.worker.ended). Any other transport:
    nothing is removed (0)."""
    channel = connection.default_channel
    client = getattr(channel, "client", None)
    if client is None or not hasattr(channel, "_q_for_pri"):
        return 0
    drop = client.register_script(_DROP_JOB)
    # kombu keeps each priority level of a queue in a list of its own (its `_purge` names them the same way)
    lists = dict.fromkeys(channel._q_for_pri(queue, pri) for pri in channel.priority_steps)
    return sum(int(drop(keys=[name, f"{name}.tagger-drop"], args=[job_id, TASK_TAG_BATCH])) for name in lists)
