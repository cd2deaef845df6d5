"""The usage CSV's cells (api/dashboard/pages/usage.py): no formula reaches a spreadsheet, numbers stay numbers."""

from __future__ import annotations

import pytest

from api.dashboard.pages.usage import csv_cell


@pytest.mark.parametrize("value", ['=HYPERLINK("http://x","y")', "+chat", "-cmd|' /C calc'!A0", "@SUM(A1)", "\t=1",
                                   "\r=1", "-", "+", "-1.5x", "=1"])
def test_a_cell_a_spreadsheet_would_run_is_quoted(value):
    assert csv_cell(value) == "'" + value


@pytest.mark.parametrize("value", ["-1.5", "+2", "-0.000001", "-1e-7", "12", "1.5", ".5", "-.5"])
def test_numbers_stay_numbers(value):
    assert csv_cell(value) == value


def test_other_cells_are_as_they_were():
    assert csv_cell(None) == "" and csv_cell(3) == 3 and csv_cell("ana") == "ana" and csv_cell("a=b") == "a=b"
