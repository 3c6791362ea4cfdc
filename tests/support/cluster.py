"""A real three-node RabbitMQ cluster on this machine, from the installed `rabbitmq-server`.

Each node has its own name, ports and directories under one temporary directory,
and all share one Erlang cookie (a `HOME` of their own, so neither the machine's
node nor the user's cookie is touched). The machine's own node on 5672 is left
alone. The nodes boot in parallel; the second and third then join the first
with `rabbitmqctl join_cluster`. Everything is removed after.

By hand (the commands `docs/operations.md` gives):

    python -m tests.support.cluster   # starts one, prints RABBITMQ_URL, Ctrl-C removes it
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aio_pika
import pytest

from tests.support.processes import run_command

SERVER = Path(os.environ.get("RABBITMQ_SCRIPTS", "/usr/lib/rabbitmq/bin"))
NODES = 3
BOOT_TIMEOUT = 90.0


def installed() -> bool:
    return (SERVER / "rabbitmq-server").exists() and (SERVER / "rabbitmqctl").exists()


def _free_ports(count: int) -> list[int]:
    """Ports free now (all bound at once, so all distinct)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@dataclass
class Node:
    """One node: `rabbit-<run>-<n>@localhost`, its AMQP and distribution ports, its files."""

    name: str
    amqp_port: int
    dist_port: int
    base: Path
    home: Path
    # A plain process, not an asyncio one: the cluster outlives the event loop of any test.
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/"

    @property
    def log(self) -> Path:
        return self.base / "console.log"

    def env(self) -> dict[str, str]:
        empty_env_file = self.base / "rabbitmq-env.conf"
        return {
            **os.environ,
            "HOME": str(self.home),  # the cluster's cookie: $HOME/.erlang.cookie
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.amqp_port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.base / "log"),
            "RABBITMQ_CONFIG_FILE": str(self.base / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base / "enabled_plugins"),
            "RABBITMQ_CONF_ENV_FILE": str(empty_env_file),  # not the machine's node's
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            # A paused peer is noticed in ~10 s rather than the default ~60 s.
            "ERL_FLAGS": "-kernel inet_dist_use_interface {127,0,0,1} -kernel net_ticktime 10",
        }

    def write_files(self) -> None:
        for directory in (self.base / "mnesia", self.base / "log"):
            directory.mkdir(parents=True, exist_ok=True)
        (self.base / "rabbitmq-env.conf").write_text("")
        (self.base / "enabled_plugins").write_text("[].\n")  # no management plugin, no ports
        (self.base / "rabbitmq.conf").write_text(
            f"listeners.tcp.1 = 127.0.0.1:{self.amqp_port}\n"
            "loopback_users = none\n"
            # A node that was cut off (paused, say) and comes back is restarted by the
            # cluster and rejoins by itself; with the default (`ignore`) it stays apart.
            "cluster_partition_handling = autoheal\n"
            # Free disk on a test machine may be small; the default limit would block publishers.
            "disk_free_limit.absolute = 50MB\n"
            "log.console = false\n"
            "log.file.level = warning\n"
        )

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """Boot the node (its Erlang VM and RabbitMQ), without waiting for it."""
        assert not self.running, f"{self.name} is running"
        self.starts += 1
        with self.log.open("ab") as out:
            out.write(f"--- start {self.starts} ---\n".encode())
            out.flush()
            self.process = subprocess.Popen(  # noqa: S603 - the installed server, no input
                [str(SERVER / "rabbitmq-server")],
                env=self.env(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,  # one process group: the VM and its helpers
            )

    def signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)

    def kill(self) -> None:
        """SIGKILL: the node dies with no goodbye to clients or peers."""
        if self.process is not None:
            self.signal(signal.SIGKILL)  # the group: helpers too, even if the VM is gone
            self.process.wait()

    def pause(self) -> None:
        """SIGSTOP: the node stops answering anyone, clients and peers alike."""
        self.signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.signal(signal.SIGCONT)

    async def ctl(self, *args: str, timeout: float = 60.0, check: bool = True) -> str:
        """`rabbitmqctl -n <this node> args...`; its output."""
        return await run(
            str(SERVER / "rabbitmqctl"),
            "-n",
            self.name,
            *args,
            env=self.env(),
            timeout=timeout,
            check=check,
        )

    async def wait_booted(self, timeout: float = BOOT_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited:\n{self.tail()}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{self.name} did not boot in {timeout}s:\n{self.tail()}")
            with contextlib.suppress(AssertionError):
                await self.ctl("await_startup", "--timeout", str(int(max(remaining, 1))))
                return
            await asyncio.sleep(0.5)

    def tail(self, lines: int = 40) -> str:
        texts = [self.log.read_text(errors="replace")] if self.log.exists() else []
        texts += [path.read_text(errors="replace") for path in (self.base / "log").glob("*.log")]
        return "\n".join("\n".join(text.splitlines()[-lines:]) for text in texts)


async def run(*command: str, env: dict[str, str], timeout: float = 60.0, check: bool = True) -> str:
    try:
        code, text = await run_command(*command, env=env, timeout=timeout)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout}s: {' '.join(command)}") from None
    if check and code != 0:
        raise AssertionError(f"{' '.join(command)} exited {code}:\n{text}")
    return text


