"""Reference data of the airline dataset: real airports, aircraft models, names and category weights."""

from __future__ import annotations

import numpy as np

# fmt: off
# code, name, city, state/region code, country, latitude, longitude, timezone, hub
AIRPORTS: tuple[tuple[str, str, str, str, str, float, float, str, bool], ...] = (
    ("ATL", "Hartsfield-Jackson Atlanta International", "Atlanta", "GA", "US", 33.6407, -84.4277, "America/New_York", True),
    ("LAX", "Los Angeles International", "Los Angeles", "CA", "US", 33.9416, -118.4085, "America/Los_Angeles", True),
    ("ORD", "O'Hare International", "Chicago", "IL", "US", 41.9742, -87.9073, "America/Chicago", True),
    ("DFW", "Dallas/Fort Worth International", "Dallas", "TX", "US", 32.8998, -97.0403, "America/Chicago", True),
    ("DEN", "Denver International", "Denver", "CO", "US", 39.8561, -104.6737, "America/Denver", True),
    ("JFK", "John F. Kennedy International", "New York", "NY", "US", 40.6413, -73.7781, "America/New_York", True),
    ("SFO", "San Francisco International", "San Francisco", "CA", "US", 37.6213, -122.3790, "America/Los_Angeles", True),
    ("SEA", "Seattle-Tacoma International", "Seattle", "WA", "US", 47.4502, -122.3088, "America/Los_Angeles", False),
    ("MIA", "Miami International", "Miami", "FL", "US", 25.7959, -80.2870, "America/New_York", True),
    ("BOS", "Boston Logan International", "Boston", "MA", "US", 42.3656, -71.0096, "America/New_York", False),
    ("LAS", "Harry Reid International", "Las Vegas", "NV", "US", 36.0840, -115.1537, "America/Los_Angeles", False),
    ("PHX", "Phoenix Sky Harbor International", "Phoenix", "AZ", "US", 33.4343, -112.0116, "America/Phoenix", False),
    ("IAH", "George Bush Intercontinental", "Houston", "TX", "US", 29.9902, -95.3368, "America/Chicago", False),
    ("MSP", "Minneapolis-Saint Paul International", "Minneapolis", "MN", "US", 44.8848, -93.2223, "America/Chicago", False),
    ("DTW", "Detroit Metropolitan Wayne County", "Detroit", "MI", "US", 42.2162, -83.3554, "America/Detroit", False),
    ("PHL", "Philadelphia International", "Philadelphia", "PA", "US", 39.8744, -75.2424, "America/New_York", False),
    ("CLT", "Charlotte Douglas International", "Charlotte", "NC", "US", 35.2144, -80.9473, "America/New_York", False),
    ("MCO", "Orlando International", "Orlando", "FL", "US", 28.4312, -81.3081, "America/New_York", False),
    ("HNL", "Daniel K. Inouye International", "Honolulu", "HI", "US", 21.3187, -157.9225, "Pacific/Honolulu", False),
    ("ANC", "Ted Stevens Anchorage International", "Anchorage", "AK", "US", 61.1743, -149.9963, "America/Anchorage", False),
    ("YYZ", "Toronto Pearson International", "Toronto", "ON", "CA", 43.6777, -79.6248, "America/Toronto", True),
    ("YVR", "Vancouver International", "Vancouver", "BC", "CA", 49.1967, -123.1815, "America/Vancouver", False),
    ("YUL", "Montreal-Trudeau International", "Montreal", "QC", "CA", 45.4706, -73.7408, "America/Toronto", False),
    ("MEX", "Mexico City International", "Mexico City", "CMX", "MX", 19.4361, -99.0719, "America/Mexico_City", False),
    ("CUN", "Cancun International", "Cancun", "ROO", "MX", 21.0365, -86.8771, "America/Cancun", False),
    ("LHR", "London Heathrow", "London", "ENG", "GB", 51.4700, -0.4543, "Europe/London", True),
    ("CDG", "Paris Charles de Gaulle", "Paris", "IDF", "FR", 49.0097, 2.5479, "Europe/Paris", True),
    ("FRA", "Frankfurt am Main", "Frankfurt", "HE", "DE", 50.0379, 8.5622, "Europe/Berlin", True),
    ("AMS", "Amsterdam Schiphol", "Amsterdam", "NH", "NL", 52.3105, 4.7683, "Europe/Amsterdam", False),
    ("MAD", "Adolfo Suarez Madrid-Barajas", "Madrid", "MD", "ES", 40.4983, -3.5676, "Europe/Madrid", False),
    ("FCO", "Rome Fiumicino", "Rome", "LAZ", "IT", 41.8003, 12.2389, "Europe/Rome", False),
    ("DUB", "Dublin", "Dublin", "L", "IE", 53.4264, -6.2499, "Europe/Dublin", False),
    ("ZRH", "Zurich", "Zurich", "ZH", "CH", 47.4582, 8.5555, "Europe/Zurich", False),
    ("NRT", "Narita International", "Tokyo", "12", "JP", 35.7720, 140.3929, "Asia/Tokyo", True),
    ("ICN", "Incheon International", "Seoul", "28", "KR", 37.4602, 126.4407, "Asia/Seoul", False),
    ("SIN", "Singapore Changi", "Singapore", "01", "SG", 1.3644, 103.9915, "Asia/Singapore", False),
    ("HKG", "Hong Kong International", "Hong Kong", "HK", "HK", 22.3080, 113.9185, "Asia/Hong_Kong", False),
    ("DXB", "Dubai International", "Dubai", "DU", "AE", 25.2532, 55.3657, "Asia/Dubai", True),
    ("SYD", "Sydney Kingsford Smith", "Sydney", "NSW", "AU", -33.9399, 151.1753, "Australia/Sydney", False),
    ("GRU", "Sao Paulo Guarulhos International", "Sao Paulo", "SP", "BR", -23.4356, -46.4731, "America/Sao_Paulo", False),
    ("BOG", "El Dorado International", "Bogota", "DC", "CO", 4.7016, -74.1469, "America/Bogota", False),
    ("JNB", "O. R. Tambo International", "Johannesburg", "GP", "ZA", -26.1367, 28.2411, "Africa/Johannesburg", False),
)
# fmt: on

