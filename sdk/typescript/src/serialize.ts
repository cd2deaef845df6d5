/** How the SDK writes what it sends: exact decimals, RFC 3339 instants, fresh ids. */

import type { DecimalInput, Instant } from "./types.js";

/**
 * An amount as the decimal text the API reads exactly. A string is sent as given (the API
 * validates it and names the field if it is not a decimal); a number as `String(n)`, the
 * shortest text that reads back as the same double; a bigint as its digits. No arithmetic.
 */
export function decimal(value: DecimalInput, field: string): string {
  if (typeof value === "string") return value;
  if (typeof value === "bigint") return value.toString();
  if (typeof value === "number") {
    if (!Number.isFinite(value)) throw new TypeError(`${field} must be a finite number, got ${value}`);
    return String(value);
  }
  throw new TypeError(`${field} must be a decimal string, a number or a bigint, not ${describeType(value)}`);
}

/** A Date as RFC 3339 in UTC (`2026-12-04T10:00:00.123Z`); a string as given (the API checks it). */
export function instant(value: Instant, field: string): string {
  if (typeof value === "string") return value;
  if (value instanceof Date) {
    if (Number.isNaN(value.getTime())) throw new TypeError(`${field} is an invalid Date`);
    return value.toISOString();
  }
  throw new TypeError(`${field} must be a Date or an RFC 3339 string, not ${describeType(value)}`);
}

export function newIdempotencyKey(): string {
  return `sdk-${hex()}`;
}

export function newEventId(): string {
  return `evt_${hex()}`;
}

function hex(): string {
  return globalThis.crypto.randomUUID().replaceAll("-", "");
}

/** A copy without the keys whose value is undefined. */
export function defined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}

function describeType(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  return typeof value;
}

const DECIMAL_TEXT = /^([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$/;

/**
 * A decimal string in its shortest plain form, exactly (string work, no float): "6.500000000000"
 * → "6.5", "0E-12" → "0", "1E+3" → "1000", "-0.0" → "0". The API writes some amounts with their
 * 12 stored decimal places (rating) and others in the shortest form (credits), so compare two
 * amounts as `normalizeDecimal(a) === normalizeDecimal(b)`. Throws a TypeError on anything
 * that is not a decimal number.
 */
export function normalizeDecimal(value: string): string {
  const match = DECIMAL_TEXT.exec(value.trim());
  if (!match || (match[2] === "" && (match[3] ?? "") === "")) throw new TypeError(`not a decimal number: ${JSON.stringify(value)}`);
  const [, sign = "", whole = "", fraction = "", exponent = "0"] = match;
  let digits = whole + fraction;
  let point = whole.length + Number(exponent); // the position of the decimal point in `digits`
  if (point < 0) {
    digits = "0".repeat(-point) + digits;
    point = 0;
  } else if (point > digits.length) {
    digits += "0".repeat(point - digits.length);
  }
  const intPart = digits.slice(0, point).replace(/^0+/, "") || "0";
  const fracPart = digits.slice(point).replace(/0+$/, "");
  const text = fracPart ? `${intPart}.${fracPart}` : intPart;
  return sign === "-" && text !== "0" ? `-${text}` : text;
}