@dataclass
class Cluster:
    nodes: list[Node]
    root: Path
    stopped_apps: set[str] = field(default_factory=set)
    paused: set[str] = field(default_factory=set)

    @property
    def url(self) -> str:
        """`RABBITMQ_URL` naming every node, the first first."""
        return ",".join(node.url for node in self.nodes)

    def url_from(self, first: Node) -> str:
        """Every node, `first` first (where a client connects while it answers)."""
        index = self.nodes.index(first)
        ordered = self.nodes[index:] + self.nodes[:index]
        return ",".join(node.url for node in ordered)

    def node(self, name: str) -> Node:
        return next(node for node in self.nodes if node.name == name)

    def live(self) -> Node:
        """A node that is running its application (to ask the cluster questions)."""
        return next(
            node
            for node in self.nodes
            if node.running and node.name not in self.stopped_apps | self.paused
        )

    def pause(self, node: Node) -> None:
        """Cut a node off: SIGSTOP, so it answers neither clients nor its peers."""
        node.pause()
        self.paused.add(node.name)

    def resume(self, node: Node) -> None:
        node.resume()
        self.paused.discard(node.name)

    async def leader(self, queue: str) -> Node:
        """The node that leads a quorum queue's replicas now."""
        output = await self.live().ctl(
            "list_queues", "name", "leader", "--formatter", "json", "--quiet"
        )
        for row in json.loads(output):
            if row["name"] == queue:
                return self.node(row["leader"])
        raise AssertionError(f"no queue {queue}: {output}")

    async def members(self, queue: str) -> list[str]:
        output = await self.live().ctl(
            "list_queues", "name", "members", "--formatter", "json", "--quiet"
        )
        for row in json.loads(output):
            if row["name"] == queue:
                return sorted(row["members"])
        raise AssertionError(f"no queue {queue}: {output}")

    async def connection_nodes(self, name: str) -> list[str]:
        """The nodes holding the connections a client named `name` (`?name=` in its URL).

        While a peer is cut off and not yet known to be down, the question may go
        unanswered: then no node is named.
        """
        try:
            output = await self.live().ctl(
                "list_connections",
                "port",
                "client_properties",
                "--formatter",
                "json",
                "--quiet",
                timeout=15.0,
            )
            rows = json.loads(output)
        except (AssertionError, ValueError):
            return []
        by_port = {node.amqp_port: node.name for node in self.nodes}
        return sorted(by_port[row["port"]] for row in rows if _connection_name(row) == name)

    async def stop_app(self, node: Node) -> None:
        """`rabbitmqctl stop_app`: RabbitMQ stops cleanly, closing its clients; the VM stays."""
        await node.ctl("stop_app")
        self.stopped_apps.add(node.name)

    async def start_app(self, node: Node) -> None:
        await node.ctl("start_app", timeout=BOOT_TIMEOUT)
        self.stopped_apps.discard(node.name)
        await node.wait_booted()

    async def restart(self, node: Node) -> None:
        """Boot a killed node again; it rejoins the cluster from its own data."""
        node.kill()
        node.start()
        await node.wait_booted()

    async def wait_running_nodes(self, count: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            output = await self.live().ctl("cluster_status", "--formatter", "json", check=False)
            with contextlib.suppress(ValueError, KeyError):
                if len(json.loads(output)["running_nodes"]) >= count:
                    return
            if time.monotonic() >= deadline:
                raise AssertionError(f"{count} nodes not running in {timeout}s: {output}")
            await asyncio.sleep(0.5)


def _connection_name(row: dict[str, object]) -> str | None:
    """`connection_name` of a `list_connections` row's client properties ([key, type, value])."""
    properties = row.get("client_properties")
    if isinstance(properties, list):
        for key, _type, value in properties:
            if key == "connection_name":
                return str(value)
    return None


async def _answers(url: str) -> bool:
    try:
        connection = await aio_pika.connect(url, timeout=5)
    except Exception:
        return False
    await connection.close()
    return True


@asynccontextmanager
async def three_node_cluster(count: int = NODES) -> AsyncIterator[Cluster]:
    """Start a cluster of `count` nodes (joined, answering AMQP); remove it after."""
    run_id = secrets.token_hex(3)
    root = Path(tempfile.mkdtemp(prefix=f"rabbit-cluster-{run_id}-"))
    home = root / "home"
    home.mkdir()
    cookie = home / ".erlang.cookie"
    cookie.write_text(secrets.token_hex(16).upper())
    cookie.chmod(0o400)
    ports = _free_ports(2 * count)
    nodes = [
        Node(
            name=f"rabbit-{run_id}-{index + 1}@localhost",
            amqp_port=ports[2 * index],
            dist_port=ports[2 * index + 1],
            base=root / f"node{index + 1}",
            home=home,
        )
        for index in range(count)
    ]
    cluster = Cluster(nodes, root)
    try:
        for node in nodes:
            node.write_files()
        for node in nodes:
            node.start()
        await asyncio.gather(*(node.wait_booted() for node in nodes))
        first = nodes[0]
        for node in nodes[1:]:  # one at a time: joins change the cluster's membership
            await node.ctl("stop_app")
            await node.ctl("join_cluster", first.name)
            await node.ctl("start_app", timeout=BOOT_TIMEOUT)
        await asyncio.gather(*(node.wait_booted() for node in nodes))
        await cluster.wait_running_nodes(count)
        for node in nodes:
            assert await _answers(node.url), f"{node.name} does not answer AMQP"
        yield cluster
    finally:
        for node in nodes:
            node.kill()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """One three-node cluster for a test module (booting one takes seconds, not milliseconds).

    Synchronous on purpose: its own event loop in a thread would be needed otherwise; the
    nodes are plain subprocesses, started and removed by this loop of its own.
    """
    if not installed():
        pytest.skip("rabbitmq-server is not installed")
    loop = asyncio.new_event_loop()
    manager = three_node_cluster()
    try:
        started = loop.run_until_complete(manager.__aenter__())
        yield started
    finally:
        loop.run_until_complete(manager.__aexit__(None, None, None))
        loop.close()


def main() -> None:
    """Start a cluster, print how to reach it, remove it on Ctrl-C."""

    async def serve() -> None:
        async with three_node_cluster() as started:
            for node in started.nodes:
                print(f"{node.name}  amqp {node.amqp_port}  files {node.base}")
            print(f"\nRABBITMQ_URL={started.url}\n")
            print(f"rabbitmqctl: HOME={started.nodes[0].home} {SERVER}/rabbitmqctl -n <node> ...")
            await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


if __name__ == "__main__":
    main()