# manufacturer, model, economy, business, first, range_km, cruise_kmh, fuel burn l/km, fleet weight
MODELS: tuple[tuple[str, str, int, int, int, int, int, float, float], ...] = (
    ("Airbus", "A320neo", 150, 12, 0, 6300, 833, 2.9, 0.25),
    ("Airbus", "A321neo", 182, 16, 0, 7400, 833, 3.3, 0.15),
    ("Airbus", "A350-900", 253, 40, 8, 15000, 903, 6.9, 0.08),
    ("Boeing", "737-800", 150, 16, 0, 5400, 842, 3.1, 0.25),
    ("Boeing", "787-9", 216, 48, 8, 14000, 903, 6.5, 0.10),
    ("Embraer", "E175", 64, 12, 0, 3700, 829, 2.0, 0.17),
)

FIRST_NAMES = tuple(
    """
    James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth William Barbara
    Richard Susan Joseph Jessica Thomas Sarah Carlos Karen Daniel Lisa Matthew Nancy Anthony
    Sandra Mark Ashley Wei Emily Hiroshi Yuki Amara Chidi Sofia Mateo Lucia Pierre Amelie
    Lukas Hannah Ahmed Fatima Priya Arjun Olga Ivan Ingrid Lars Aisha Noah Emma Liam Olivia
    Mei Jin Camila Diego Zara Kofi
    """.split()
)
LAST_NAMES = tuple(
    """
    Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez
    Lopez Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson
    White Harris Sanchez Clark Ramirez Lewis Robinson Walker Young Allen King Wright Scott
    Nguyen Hill Flores Green Tanaka Sato Kim Park Chen Wang Mueller Schmidt Dubois Rossi
    Silva Santos Okafor Mensah Patel Singh Ivanova Novak Larsen Cohen
    """.split()
)

STATUSES = ("ON_TIME", "DELAYED", "CANCELLED", "DIVERTED")
ON_TIME, DELAYED, CANCELLED, DIVERTED = range(4)
STATUS_WEIGHTS = np.array([0.75, 0.20, 0.04, 0.01])
CLASSES = ("ECONOMY", "BUSINESS", "FIRST")
# price ranges per cabin in cents (seed: economy 150-800, business 800-3000, first 2000-8000)
CLASS_PRICE = np.array([[15_000, 80_000], [80_000, 300_000], [200_000, 800_000]])
PAYMENT_METHODS = ("CREDIT_CARD", "DEBIT_CARD", "PAYPAL", "APPLE_PAY", "MILES")
PAYMENT_WEIGHTS = np.array([0.55, 0.2, 0.1, 0.1, 0.05])
BOOKING_STATUSES = ("COMPLETED", "NO_SHOW", "CANCELLED")
COMPLETED, NO_SHOW, BK_CANCELLED = range(3)
#: loyalty tiers by loyalty points (one point per currency unit of lifetime value)
TIERS = (("BRONZE", 0), ("SILVER", 3_000), ("GOLD", 10_000), ("PLATINUM", 25_000))
CHANNELS = ("WEBSITE", "MOBILE_APP", "TRAVEL_AGENT", "REFERRAL", "SOCIAL_MEDIA", "PARTNER")
ROLES = ("CAPTAIN", "FIRST_OFFICER", "PURSER", "FLIGHT_ATTENDANT")
#: ground operations in the order they start before departure: name, start (min before departure,
#: low/high), duration minutes (low/high)
GROUND_OPS: tuple[tuple[str, int, int, int, int], ...] = (
    ("CLEANING", 80, 96, 15, 26),
    ("CATERING", 60, 76, 10, 21),
    ("FUELING", 55, 71, 15, 31),
    ("BAGGAGE", 50, 61, 25, 41),
    ("BOARDING", 40, 51, 25, 36),
)
# type, weight, hours low/high, cost low/high (currency units), next due in days (0: none), description
MAINTENANCE_TYPES = (
    ("LINE", 0.45, 1, 8, 500, 5_000, 7, "Line check: walk-around, fluids, tyres and brakes"),
    ("A_CHECK", 0.22, 50, 150, 10_000, 50_000, 90, "A check: systems inspection and lubrication"),
    (
        "B_CHECK",
        0.10,
        150,
        400,
        40_000,
        120_000,
        180,
        "B check: detailed inspection of systems and panels",
    ),
    ("C_CHECK", 0.05, 2_000, 6_000, 300_000, 900_000, 730, "C check: heavy structural inspection"),
    ("D_CHECK", 0.02, 20_000, 40_000, 2_000_000, 5_000_000, 2190, "D check: full overhaul"),
    ("UNSCHEDULED", 0.16, 2, 48, 2_000, 80_000, 0, "Unscheduled repair after a defect report"),
)
