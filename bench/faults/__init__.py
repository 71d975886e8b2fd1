"""The fault bench (issue 17): the faults a plant room brings, repeated against the real agent process, and
judged by independent observers only.

- readings: an MQTT subscriber of its own (paho, persistent session) keeps each gateway's ledger of sequence
  numbers by docs/mqtt.md's rules. Lost: a seq never received, not reported dropped, not still in the buffer
  file after a clean stop; or a seq reused by a new reading (the dedup rule discards it). Duplicated: the same
  reading again (allowed by at-least-once; reported, not a failure).
- writes: a hand-written Modbus server logs every write it receives (edge_sim.logging_modbus), and a bacpypes3
  client of the bench's own reads priority arrays. Wrong writes: outside limits, one command executed twice, a
  refused (retained, expired, unsigned, altered) command executed, control's write left on a controller after
  a crash and a restart.
- commands: built from docs/mqtt.md (bench/faults/commands.py), each with an `expires`; signed envelopes when
  a key is set (`--signed`: a new one; `--signing-key PEM`), the agent then configured to trust it. The
  command attack turns signing on for its signed cases in any case.
- crashes: the agent exiting without being asked (it is restarted, as its systemd unit would).
- recovery: from the fault removed to the first new reading at the subscriber (for control: to the restarted
  run's first control step).

Run: .venv/bin/python -m bench.faults [--quick] [--only NAME ...] [--signed]
(as root, for the tmpfs of the disk attack)
"""
