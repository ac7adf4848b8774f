//! Arguments of the date filters and functions: time zones, locales and
//! the input date (epoch seconds, ISO text or text in `existingFormat`).

use jiff::civil::{Date, DateTime};
use jiff::tz::{Offset, TimeZone};
use jiff::{Timestamp, Zoned};

use super::format::Locale;
use super::parse::parse_with;
use crate::builtins::Args;
use crate::value::Value;

pub(super) fn zone(a: &Args, i: usize) -> Result<TimeZone, String> {
    match a.opt_str(i) {
        None => Ok(TimeZone::UTC),
        Some(name) => time_zone(&name),
    }
}

pub(super) fn time_zone(name: &str) -> Result<TimeZone, String> {
    if name == "UTC" || name == "Z" || name == "GMT" {
        return Ok(TimeZone::get("UTC").unwrap_or(TimeZone::UTC));
    }
    if let Some(offset) = parse_offset(name) {
        return Ok(TimeZone::fixed(offset));
    }
    TimeZone::get(name).map_err(|_| format!("Unknown time-zone ID: {name}"))
}

pub(super) fn locale(a: &Args, i: usize) -> Result<Locale, String> {
    match a.opt_str(i).as_deref() {
        None => Ok(Locale::En),
        Some(l) if l.starts_with("en") => Ok(Locale::En),
        Some(l) if l.starts_with("fr") => Ok(Locale::Fr),
        Some(other) => Err(format!(
            "locale `{other}` is not supported yet (en and fr are)"
        )),
    }
}

/// The input as a zoned date-time: epoch seconds, text read with
/// `existingFormat` (argument `fmt_i`), or ISO text; local inputs are
/// placed in the time zone (argument `tz_i`).
pub(super) fn input(v: &Value, a: &Args, fmt_i: usize, tz_i: usize) -> Result<Zoned, String> {
    let tz = zone(a, tz_i)?;
    if let Some(secs) = v.as_i64() {
        let ts = Timestamp::from_second(secs).map_err(|e| e.to_string())?;
        return Ok(ts.to_zoned(tz));
    }
    let Value::String(text) = v else {
        return Err(format!("cannot read a date from a {}", v.type_name()));
    };
    let text = text.trim();
    if let Some(format) = a.opt_str(fmt_i) {
        return parse_with(text, &format, &tz);
    }
    if let Some(z) = parse_iso_zoned(text) {
        return Ok(z);
    }
    if let Ok(dt) = text.parse::<DateTime>() {
        return dt.to_zoned(tz).map_err(|e| e.to_string());
    }
    if let Ok(d) = text.parse::<Date>() {
        return d.to_zoned(tz).map_err(|e| e.to_string());
    }
    Err(format!("could not parse date `{text}`"))
}

/// `ZonedDateTime.parse`: a date-time with an offset (or `Z`) and an
/// optional `[Region/Zone]`.
pub(super) fn parse_iso_zoned(text: &str) -> Option<Zoned> {
    let (body, region) = match text.strip_suffix(']').and_then(|t| t.split_once('[')) {
        Some((body, region)) => (body, Some(region)),
        None => (text, None),
    };
    let t = body.find('T')?;
    let tail = &body[t..];
    let offset_at = tail.rfind(['Z', 'z', '+', '-']).map(|i| t + i)?;
    let dt: DateTime = body[..offset_at].parse().ok()?;
    let offset = parse_offset(&body[offset_at..])?;
    let fixed = TimeZone::fixed(offset);
    let zoned = dt.to_zoned(fixed).ok()?;
    match region {
        Some(r) => time_zone(r).ok().map(|tz| zoned.with_time_zone(tz)),
        None => Some(zoned),
    }
}

pub(super) fn parse_offset(s: &str) -> Option<Offset> {
    if s == "Z" || s == "z" {
        return Some(Offset::UTC);
    }
    let sign = match s.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let digits: String = s[1..].chars().filter(char::is_ascii_digit).collect();
    if digits.len() != s[1..].chars().filter(|c| *c != ':').count() {
        return None;
    }
    let (h, m, sec) = match digits.len() {
        1 | 2 => (digits.parse::<i32>().ok()?, 0, 0),
        4 => (digits[..2].parse().ok()?, digits[2..].parse().ok()?, 0),
        6 => (
            digits[..2].parse().ok()?,
            digits[2..4].parse().ok()?,
            digits[4..].parse().ok()?,
        ),
        _ => return None,
    };
    Offset::from_seconds(sign * (h * 3600 + m * 60 + sec)).ok()
}
