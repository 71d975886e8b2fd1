"""The site's BACnet/IP controllers. Each is its own device on its own UDP port, and each `sync()`:
takes what the network commanded (the highest active priority) into the building model, where the model's
own sequence takes over again once every priority is relinquished, and shows the model's state.

Device instances: building 1 (library) 1xxx, building 2 (information centre) 2xxx; plant x100, air
handler x200, room controllers x301.., lighting x400.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bacpypes3.local.device import DeviceObject

from edge_agent.protocols.bacnet.app import BacnetApplication
from edge_sim.bms.ahu import SAT_MAX_C
from edge_sim.devices.bacnet.objects import Commanded, SensorInput, StatusInput, sensor, setpoint, status
from edge_sim.physics.climate import WeatherSample
from edge_sim.site.building import Building, Zone

VENDOR_ID = 999
ROOM, AHU, PLANT, LIGHTING = "room", "ahu", "plant", "lighting"

# Room controllers as a Korean integrator names them (RoomController(hangul=True)): the room, then the
# quantity, "1층 열람실 온도" (1st floor reading room temperature). The simulator's own names stay English.
HANGUL_ROOMS = {
    "reading-1": "1층 열람실", "reading-2": "2층 열람실", "stacks": "서고", "lobby": "로비",
    "office-south": "남측 사무실", "office-north": "북측 사무실", "control-room": "상황실",
}  # fmt: skip
HANGUL_OBJECTS = {
    "Zone Temperature": "온도", "Zone CO2": "이산화탄소", "Discharge Air Temperature": "급기 온도",
    "Discharge Airflow": "급기 풍량", "Occupied Mode": "재실", "Cooling Setpoint": "냉방 설정온도",
    "Heating Setpoint": "난방 설정온도",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class ControllerInfo:
    name: str
    kind: str
    instance: int
    address: str


def _device(instance: int, name: str, model: str) -> DeviceObject:
    return DeviceObject(
        objectIdentifier=("device", instance),
        objectName=name,
        vendorIdentifier=VENDOR_ID,
        vendorName="edge-sim",
        modelName=model,
    )


class Controller:
    info: ControllerInfo
    stack: BacnetApplication

    def sync(self, local: datetime, weather: WeatherSample) -> None:
        raise NotImplementedError


class RoomController(Controller):
    """A VAV zone controller: temperatures, CO2, airflow; cooling and heating setpoints commandable."""

    def __init__(
        self, zone: Zone, instance: int, address: str, building: str, *, hangul: bool = False
    ) -> None:
        """`hangul`: the device and its objects carry Korean names (HANGUL_ROOMS, HANGUL_OBJECTS)."""
        self.zone = zone
        name = f"{building}-{zone.name}-vav"
        self.info = ControllerInfo(name, ROOM, instance, address)
        room = HANGUL_ROOMS.get(zone.name, zone.name)

        def named(english: str) -> str:
            return f"{room} {HANGUL_OBJECTS[english]}" if hangul else english

        t = zone.thermal.t_air
        self.temperature = sensor(1, named("Zone Temperature"), "degreesCelsius", t, zone.spec.description)
        self.co2 = sensor(2, named("Zone CO2"), "partsPerMillion", zone.thermal.co2_ppm)
        self.discharge = sensor(3, named("Discharge Air Temperature"), "degreesCelsius", t)
        self.airflow = sensor(4, named("Discharge Airflow"), "litersPerSecond", 0.0)
        self.occupied = status(1, named("Occupied Mode"), False)
        cooling, heating = named("Cooling Setpoint"), named("Heating Setpoint")
        self.cooling_sp = setpoint(1, cooling, "degreesCelsius", 26.0, description="occupied 26 C")
        self.heating_sp = setpoint(2, heating, "degreesCelsius", 20.0, description="occupied 20 C")
        objects = [self.temperature, self.co2, self.discharge, self.airflow, self.occupied]
        self.stack = BacnetApplication(
            address,
            [
                _device(instance, f"{room} VAV" if hangul else name, "edge-sim VAV controller"),
                *objects,
                self.cooling_sp.obj,
                self.heating_sp.obj,
            ],
        )

    def sync(self, local: datetime, weather: WeatherSample) -> None:
        zone = self.zone
        own_cooling, own_heating = zone.sequence.setpoints(local, zone.thermal.t_air)
        zone.overrides.cooling_sp = self.cooling_sp.sync(own_cooling)
        zone.overrides.heating_sp = self.heating_sp.sync(own_heating)
        self.temperature.presentValue = zone.thermal.t_air
        self.co2.presentValue = zone.thermal.co2_ppm
        self.discharge.presentValue = zone.discharge_temp_c
        self.airflow.presentValue = zone.flow_m3_s * 1000
        self.occupied.presentValue = "active" if zone.command.wants_air else "inactive"


class AhuController(Controller):
    """The air handler: supply air, static pressure, fan; supply-air setpoint, fan speed limit and outdoor
    air ventilation limit (demand-controlled ventilation) commandable."""

    def __init__(self, building: Building, instance: int, address: str) -> None:
        self.building = building
        name = f"{building.spec.name}-ahu"
        self.info = ControllerInfo(name, AHU, instance, address)
        ahu = building.ahu
        self.sat = sensor(1, "Supply Air Temperature", "degreesCelsius", ahu.sat_c)
        self.static = sensor(2, "Duct Static Pressure", "pascals", ahu.sequence.static_pa)
        self.fan_power = sensor(3, "Supply Fan Power", "kilowatts", 0.0)
        self.mixed = sensor(4, "Mixed Air Temperature", "degreesCelsius", ahu.mixed_temp_c)
        self.outdoor = sensor(5, "Outdoor Air Temperature", "degreesCelsius", 20.0)
        self.fan_speed = sensor(6, "Supply Fan Speed", "percent", 0.0)
        self.oa_damper = sensor(7, "Outdoor Air Damper", "percent", 0.0)
        self.fan_status = status(1, "Supply Fan Status", False)
        self.sat_sp = setpoint(1, "Supply Air Temperature Setpoint", "degreesCelsius", SAT_MAX_C)
        self.speed_limit = setpoint(2, "Supply Fan Speed Limit", "percent", 100.0)
        self.ventilation_limit = setpoint(
            3, "Outdoor Air Ventilation Limit", "percent", 100.0, description="share of design outdoor air"
        )
        objects = [self.sat, self.static, self.fan_power, self.mixed, self.outdoor, self.fan_speed]
        self.stack = BacnetApplication(
            address,
            [
                _device(instance, name, "edge-sim AHU controller"),
                *objects,
                self.oa_damper,
                self.fan_status,
                self.sat_sp.obj,
                self.speed_limit.obj,
                self.ventilation_limit.obj,
            ],
        )

    def sync(self, local: datetime, weather: WeatherSample) -> None:
        ahu = self.building.ahu
        ahu.sat_override_c = self.sat_sp.sync(ahu.sequence.supply_air_setpoint(weather.temperature_c))
        ahu.fan_speed_cap_pct = self.speed_limit.sync(100.0)
        ahu.ventilation_limit_pct = self.ventilation_limit.sync(100.0)
        self.sat.presentValue = ahu.sat_c
        self.static.presentValue = ahu.sequence.static_pa
        self.fan_power.presentValue = self.building.power.fans / 1000
        self.mixed.presentValue = ahu.mixed_temp_c
        self.outdoor.presentValue = weather.temperature_c
        self.fan_speed.presentValue = ahu.fan_speed_pct
        self.oa_damper.presentValue = ahu.oa_fraction * 100
        self.fan_status.presentValue = "active" if ahu.flow_m3_s > 0 else "inactive"


class PlantController(Controller):
    """The heat-pump plant: outputs and electric power; demand limit (%) commandable."""

    def __init__(self, building: Building, instance: int, address: str) -> None:
        self.building = building
        name = f"{building.spec.name}-plant"
        self.info = ControllerInfo(name, PLANT, instance, address)
        self.power = sensor(1, "Plant Electric Power", "kilowatts", 0.0)
        self.cooling = sensor(2, "Cooling Output", "kilowatts", 0.0)
        self.heating = sensor(3, "Heating Output", "kilowatts", 0.0)
        self.chw = sensor(
            4, "Chilled Water Supply Temperature", "degreesCelsius", building.cooling.supply_temp_c
        )
        self.hw = sensor(5, "Hot Water Supply Temperature", "degreesCelsius", building.heating.supply_temp_c)
        self.cooling_running = status(1, "Cooling Running", False)
        self.heating_running = status(2, "Heating Running", False)
        self.demand_limit = setpoint(1, "Demand Limit", "percent", 100.0, description="share of rated input")
        objects = [self.power, self.cooling, self.heating, self.chw, self.hw]
        self.stack = BacnetApplication(
            address,
            [
                _device(instance, name, "edge-sim heat-pump plant controller"),
                *objects,
                self.cooling_running,
                self.heating_running,
                self.demand_limit.obj,
            ],
        )

    def sync(self, local: datetime, weather: WeatherSample) -> None:
        building = self.building
        building.demand_limit_pct = self.demand_limit.sync(100.0)
        self.power.presentValue = (building.power.cooling + building.power.heating) / 1000
        self.cooling.presentValue = building.cooling.delivered_w / 1000
        self.heating.presentValue = building.heating.delivered_w / 1000
        self.cooling_running.presentValue = "active" if building.cooling.running else "inactive"
        self.heating_running.presentValue = "active" if building.heating.running else "inactive"


class LightingController(Controller):
    """One per building: per zone a commandable dimming level (%) and a work-plane illuminance sensor."""

    def __init__(self, building: Building, instance: int, address: str) -> None:
        self.building = building
        name = f"{building.spec.name}-lighting"
        self.info = ControllerInfo(name, LIGHTING, instance, address)
        self.dimming: list[tuple[Zone, Commanded, SensorInput]] = []
        objects: list[SensorInput | StatusInput] = []
        commands = []
        for i, zone in enumerate(building.zones, start=1):
            level = setpoint(i, f"{zone.name} Dimming Level", "percent", 100.0, kind="analog-output")
            lux = sensor(i, f"{zone.name} Illuminance", "luxes", 0.0)
            self.dimming.append((zone, level, lux))
            objects.append(lux)
            commands.append(level.obj)
        self.stack = BacnetApplication(
            address, [_device(instance, name, "edge-sim lighting controller"), *objects, *commands]
        )

    def sync(self, local: datetime, weather: WeatherSample) -> None:
        for zone, level, lux in self.dimming:
            zone.overrides.dimming_pct = level.sync(zone.baseline_dimming_pct)
            lux.presentValue = zone.illuminance_lux
