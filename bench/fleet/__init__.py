"""The fleet bench (issue 21, Build 6): a hundred gateways on a clustered broker, through a node crash and a
city-wide link outage.

The broker is a 3-node NATS server cluster (Debian's nats-server) with JetStream and its MQTT gateway, all
started on loopback by the bench. NATS rather than RabbitMQ: one small Go binary per node (about 20 MiB
resident, no Erlang VM, quorum queues or plugin to enable), so three nodes and a hundred sessions leave the
two cores of the bench machine to the gateways; and its MQTT state (sessions, QoS 1 messages, retained
messages) lives in JetStream streams replicated on all three nodes, so one node's crash loses none of it.
NATS speaks MQTT 3.1.1 only: the uplink's MQTT 5 attempt is refused and it falls back, as with any 3.1.1
broker.

The gateways are the agent's own Uplink and Buffer (a SQLite file each, durability 'full'), several per
worker process, each fed one reading of each of its meter's points every tick. Each reaches the cluster
through a link proxy per node (proxy.py), so the bench can cut every link at once. One central subscriber
per node (MQTT 3.1.1, QoS 1, persistent session) counts every seq.

Scenario (seconds after the fleet's start; --fast shortens it): steady publishing; node n2 killed (SIGKILL)
and restarted a minute later; every link cut for a minute and restored; steady again; the meters stop and the
bench waits for every buffer to empty. Then it prints the table (report.py).

Run: .venv/bin/python -m bench.fleet [--gateways 100] [--minutes 8] [--fast] [--workers 4]
"""
