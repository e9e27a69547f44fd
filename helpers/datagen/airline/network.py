"""The shared airline domain: airports, aircraft, routes, flights and the derived flight_performance."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from helpers.datagen.airline.reference import (
    AIRPORTS,
    CANCELLED,
    DELAYED,
    DIVERTED,
    MODELS,
    ON_TIME,
    STATUS_WEIGHTS,
    STATUSES,
)
from helpers.datagen.airline.spec import (
    N_ROUTE_PAIRS,
    AirlineScale,
    make_table,
    pc_lpad,
    rng,
)
from helpers.datagen.common import (
    SECONDS_PER_DAY,
    GeneratedTable,
    Params,
    concat,
    date_array,
    haversine_km,
    month_strings,
    take_str,
    ts_array,
    weighted_choice,
)

# ---- airports ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Airports:
    code: np.ndarray
    country: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    hub: np.ndarray


def build_airports() -> tuple[GeneratedTable, Airports]:
    ap = list(zip(*AIRPORTS, strict=True))
    ap_code = np.array(ap[0])
    ap_country = np.array(ap[4])
    ap_lat = np.array(ap[5], dtype=np.float64)
    ap_lon = np.array(ap[6], dtype=np.float64)
    ap_hub = np.array(ap[8], dtype=bool)
    table = make_table(
        "airports",
        {
            "airport_code": pa.array(ap[0]),
            "airport_name": pa.array(ap[1]),
            "city": pa.array(ap[2]),
            "state_code": pa.array(ap[3]),
            "country_code": pa.array(ap[4]),
            "latitude": pa.array(ap_lat),
            "longitude": pa.array(ap_lon),
            "timezone": pa.array(ap[7]),
            "is_hub": pa.array(ap_hub),
        },
    )
    return table, Airports(ap_code, ap_country, ap_lat, ap_lon, ap_hub)


# ---- aircraft ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fleet:
    """The aircraft: one entry per aircraft, in ``aircraft_id`` order."""

    n: int
    model: np.ndarray  # index into MODELS
    aircraft_id: pa.Array
    first: np.ndarray  # first-class seats
    seats: np.ndarray
    range_km: np.ndarray
    burn: np.ndarray  # fuel burn, litres per km

    @property
    def manufacturers(self) -> tuple[str, ...]:
        return tuple(m[0] for m in MODELS)

    @property
    def model_names(self) -> tuple[str, ...]:
        return tuple(m[1] for m in MODELS)


def build_aircraft(params: Params, scale: AirlineScale) -> tuple[GeneratedTable, Fleet]:
    r = rng(params, "aircraft")
    md = list(zip(*MODELS, strict=True))
    n_ac = scale.aircraft
    # one of each model first, so every route has an aircraft that can fly it
    model = np.concatenate(
        [np.arange(len(MODELS)), weighted_choice(r, np.array(md[8]), n_ac - len(MODELS))]
    )
    maker_codes = np.array([m[0][0] for m in MODELS])
    order = np.lexsort((r.random(n_ac), model, maker_codes[model]))  # group by maker, then model
    model = model[order]
    maker_initial = maker_codes[model]
    seq = np.zeros(n_ac, dtype=np.int64)
    for initial in np.unique(maker_initial):  # 3 makers, not rows
        sel = maker_initial == initial
        seq[sel] = np.arange(1, int(sel.sum()) + 1)
    ac_id = concat(pa.array(maker_initial.tolist(), type=pa.string()), pc_lpad(seq, 3))
    ac_eco = np.array(md[2])[model]
    ac_bus = np.array(md[3])[model]
    ac_first = np.array(md[4])[model]
    ac_seats = ac_eco + ac_bus + ac_first
    ac_range = np.array(md[5])[model]
    ac_burn = np.array(md[7])[model]
    table = make_table(
        "aircraft",
        {
            "aircraft_id": ac_id,
            "manufacturer": take_str(md[0], model),
            "model": take_str(md[1], model),
            "capacity_economy": pa.array(ac_eco.astype(np.int32)),
            "capacity_business": pa.array(ac_bus.astype(np.int32)),
            "capacity_first": pa.array(ac_first.astype(np.int32)),
            "range_km": pa.array(ac_range.astype(np.int32)),
            "cruise_speed_kmh": pa.array(np.array(md[6])[model].astype(np.int32)),
            "year_manufactured": pa.array(
                r.integers(2005, params.start_date.year + 1, n_ac).astype(np.int32)
            ),
        },
    )
    return table, Fleet(n_ac, model, ac_id, ac_first, ac_seats, ac_range, ac_burn)


# ---- routes: 50 airport pairs, both directions -------------------------------------------------


@dataclass(frozen=True)
class Routes:
    origin: np.ndarray  # airport index
    destination: np.ndarray
    km: np.ndarray
    minutes: np.ndarray
    service: np.ndarray  # routes x 7 weekdays (Monday first)
    origin_hub: np.ndarray
    destination_hub: np.ndarray
    codes: np.ndarray  # airport codes, for the flights' origin / destination


def build_routes(params: Params, airports: Airports, fleet: Fleet) -> tuple[GeneratedTable, Routes]:
    r = rng(params, "routes")
    ap_code, ap_lat, ap_lon, ap_hub = airports.code, airports.lat, airports.lon, airports.hub
    n_ap = len(AIRPORTS)
    ii, jj = np.triu_indices(n_ap, k=1)
    pair_km = haversine_km(ap_lat[ii], ap_lon[ii], ap_lat[jj], ap_lon[jj])
    weight = (1.0 + 2.0 * ap_hub[ii]) * (1.0 + 2.0 * ap_hub[jj])
    weight = weight * (pair_km <= 0.95 * fleet.range_km.max()) * np.where(pair_km < 300, 0.0, 1.0)
    picked = r.choice(len(ii), size=N_ROUTE_PAIRS, replace=False, p=weight / weight.sum())
    rt_o = np.concatenate([ii[picked], jj[picked]])
    rt_d = np.concatenate([jj[picked], ii[picked]])
    order = np.lexsort((ap_code[rt_d], ap_code[rt_o]))
    rt_o, rt_d = rt_o[order], rt_d[order]
    n_rt = len(rt_o)
    rt_km = np.round(haversine_km(ap_lat[rt_o], ap_lon[rt_o], ap_lat[rt_d], ap_lon[rt_d]), 1)
    rt_minutes = np.round(rt_km / 800.0 * 60.0 + 30.0).astype(np.int64)  # taxi + climb allowance
    service = _service_days(r, n_rt)
    service_str = ["".join("1" if b else "0" for b in row) for row in service]  # 100 routes
    table = make_table(
        "routes",
        {
            "route_id": pa.array(np.arange(1, n_rt + 1, dtype=np.int64)),
            "origin_airport": pa.array(ap_code[rt_o]),
            "destination_airport": pa.array(ap_code[rt_d]),
            "distance_km": pa.array(rt_km),
            "flight_duration_minutes": pa.array(rt_minutes.astype(np.int32)),
            "is_international": pa.array(airports.country[rt_o] != airports.country[rt_d]),
            "service_days": pa.array(service_str),
        },
    )
    return table, Routes(
        rt_o, rt_d, rt_km, rt_minutes, service, ap_hub[rt_o], ap_hub[rt_d], ap_code
    )


def _service_days(r: np.random.Generator, n_rt: int) -> np.ndarray:
    """Weekdays each route flies: most daily, a few only on some weekdays (at least three)."""
    service = np.ones((n_rt, 7), dtype=bool)
    partial = r.random(n_rt) < 0.2
    service[partial] = r.random((int(partial.sum()), 7)) < 0.6
    service[partial, r.integers(0, 7, int(partial.sum()))] = True
    while (bad := service.sum(axis=1) < 3).any():  # at most a few passes over 100 routes
        service[bad, r.integers(0, 7, int(bad.sum()))] = True
    if not service.all(axis=1).any():  # keep one daily route, so any window has flights
        service[0] = True
    return service


# ---- flights -----------------------------------------------------------------------------------

#: relative weight of each departure hour (UTC) of the day
_HOUR_WEIGHTS = (
    0.2, 0.1, 0.1, 0.1, 0.2, 0.6, 1.5, 2.0, 1.8, 1.5, 1.3, 1.2,
    1.3, 1.3, 1.2, 1.3, 1.5, 1.8, 1.9, 1.6, 1.2, 0.9, 0.6, 0.4,
)  # fmt: skip


@dataclass(frozen=True)
class Flights:
    """The flights, in ``flight_id`` order (by scheduled departure, then route)."""

    n: int
    id: np.ndarray
    number: pa.Array
    route: np.ndarray  # route index
    day: np.ndarray  # days since 1970-01-01
    sched_dep: np.ndarray  # epoch seconds
    sched_arr: np.ndarray
    duration: np.ndarray  # scheduled minutes
    km: np.ndarray
    aircraft: np.ndarray  # aircraft index
    status: np.ndarray  # index into STATUSES
    cancelled: np.ndarray
    act_dep: np.ndarray
    act_arr: np.ndarray
    dep_delay_min: np.ndarray
    arr_delay_min: np.ndarray

    @property
    def operated_idx(self) -> np.ndarray:
        """Indices of the flights that operated (not cancelled)."""
        return np.flatnonzero(~self.cancelled)


def build_flights(
    params: Params, scale: AirlineScale, routes: Routes, fleet: Fleet
) -> tuple[GeneratedTable, Flights]:
    r = rng(params, "flights")
    n_fl = scale.flights
    rt_o, rt_d, ap_code = routes.origin, routes.destination, routes.codes
    fl_route, fl_day, hour, sched_dep = _schedule(r, params, routes, n_fl)
    fl_dur = routes.minutes[fl_route]
    sched_arr = sched_dep + fl_dur * 60
    fl_km = routes.km[fl_route]
    # an aircraft whose range covers the route: a suffix of the fleet sorted by range
    ac_range, n_ac = fleet.range_km, fleet.n
    by_range = np.argsort(ac_range, kind="stable")
    first_ok = np.searchsorted(ac_range[by_range], fl_km, side="left")
    pick = first_ok + (r.random(n_fl) * (n_ac - first_ok)).astype(np.int64)
    fl_ac = by_range[pick]
    status = weighted_choice(r, STATUS_WEIGHTS, n_fl)
    delay = np.where(
        status == ON_TIME,
        r.integers(-5, 15, n_fl),
        np.where(
            status == DELAYED,
            15 + np.minimum(r.exponential(35.0, n_fl).astype(np.int64), 585),
            r.integers(0, 61, n_fl),
        ),
    )
    arr_noise = r.integers(-15, 16, n_fl) + np.where(
        status == DIVERTED, r.integers(60, 241, n_fl), 0
    )
    cancelled = status == CANCELLED
    operated = ~cancelled
    act_dep = sched_dep + delay * 60
    act_arr = act_dep + (fl_dur + arr_noise) * 60
    dep_delay_min = np.where(operated, delay, 0)
    arr_delay_min = np.where(operated, (act_arr - sched_arr) // 60, 0)
    fl_id = np.arange(1, n_fl + 1, dtype=np.int64)
    flight_number = concat("SL", pc_lpad(1000 + fl_route * 24 + hour, 4))
    created_day = fl_day - r.integers(30, 181, n_fl)
    table = make_table(
        "flights",
        {
            "flight_id": pa.array(fl_id),
            "flight_number": flight_number,
            "origin_airport": take_str(list(ap_code), rt_o[fl_route]),
            "destination_airport": take_str(list(ap_code), rt_d[fl_route]),
            "scheduled_departure": ts_array(sched_dep),
            "scheduled_arrival": ts_array(sched_arr),
            "actual_departure": ts_array(act_dep, mask=cancelled),
            "actual_arrival": ts_array(act_arr, mask=cancelled),
            "aircraft_id": fleet.aircraft_id.take(pa.array(fl_ac)),
            "status": take_str(STATUSES, status),
            "created_date": date_array(created_day),
            "route_id": pa.array(fl_route + 1),
            "flight_date": date_array(fl_day),
            "flight_month": month_strings(fl_day),
        },
    )
    return table, Flights(
        n=n_fl,
        id=fl_id,
        number=flight_number,
        route=fl_route,
        day=fl_day,
        sched_dep=sched_dep,
        sched_arr=sched_arr,
        duration=fl_dur,
        km=fl_km,
        aircraft=fl_ac,
        status=status,
        cancelled=cancelled,
        act_dep=act_dep,
        act_arr=act_arr,
        dep_delay_min=dep_delay_min,
        arr_delay_min=arr_delay_min,
    )


def _schedule(
    r: np.random.Generator, params: Params, routes: Routes, n_fl: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Route, day, hour and scheduled departure of every flight, sorted by departure then route."""
    # a route, then a day of the window on which it flies (service_days is Monday-first); a window
    # shorter than a week can miss all of a route's days: such routes get no flights
    day_idx = np.arange(params.days)
    weekday = (params.start_day + day_idx + 3) % 7  # 1970-01-01 was a Thursday
    allowed = routes.service[:, weekday]  # routes x days
    n_allowed = allowed.sum(axis=1)
    fl_route = weighted_choice(
        r, (1.0 + routes.origin_hub + routes.destination_hub) * (n_allowed > 0), n_fl
    )
    allowed_days = np.argsort(~allowed, axis=1, kind="stable")  # allowed day indices first
    k = (r.random(n_fl) * n_allowed[fl_route]).astype(np.int64)
    fl_day = params.start_day + allowed_days[fl_route, k]
    hour = weighted_choice(r, np.array(_HOUR_WEIGHTS), n_fl)
    sched_dep = fl_day * SECONDS_PER_DAY + hour * 3600 + r.integers(0, 12, n_fl) * 300
    order = np.lexsort((fl_route, sched_dep))
    return fl_route[order], fl_day[order], hour[order], sched_dep[order]


