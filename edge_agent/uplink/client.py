"""aiomqtt's client, failing a connect at once when the connection closes before the broker's CONNACK.

aiomqtt ignores a disconnect that comes before the CONNACK (paho reports it, aiomqtt waits on), so a broker
that is down behind a relay, or a link that resets every new connection, held each attempt for the whole
timeout (`publish_timeout_s`): a fleet then retried in waves one timeout apart. Here the attempt fails as
soon as paho sees the socket closed or reset, and the uplink's jittered backoff decides when to try again.
"""

from __future__ import annotations

from typing import Any

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

CLOSED_BEFORE_CONNACK = "the connection closed before the broker's CONNACK"


class UplinkClient(aiomqtt.Client):
    def _on_disconnect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None = None,
    ) -> None:
        # paho calls this from the event loop's reader (aiomqtt's socket callbacks), as aiomqtt's own.
        if not self._connected.done():
            self._connected.set_exception(aiomqtt.MqttError(CLOSED_BEFORE_CONNACK))
            self._connected.exception()  # seen: no one waits for it after a connect that timed out
            return
        super()._on_disconnect(client, userdata, flags, reason_code, properties)
