"""Workshop mode: the roster (one recipient per attendee, with a join link), the instructor's board and
grading from the attendees' progress reports; ``sharelab workshop add|board|grade``.

Modules: :mod:`.roster` (attendees, grants, join links), :mod:`.grading` (the grade table and its CSV),
:mod:`.cli` (the subcommands). The server's side (progress reports in, the board page out) is
:mod:`helpers.server.workshop`; the tables live in :mod:`helpers.catalog.workshop`.
"""

from __future__ import annotations

from helpers.workshop.grading import grade_frame, write_grades
from helpers.workshop.roster import Join, add_attendees, read_roster_csv

__all__ = ["Join", "add_attendees", "grade_frame", "read_roster_csv", "write_grades"]