def flight_performance(
    airports: Airports, fleet: Fleet, routes: Routes, fl: Flights
) -> GeneratedTable:
    ap_code = list(airports.code)
    cancelled = fl.cancelled
    model = fleet.model[fl.aircraft]
    return make_table(
        "flight_performance",
        {
            "flight_id": pa.array(fl.id),
            "flight_number": fl.number,
            "flight_date": date_array(fl.day),
            "origin_airport": take_str(ap_code, routes.origin[fl.route]),
            "destination_airport": take_str(ap_code, routes.destination[fl.route]),
            "scheduled_departure": ts_array(fl.sched_dep),
            "actual_departure": ts_array(fl.act_dep, mask=cancelled),
            "scheduled_arrival": ts_array(fl.sched_arr),
            "actual_arrival": ts_array(fl.act_arr, mask=cancelled),
            "status": take_str(STATUSES, fl.status),
            "departure_delay_minutes": pa.array(fl.dep_delay_min.astype(np.int32), mask=cancelled),
            "arrival_delay_minutes": pa.array(fl.arr_delay_min.astype(np.int32), mask=cancelled),
            "aircraft_id": fleet.aircraft_id.take(pa.array(fl.aircraft)),
            "manufacturer": take_str(fleet.manufacturers, model),
            "model": take_str(fleet.model_names, model),
            "distance_km": pa.array(fl.km),
            "flight_duration_minutes": pa.array(fl.duration.astype(np.int32)),
        },
    )
