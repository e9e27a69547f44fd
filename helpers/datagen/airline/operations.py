"""The operations domain: maintenance logs, crew assignments, ground handling, daily operations metrics
and the derived fleet_status."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from helpers.datagen.airline.network import Fleet, Flights
from helpers.datagen.airline.reference import (
    CANCELLED,
    DELAYED,
    FIRST_NAMES,
    GROUND_OPS,
    LAST_NAMES,
    MAINTENANCE_TYPES,
    ROLES,
)
from helpers.datagen.airline.sales import BookingSummary
from helpers.datagen.airline.spec import (
    AirlineScale,
    make_table,
    rng,
)
from helpers.datagen.common import (
    GeneratedTable,
    Params,
    concat,
    date_array,
    group_reduce,
    id_strings,
    money,
    position_in_group,
    ratio_half_up,
    take_str,
    ts_array,
    weighted_choice,
)

# ---- maintenance logs --------------------------------------------------------------------------


@dataclass(frozen=True)
class Maintenance:
    aircraft: np.ndarray  # aircraft index
    sched_day: np.ndarray
    done_day: np.ndarray
    completed: np.ndarray
    cost: np.ndarray  # cents


def build_maintenance_logs(
    params: Params, scale: AirlineScale, fleet: Fleet
) -> tuple[GeneratedTable, Maintenance]:
    r = rng(params, "maintenance_logs")
    n_mt = scale.maintenance
    mtypes = list(zip(*MAINTENANCE_TYPES, strict=True))
    mt = weighted_choice(r, np.array(mtypes[1]), n_mt)
    mt_ac = r.integers(0, fleet.n, n_mt)
    sched_day = r.integers(params.start_day - 30, params.end_day + 31, n_mt)
    hours = np.round(r.uniform(np.array(mtypes[2])[mt], np.array(mtypes[3])[mt]), 1)
    done_day = sched_day + np.ceil(hours / 16.0).astype(np.int64) + r.integers(0, 3, n_mt)
    completed = (done_day <= params.end_day) & (r.random(n_mt) < 0.97)
    cost = np.round(r.uniform(np.array(mtypes[4])[mt], np.array(mtypes[5])[mt]) * 100).astype(
        np.int64
    )
    due_in = np.array(mtypes[6])[mt]
    order = np.lexsort((mt_ac, sched_day))
    mt, mt_ac, sched_day, hours, done_day, completed, cost, due_in = (
        a[order] for a in (mt, mt_ac, sched_day, hours, done_day, completed, cost, due_in)
    )
    mt_id = np.arange(1, n_mt + 1, dtype=np.int64)
    table = make_table(
        "maintenance_logs",
        {
            "maintenance_id": pa.array(mt_id),
            "aircraft_id": fleet.aircraft_id.take(pa.array(mt_ac)),
            "maintenance_type": take_str(mtypes[0], mt),
            "description": take_str(mtypes[7], mt),
            "scheduled_date": date_array(sched_day),
            "completed_date": date_array(done_day, mask=~completed),
            "technician_id": id_strings("T", r.integers(1, 400, n_mt), 4),
            "hours_required": pa.array(hours),
            "cost": money(cost),
            "next_due_date": date_array(done_day + due_in, mask=~completed | (due_in == 0)),
            "compliance_status": take_str(("PENDING", "COMPLIANT"), completed.astype(np.int64)),
        },
    )
    return table, Maintenance(mt_ac, sched_day, done_day, completed, cost)


# ---- crew assignments: one crew per operated flight --------------------------------------------


@dataclass(frozen=True)
class Crew:
    per_flight: np.ndarray  # crew members per flight


def build_crew_assignments(
    params: Params, fleet: Fleet, flights: Flights
) -> tuple[GeneratedTable, Crew]:
    r = rng(params, "crew_assignments")
    act_dep, act_arr = flights.act_dep, flights.act_arr
    op_fl = flights.operated_idx
    n_crew = 3 + np.maximum(1, fleet.seats[flights.aircraft[op_fl]] // 80)
    cr_fl = np.repeat(op_fl, n_crew)
    pos = position_in_group(n_crew)
    role = np.minimum(pos, 3)
    pool = np.array([6, 6, 6, 12]) * fleet.n  # crew members per role
    pool_start = np.concatenate([[0], np.cumsum(pool)[:-1]])
    member = pool_start[role] + (r.random(len(cr_fl)) * pool[role]).astype(np.int64)
    names = concat(
        take_str(FIRST_NAMES, r.integers(0, len(FIRST_NAMES), int(pool.sum()))),
        " ",
        take_str(LAST_NAMES, r.integers(0, len(LAST_NAMES), int(pool.sum()))),
    )
    duty_start = act_dep[cr_fl] - 3600
    duty_end = act_arr[cr_fl] + 1800
    block_h = np.round((act_arr[cr_fl] - act_dep[cr_fl]) / 3600.0, 2)
    duty_h = (duty_end - duty_start) / 3600.0
    table = make_table(
        "crew_assignments",
        {
            "assignment_id": pa.array(np.arange(1, len(cr_fl) + 1, dtype=np.int64)),
            "crew_member_id": id_strings("CR", member + 1, 6),
            "crew_member_name": names.take(pa.array(member)),
            "role": take_str(ROLES, role),
            "flight_id": pa.array(cr_fl + 1),
            "assignment_date": date_array(flights.day[cr_fl]),
            "duty_start_time": ts_array(duty_start),
            "duty_end_time": ts_array(duty_end),
            "flight_hours": pa.array(block_h),
            "rest_hours": pa.array(np.round(np.maximum(10.0, duty_h), 2)),
            "overtime_hours": pa.array(np.round(np.maximum(0.0, duty_h - 10.0), 2)),
        },
    )
    return table, Crew(np.bincount(cr_fl, minlength=flights.n))


# ---- ground handling: five operations per operated flight --------------------------------------


@dataclass(frozen=True)
class Ground:
    flight: np.ndarray  # flight index of each operation
    kind: np.ndarray  # index into GROUND_OPS
    issue: np.ndarray
    fuel_dl: np.ndarray  # decilitres per operated flight


def build_ground_handling(
    params: Params, fleet: Fleet, flights: Flights, summary: BookingSummary, crew: Crew
) -> tuple[GeneratedTable, Ground]:
    r = rng(params, "ground_handling")
    op_fl = flights.operated_idx
    fl_ac = flights.aircraft
    n_ops = len(GROUND_OPS)
    gops = list(zip(*GROUND_OPS, strict=True))
    n_op_fl = len(op_fl)
    start_before = r.integers(np.array(gops[1]), np.array(gops[2]), (n_op_fl, n_ops))  # minutes
    duration = r.integers(np.array(gops[3]), np.array(gops[4]), (n_op_fl, n_ops))
    op_start = flights.act_dep[op_fl][:, None] - start_before * 60
    op_end = op_start + duration * 60
    turnaround = start_before.max(axis=1)  # first operation start -> departure, minutes
    gate = concat(
        take_str("ABCDEF", r.integers(0, 6, n_op_fl)),
        pa.array(r.integers(1, 41, n_op_fl)).cast(pa.string()),
    )
    pax = summary.pax_per_flight[op_fl]
    bags = r.binomial(pax, 0.85) + r.binomial(pax, 0.25)
    fuel_dl = np.round((flights.km[op_fl] * fleet.burn[fl_ac[op_fl]] * 1.05 + 1_500.0) * 10).astype(
        np.int64
    )
    meals = pax + crew.per_flight[op_fl]
    cleaned = r.random(n_op_fl) >= 0.005
    kind = np.tile(np.arange(n_ops), n_op_fl)
    gh_fl = np.repeat(op_fl, n_ops)
    issue = r.random(len(kind)) < np.where(kind == 3, 0.02, 0.002)
    is_kind = {name: kind == i for i, name in enumerate(gops[0])}
    per_flight = np.repeat(np.arange(n_op_fl), n_ops)
    table = make_table(
        "ground_handling",
        {
            "operation_id": pa.array(np.arange(1, len(kind) + 1, dtype=np.int64)),
            "flight_id": pa.array(gh_fl + 1),
            "operation_type": take_str(gops[0], kind),
            "start_time": ts_array(op_start.ravel()),
            "end_time": ts_array(op_end.ravel()),
            "gate_number": gate.take(pa.array(per_flight)),
            "baggage_loaded": pa.array(bags[per_flight].astype(np.int32), mask=~is_kind["BAGGAGE"]),
            "fuel_loaded_liters": pa.array(fuel_dl[per_flight] / 10.0, mask=~is_kind["FUELING"]),
            "catering_loaded": pa.array(
                meals[per_flight].astype(np.int32), mask=~is_kind["CATERING"]
            ),
            "cleaning_completed": pa.array(cleaned[per_flight], mask=~is_kind["CLEANING"]),
            "turnaround_minutes": pa.array(turnaround[per_flight].astype(np.int32)),
            "issue_reported": pa.array(issue),
        },
    )
    return table, Ground(gh_fl, kind, issue, fuel_dl)


def fleet_status(fleet: Fleet, flights: Flights, mt: Maintenance) -> GeneratedTable:
    n_ac = fleet.n
    mt_ac, completed = mt.aircraft, mt.completed
    op_fl = flights.operated_idx
    fl_ac = flights.aircraft
    events = np.bincount(mt_ac, minlength=n_ac)
    done_events = np.bincount(mt_ac[completed], minlength=n_ac)
    pending = ~completed
    last_done = group_reduce(
        np.maximum, mt_ac[completed], mt.done_day[completed], n_ac, np.iinfo(np.int64).min
    )
    next_due = group_reduce(
        np.minimum, mt_ac[pending], mt.sched_day[pending], n_ac, np.iinfo(np.int64).max
    )
    ac_flights = np.bincount(fl_ac[op_fl], minlength=n_ac)
    ac_hours = (
        np.bincount(
            fl_ac[op_fl], weights=(flights.act_arr - flights.act_dep)[op_fl], minlength=n_ac
        )
        / 3600.0
    )
    return make_table(
        "fleet_status",
        {
            "aircraft_id": fleet.aircraft_id,
            "manufacturer": take_str(fleet.manufacturers, fleet.model),
            "model": take_str(fleet.model_names, fleet.model),
            "maintenance_events": pa.array(events.astype(np.int64)),
            "completed_events": pa.array(done_events.astype(np.int64)),
            "pending_events": pa.array((events - done_events).astype(np.int64)),
            "last_maintenance": date_array(last_done, mask=done_events == 0),
            "next_maintenance": date_array(next_due, mask=(events - done_events) == 0),
            "total_maintenance_cost": money(
                np.bincount(mt_ac, weights=mt.cost, minlength=n_ac).astype(np.int64)
            ),
            "compliance_status": take_str(
                ("COMPLIANT", "PENDING"), ((events - done_events) > 0).astype(np.int64)
            ),
            "flights_operated": pa.array(ac_flights.astype(np.int64)),
            "flight_hours": pa.array(np.round(ac_hours, 2)),
        },
    )


def ops_metrics(
    params: Params,
    fl_day: np.ndarray,
    status: np.ndarray,
    dep_delay: np.ndarray,
    arr_delay: np.ndarray,
    seats: np.ndarray,
    pax: np.ndarray,
    gh_fl: np.ndarray,
    kind: np.ndarray,
    issue: np.ndarray,
    op_fl: np.ndarray,
    fuel_dl: np.ndarray,
) -> dict[str, pa.Array]:
    """Daily operations metrics, by ``flight_date`` over every day of the window.

    * ``total_flights``: flights scheduled that day; ``cancelled_flights`` / ``delayed_flights``: by
      status; ``on_time_departures`` / ``on_time_arrivals``: operated flights less than 15 minutes late
      (departure / arrival);
    * ``average_delay_minutes``: mean of ``max(0, departure delay)`` over operated flights (2 places);
    * ``fuel_consumption_liters``: sum of the ``FUELING`` operations' ``fuel_loaded_liters``;
    * ``passenger_load_factor``: passengers flown (``COMPLETED`` bookings) / seats of operated flights
      (4 places);
    * ``baggage_issues`` / ``safety_incidents``: ground operations with ``issue_reported`` that are /
      are not ``BAGGAGE``.
    """
    n = params.days
    day = fl_day - params.start_day
    operated = status != CANCELLED
    total = np.bincount(day, minlength=n)
    op_count = np.bincount(day[operated], minlength=n)
    delay_sum = np.bincount(day[operated], weights=np.maximum(dep_delay[operated], 0), minlength=n)
    seat_sum = np.bincount(day[operated], weights=seats[operated], minlength=n)
    pax_sum = np.bincount(day[operated], weights=pax[operated], minlength=n)
    fuel = np.zeros(n, dtype=np.int64)
    np.add.at(fuel, day[op_fl], fuel_dl)
    gh_day = day[gh_fl]
    return {
        "date": date_array(np.arange(params.start_day, params.end_day + 1)),
        "total_flights": pa.array(total.astype(np.int64)),
        "on_time_departures": pa.array(
            np.bincount(day[operated & (dep_delay < 15)], minlength=n).astype(np.int64)
        ),
        "on_time_arrivals": pa.array(
            np.bincount(day[operated & (arr_delay < 15)], minlength=n).astype(np.int64)
        ),
        "cancelled_flights": pa.array(
            np.bincount(day[status == CANCELLED], minlength=n).astype(np.int64)
        ),
        "delayed_flights": pa.array(
            np.bincount(day[status == DELAYED], minlength=n).astype(np.int64)
        ),
        "average_delay_minutes": pa.array(
            ratio_half_up(delay_sum, op_count, 2), mask=op_count == 0
        ),
        "fuel_consumption_liters": pa.array(fuel / 10.0),
        "passenger_load_factor": pa.array(ratio_half_up(pax_sum, seat_sum, 4), mask=op_count == 0),
        "baggage_issues": pa.array(
            np.bincount(gh_day[issue & (kind == 3)], minlength=n).astype(np.int64)
        ),
        "safety_incidents": pa.array(
            np.bincount(gh_day[issue & (kind != 3)], minlength=n).astype(np.int64)
        ),
    }
