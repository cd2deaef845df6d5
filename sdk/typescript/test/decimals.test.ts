/** Amounts stay exact: what the SDK sends for numbers, and normalizeDecimal (string work only). */

import assert from "node:assert/strict";
import { test } from "node:test";

import { normalizeDecimal } from "@openmonetize/sdk";

test("normalizeDecimal gives the shortest plain form, exactly", () => {
  const cases: [string, string][] = [
    ["6.500000000000", "6.5"],
    ["0E-12", "0"],
    ["-0.000", "0"],
    ["1E+3", "1000"],
    ["1.5e-3", "0.0015"],
    ["000123.4500", "123.45"],
    ["-2.50", "-2.5"],
    [".5", "0.5"],
    ["5.", "5"],
    ["100.000000000001", "100.000000000001"],
    ["12345678901234567890.123456789012", "12345678901234567890.123456789012"],
  ];
  for (const [given, expected] of cases) assert.equal(normalizeDecimal(given), expected, given);
});

test("normalizeDecimal refuses what is not a decimal", () => {
  for (const bad of ["", ".", "abc", "1.2.3", "NaN", "Infinity", "1_000", "0x10"]) {
    assert.throws(() => normalizeDecimal(bad), TypeError, bad);
  }
});
