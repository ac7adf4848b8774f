//! Dates as Kestra's `AbstractDate` handles them: inputs are epoch seconds
//! or ISO strings (zoned, then local date-time, then local date), or text
//! read with `existingFormat`; outputs are formatted with Java
//! `DateTimeFormatter` patterns or Kestra's presets. The default time zone
//! is UTC (Kestra uses the server's zone).

use jiff::civil::{Date, DateTime, Weekday};
use jiff::tz::{Offset, TimeZone};
use jiff::{Span, Timestamp, Zoned};

use super::{Args, Def, FilterFn, FunctionFn, def};
use crate::eval::Renderer;
use crate::value::Value;

pub(crate) const FILTERS: &[Def<FilterFn>] = &[
    def(
        "date",
        &["format", "existingFormat", "timeZone", "locale"],
        date,
    ),
    def(
        "dateAdd",
        &[
            "amount",
            "unit",
            "format",
            "timeZone",
            "existingFormat",
            "locale",
        ],
        date_add,
    ),
    def("timestamp", &["timeZone", "existingFormat"], |_, v, a| {
        Ok(Value::Long(input(&v, a, 1, 0)?.timestamp().as_second()))
    }),
    def(
        "timestampMilli",
        &["timeZone", "existingFormat"],
        |_, v, a| {
            Ok(Value::Long(
                input(&v, a, 1, 0)?.timestamp().as_millisecond(),
            ))
        },
    ),
    def(
        "timestampMicro",
        &["timeZone", "existingFormat"],
        |_, v, a| {
            Ok(Value::from(
                input(&v, a, 1, 0)?.timestamp().as_microsecond().to_string(),
            ))
        },
    ),
    def(
        "timestampNano",
        &["timeZone", "existingFormat"],
        |_, v, a| {
            Ok(Value::from(
                input(&v, a, 1, 0)?.timestamp().as_nanosecond().to_string(),
            ))
        },
    ),
];

pub(crate) const FUNCTIONS: &[Def<FunctionFn>] = &[
    def("now", &["format", "timeZone", "locale"], now),
    def("isWeekend", &["date"], |_, a| {
        let d = calendar_date(a)?;
        Ok(Value::Bool(matches!(
            d.weekday(),
            Weekday::Saturday | Weekday::Sunday
        )))
    }),
    def("dayOfWeek", &["date"], |_, a| {
        Ok(Value::from(
            weekday_name(calendar_date(a)?.weekday()).to_uppercase(),
        ))
    }),
    def("dayOfMonth", &["date"], |_, a| {
        Ok(Value::Int(i32::from(calendar_date(a)?.day())))
    }),
    def("monthOfYear", &["date"], |_, a| {
        Ok(Value::Int(i32::from(calendar_date(a)?.month())))
    }),
    def("hourOfDay", &["date"], |_, a| {
        let text = a.str(0, "date")?;
        let z = parse_iso_zoned(&text)
            .ok_or_else(|| format!("could not parse `{text}` as a zoned date-time"))?;
        Ok(Value::Int(i32::from(z.hour())))
    }),
    def("isDateBefore", &["date", "reference"], |_, a| {
        Ok(Value::Bool(
            instant(a, 0, "date")? < instant(a, 1, "reference")?,
        ))
    }),
    def("isDateAfter", &["date", "reference"], |_, a| {
        Ok(Value::Bool(
            instant(a, 0, "date")? > instant(a, 1, "reference")?,
        ))
    }),
    def(
        "isDayWeekInMonth",
        &["date", "dayOfWeek", "position"],
        is_day_week_in_month,
    ),
    def(
        "isLastWorkingDay",
        &["date", "workingDays"],
        is_last_working_day,
    ),
    def("isDateBetween", &["date", "after", "before"], |_, a| {
        let get = |i: usize, name: &str| -> Result<Timestamp, String> {
            let text = a.str(i, name)?;
            parse_iso_zoned(&text)
                .map(|z| z.timestamp())
                .ok_or_else(|| format!("could not parse `{text}` as a zoned date-time"))
        };
        let (d, after, before) = (get(0, "date")?, get(1, "after")?, get(2, "before")?);
        Ok(Value::Bool(d >= after && d <= before))
    }),
];

fn zone(a: &Args, i: usize) -> Result<TimeZone, String> {
    match a.opt_str(i) {
        None => Ok(TimeZone::UTC),
        Some(name) => time_zone(&name),
    }
}

fn time_zone(name: &str) -> Result<TimeZone, String> {
    if name == "UTC" || name == "Z" || name == "GMT" {
        return Ok(TimeZone::get("UTC").unwrap_or(TimeZone::UTC));
    }
    if let Some(offset) = parse_offset(name) {
        return Ok(TimeZone::fixed(offset));
    }
    TimeZone::get(name).map_err(|_| format!("Unknown time-zone ID: {name}"))
}

fn locale(a: &Args, i: usize) -> Result<Locale, String> {
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
fn input(v: &Value, a: &Args, fmt_i: usize, tz_i: usize) -> Result<Zoned, String> {
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
fn parse_iso_zoned(text: &str) -> Option<Zoned> {
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

fn parse_offset(s: &str) -> Option<Offset> {
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

fn date(_: &mut Renderer<'_>, v: Value, a: &Args) -> Result<Value, String> {
    if v.is_null() {
        return Ok(Value::Null);
    }
    let z = input(&v, a, 1, 2)?;
    let tz = zone(a, 2)?;
    let format = a.opt_str(0).unwrap_or_else(|| "iso".into());
    format_zoned(&z.with_time_zone(tz), &format, locale(a, 3)?).map(Value::from)
}

fn date_add(_: &mut Renderer<'_>, v: Value, a: &Args) -> Result<Value, String> {
    if v.is_null() {
        return Ok(Value::Null);
    }
    let amount = a.int(0, "amount")?;
    let unit = a.str(1, "unit")?;
    let z = input(&v, a, 4, 3)?;
    let span = chrono_unit(amount, &unit)?;
    let added = z.checked_add(span).map_err(|e| e.to_string())?;
    let tz = zone(a, 3)?;
    let format = a.opt_str(2).unwrap_or_else(|| "iso".into());
    format_zoned(&added.with_time_zone(tz), &format, locale(a, 5)?).map(Value::from)
}

/// A `java.time.temporal.ChronoUnit` amount.
fn chrono_unit(n: i64, unit: &str) -> Result<Span, String> {
    let span = Span::new();
    let r = match unit {
        "NANOS" => span.try_nanoseconds(n),
        "MICROS" => span.try_microseconds(n),
        "MILLIS" => span.try_milliseconds(n),
        "SECONDS" => span.try_seconds(n),
        "MINUTES" => span.try_minutes(n),
        "HOURS" => span.try_hours(n),
        "HALF_DAYS" => span.try_hours(n.saturating_mul(12)),
        "DAYS" => span.try_days(n),
        "WEEKS" => span.try_weeks(n),
        "MONTHS" => span.try_months(n),
        "YEARS" => span.try_years(n),
        "DECADES" => span.try_years(n.saturating_mul(10)),
        "CENTURIES" => span.try_years(n.saturating_mul(100)),
        "MILLENNIA" => span.try_years(n.saturating_mul(1000)),
        other => {
            return Err(format!(
                "No enum constant java.time.temporal.ChronoUnit.{other} (units are NANOS, MICROS, MILLIS, SECONDS, MINUTES, HOURS, HALF_DAYS, DAYS, WEEKS, MONTHS, YEARS, DECADES, CENTURIES, MILLENNIA)"
            ));
        }
    };
    r.map_err(|e| e.to_string())
}

fn now(_: &mut Renderer<'_>, a: &Args) -> Result<Value, String> {
    let tz = zone(a, 1)?;
    let format = a.opt_str(0).unwrap_or_else(|| "iso".into());
    format_zoned(&Timestamp::now().to_zoned(tz), &format, locale(a, 2)?).map(Value::from)
}

/// The calendar date of a zoned date-time or a local date, as written.
fn calendar_date(a: &Args) -> Result<Date, String> {
    let text = a.str(0, "date")?;
    if let Some(z) = parse_iso_zoned(&text) {
        return Ok(z.date());
    }
    if let Ok(dt) = text.parse::<DateTime>() {
        return Ok(dt.date());
    }
    text.parse::<Date>()
        .map_err(|_| format!("could not parse `{text}` as a date"))
}

/// Kestra's `DateUtils.parseInstant`: any ISO date or date-time; without
/// an offset it is UTC.
fn instant(a: &Args, i: usize, name: &str) -> Result<Timestamp, String> {
    let text = a.str(i, name)?;
    if let Some(z) = parse_iso_zoned(&text) {
        return Ok(z.timestamp());
    }
    let local = text.parse::<DateTime>().or_else(|_| {
        text.parse::<Date>()
            .map(|d| d.to_datetime(jiff::civil::Time::midnight()))
    });
    local
        .and_then(|dt| dt.to_zoned(TimeZone::UTC))
        .map(|z| z.timestamp())
        .map_err(|_| format!("could not parse the `{name}` argument `{text}` as a date"))
}

fn weekday_from_name(name: &str) -> Result<Weekday, String> {
    Ok(match name.trim().to_uppercase().as_str() {
        "MONDAY" => Weekday::Monday,
        "TUESDAY" => Weekday::Tuesday,
        "WEDNESDAY" => Weekday::Wednesday,
        "THURSDAY" => Weekday::Thursday,
        "FRIDAY" => Weekday::Friday,
        "SATURDAY" => Weekday::Saturday,
        "SUNDAY" => Weekday::Sunday,
        other => return Err(format!("unknown day of week `{other}`")),
    })
}

fn is_day_week_in_month(_: &mut Renderer<'_>, a: &Args) -> Result<Value, String> {
    let d = calendar_date(a)?;
    let wd = weekday_from_name(&a.str(1, "dayOfWeek")?)?;
    if d.weekday() != wd {
        return Ok(Value::Bool(false));
    }
    let nth = (d.day() - 1) / 7 + 1;
    let last = d.day() + 7 > d.days_in_month();
    Ok(Value::Bool(
        match a.str(2, "position")?.to_uppercase().as_str() {
            "FIRST" => nth == 1,
            "SECOND" => nth == 2,
            "THIRD" => nth == 3,
            "FOURTH" => nth == 4,
            "LAST" => last,
            other => {
                return Err(format!(
                    "unknown position `{other}` (FIRST, SECOND, THIRD, FOURTH, LAST)"
                ));
            }
        },
    ))
}

fn is_last_working_day(_: &mut Renderer<'_>, a: &Args) -> Result<Value, String> {
    let d = calendar_date(a)?;
    let days = a
        .opt_str(1)
        .unwrap_or_else(|| "MONDAY,TUESDAY,WEDNESDAY,THURSDAY,FRIDAY".into());
    let working: Vec<Weekday> = days
        .split(',')
        .map(weekday_from_name)
        .collect::<Result<_, _>>()?;
    if !working.contains(&d.weekday()) {
        return Ok(Value::Bool(false));
    }
    let mut next = d;
    loop {
        next = next.tomorrow().map_err(|e| e.to_string())?;
        if next.month() != d.month() {
            return Ok(Value::Bool(true));
        }
        if working.contains(&next.weekday()) {
            return Ok(Value::Bool(false));
        }
    }
}

// ---- Java DateTimeFormatter patterns -------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Locale {
    En,
    Fr,
}

const MONTHS_EN: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const MONTHS_FR: [&str; 12] = [
    "janvier",
    "février",
    "mars",
    "avril",
    "mai",
    "juin",
    "juillet",
    "août",
    "septembre",
    "octobre",
    "novembre",
    "décembre",
];
const MONTHS_FR_SHORT: [&str; 12] = [
    "janv.", "févr.", "mars", "avr.", "mai", "juin", "juil.", "août", "sept.", "oct.", "nov.",
    "déc.",
];
const DAYS_EN: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];
const DAYS_FR: [&str; 7] = [
    "lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche",
];

fn weekday_name(w: Weekday) -> &'static str {
    DAYS_EN[usize::from(w.to_monday_zero_offset() as u8)]
}

fn month_name(m: i8, count: usize, locale: Locale) -> String {
    let i = (m - 1) as usize;
    match (locale, count) {
        (Locale::En, 3) => MONTHS_EN[i][..3].to_string(),
        (Locale::En, 4) => MONTHS_EN[i].to_string(),
        (Locale::En, _) => MONTHS_EN[i][..1].to_string(),
        (Locale::Fr, 3) => MONTHS_FR_SHORT[i].to_string(),
        (Locale::Fr, 4) => MONTHS_FR[i].to_string(),
        (Locale::Fr, _) => MONTHS_FR[i][..1].to_uppercase(),
    }
}

fn day_name(w: Weekday, count: usize, locale: Locale) -> String {
    let i = w.to_monday_zero_offset() as usize;
    match (locale, count) {
        (Locale::En, 4) => DAYS_EN[i].to_string(),
        (Locale::En, 5) => DAYS_EN[i][..1].to_string(),
        (Locale::En, _) => DAYS_EN[i][..3].to_string(),
        (Locale::Fr, 4) => DAYS_FR[i].to_string(),
        (Locale::Fr, 5) => DAYS_FR[i][..1].to_uppercase(),
        (Locale::Fr, _) => format!("{}.", &DAYS_FR[i][..3]),
    }
}

/// A piece of a pattern: a letter repeated `count` times, literal text,
/// or an optional section.
#[derive(Debug, Clone)]
enum Piece {
    Field(char, usize),
    Lit(String),
    Optional(Vec<Piece>),
}

fn tokenize(pattern: &str) -> Result<Vec<Piece>, String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    let (pieces, _) = tokenize_until(&chars, &mut i, 0)?;
    Ok(pieces)
}

/// Optional sections a pattern may nest.
const MAX_OPTIONAL_DEPTH: usize = 8;

fn tokenize_until(
    chars: &[char],
    i: &mut usize,
    depth: usize,
) -> Result<(Vec<Piece>, bool), String> {
    if depth > MAX_OPTIONAL_DEPTH {
        return Err("optional sections `[...]` nest too deeply in the date pattern".into());
    }
    let nested = depth > 0;
    let mut out = Vec::new();
    while *i < chars.len() {
        let c = chars[*i];
        match c {
            '\'' => {
                *i += 1;
                let mut lit = String::new();
                loop {
                    match chars.get(*i) {
                        None => return Err("unclosed quote in date pattern".into()),
                        Some('\'') if chars.get(*i + 1) == Some(&'\'') => {
                            lit.push('\'');
                            *i += 2;
                        }
                        Some('\'') => {
                            *i += 1;
                            break;
                        }
                        Some(ch) => {
                            lit.push(*ch);
                            *i += 1;
                        }
                    }
                }
                if lit.is_empty() {
                    lit.push('\'');
                }
                out.push(Piece::Lit(lit));
            }
            '[' => {
                *i += 1;
                let (inner, _) = tokenize_until(chars, i, depth + 1)?;
                out.push(Piece::Optional(inner));
            }
            ']' if nested => {
                *i += 1;
                return Ok((out, true));
            }
            c if c.is_ascii_alphabetic() => {
                let mut n = 0;
                while chars.get(*i) == Some(&c) {
                    n += 1;
                    *i += 1;
                }
                if !"GuyDMLdQqYwWEecFaBhKkHmsSAnNVvzOXxZp".contains(c) {
                    return Err(format!("Unknown pattern letter: {c}"));
                }
                out.push(Piece::Field(c, n));
            }
            other => {
                out.push(Piece::Lit(other.to_string()));
                *i += 1;
            }
        }
    }
    Ok((out, false))
}

fn pad(n: i64, width: usize) -> String {
    if n < 0 {
        format!("-{:0width$}", -n, width = width)
    } else {
        format!("{n:0width$}")
    }
}

fn offset_text(secs: i32, with_colon: bool, zero_z: bool, with_minutes: bool) -> String {
    if secs == 0 && zero_z {
        return "Z".into();
    }
    let sign = if secs < 0 { '-' } else { '+' };
    let a = secs.abs();
    let (h, m, s) = (a / 3600, a / 60 % 60, a % 60);
    let mut out = format!("{sign}{h:02}");
    if with_minutes || m != 0 || s != 0 {
        if with_colon {
            out.push(':');
        }
        out.push_str(&format!("{m:02}"));
    }
    if s != 0 {
        if with_colon {
            out.push(':');
        }
        out.push_str(&format!("{s:02}"));
    }
    out
}

fn gmt_offset(secs: i32, long: bool) -> String {
    if secs == 0 {
        return "GMT".into();
    }
    let sign = if secs < 0 { '-' } else { '+' };
    let a = secs.abs();
    let (h, m) = (a / 3600, a / 60 % 60);
    if long {
        format!("GMT{sign}{h:02}:{m:02}")
    } else if m == 0 {
        format!("GMT{sign}{h}")
    } else {
        format!("GMT{sign}{h}:{m:02}")
    }
}

fn zone_abbreviation(z: &Zoned) -> String {
    let info = z.time_zone().to_offset_info(z.timestamp());
    let abbr = info.abbreviation();
    if abbr.starts_with(['+', '-']) {
        gmt_offset(z.offset().seconds(), false)
    } else {
        abbr.to_string()
    }
}

fn field(z: &Zoned, c: char, n: usize, locale: Locale) -> Result<String, String> {
    date_field(z, c, n, locale)
        .or_else(|| time_field(z, c, n))
        .or_else(|| zone_field(z, c, n))
        .ok_or_else(|| format!("Unsupported pattern letter: {c}"))
}

fn date_field(z: &Zoned, c: char, n: usize, locale: Locale) -> Option<String> {
    let year = i64::from(z.year());
    Some(match c {
        'G' => {
            if n == 4 {
                "Anno Domini".into()
            } else {
                "AD".into()
            }
        }
        'y' | 'u' | 'Y' => {
            let y = if c == 'Y' {
                i64::from(z.date().iso_week_date().year())
            } else {
                year
            };
            if n == 2 {
                pad(y.rem_euclid(100), 2)
            } else {
                pad(y, n)
            }
        }
        'M' | 'L' => match n {
            1 | 2 => pad(i64::from(z.month()), n),
            _ => month_name(z.month(), n, locale),
        },
        'd' => pad(i64::from(z.day()), n),
        'D' => pad(i64::from(z.day_of_year()), n),
        'Q' | 'q' => {
            let q = (z.month() - 1) / 3 + 1;
            match n {
                1 | 2 => pad(i64::from(q), n),
                3 => format!("Q{q}"),
                _ => format!("{} quarter", ["1st", "2nd", "3rd", "4th"][(q - 1) as usize]),
            }
        }
        'w' => pad(i64::from(z.date().iso_week_date().week()), n),
        'W' => pad(
            i64::from((z.day() - 1 + first_weekday_offset(z)) / 7 + 1),
            n,
        ),
        'E' => day_name(z.weekday(), n, locale),
        'e' | 'c' => match n {
            1 | 2 => pad(i64::from(z.weekday().to_sunday_one_offset()), n),
            _ => day_name(z.weekday(), n, locale),
        },
        'F' => pad(i64::from((z.day() - 1) / 7 + 1), n),
        _ => return None,
    })
}

fn time_field(z: &Zoned, c: char, n: usize) -> Option<String> {
    Some(match c {
        'a' => if z.hour() < 12 { "AM" } else { "PM" }.into(),
        'B' => match z.hour() {
            6..=11 => "in the morning",
            12..=17 => "in the afternoon",
            18..=20 => "in the evening",
            _ => "at night",
        }
        .into(),
        'h' => pad(i64::from((z.hour() + 11) % 12 + 1), n),
        'K' => pad(i64::from(z.hour() % 12), n),
        'k' => pad(i64::from(if z.hour() == 0 { 24 } else { z.hour() }), n),
        'H' => pad(i64::from(z.hour()), n),
        'm' => pad(i64::from(z.minute()), n),
        's' => pad(i64::from(z.second()), n),
        'S' => {
            let nanos = format!("{:09}", z.subsec_nanosecond());
            if n <= 9 {
                nanos[..n].to_string()
            } else {
                format!("{nanos}{}", "0".repeat(n - 9))
            }
        }
        'A' => pad(
            i64::from(
                z.time()
                    .duration_since(jiff::civil::Time::midnight())
                    .as_millis() as i32,
            ),
            n,
        ),
        'n' => pad(i64::from(z.subsec_nanosecond()), n),
        'N' => pad(
            z.time()
                .duration_since(jiff::civil::Time::midnight())
                .as_nanos() as i64,
            n,
        ),
        _ => return None,
    })
}

fn zone_field(z: &Zoned, c: char, n: usize) -> Option<String> {
    let offset = z.offset().seconds();
    Some(match c {
        'V' => z
            .time_zone()
            .iana_name()
            .map_or_else(|| offset_text(offset, true, true, true), str::to_string),
        'v' => z.time_zone().iana_name().unwrap_or("").to_string(),
        'z' => zone_abbreviation(z),
        'O' => gmt_offset(offset, n == 4),
        'X' => match n {
            1 => offset_text(offset, false, true, false),
            2 | 4 => offset_text(offset, false, true, true),
            _ => offset_text(offset, true, true, true),
        },
        'x' => match n {
            1 => offset_text(offset, false, false, false),
            2 | 4 => offset_text(offset, false, false, true),
            _ => offset_text(offset, true, false, true),
        },
        'Z' => match n {
            1..=3 => offset_text(offset, false, false, true),
            4 => gmt_offset(offset, true),
            _ => offset_text(offset, true, true, true),
        },
        _ => return None,
    })
}

fn first_weekday_offset(z: &Zoned) -> i8 {
    z.date().first_of_month().weekday().to_monday_zero_offset()
}

fn format_pieces(
    z: &Zoned,
    pieces: &[Piece],
    locale: Locale,
    out: &mut String,
) -> Result<(), String> {
    for p in pieces {
        match p {
            Piece::Lit(l) => out.push_str(l),
            Piece::Field(c, n) => out.push_str(&field(z, *c, *n, locale)?),
            Piece::Optional(inner) => format_pieces(z, inner, locale, out)?,
        }
    }
    Ok(())
}

/// `ISO_LOCAL_TIME`: seconds always, the fraction only when not zero.
fn iso_time(z: &Zoned) -> String {
    let mut out = format!("{:02}:{:02}:{:02}", z.hour(), z.minute(), z.second());
    let nanos = z.subsec_nanosecond();
    if nanos != 0 {
        let mut frac = format!("{nanos:09}");
        while frac.len() > 3 && frac.ends_with("000") {
            frac.truncate(frac.len() - 3);
        }
        out.push('.');
        out.push_str(&frac);
    }
    out
}

fn iso_offset(z: &Zoned) -> String {
    offset_text(z.offset().seconds(), true, true, true)
}

/// Kestra's named formats, Java's ISO formatters, or a pattern.
pub(crate) fn format_zoned(z: &Zoned, format: &str, locale: Locale) -> Result<String, String> {
    let date = format!("{:04}-{:02}-{:02}", z.year(), z.month(), z.day());
    let region = || match z.time_zone().iana_name() {
        Some(name) => format!("[{name}]"),
        None => String::new(),
    };
    let pattern = match format {
        "iso" | "iso8601" => "yyyy-MM-dd'T'HH:mm:ss.SSSSSSXXX",
        "iso_sec" => "yyyy-MM-dd'T'HH:mm:ssXXX",
        "sql" => "yyyy-MM-dd HH:mm:ss.SSSSSS",
        "sql_seq" => "yyyy-MM-dd HH:mm:ss",
        "iso_date_time" | "iso_zoned_date_time" => {
            return Ok(format!(
                "{date}T{}{}{}",
                iso_time(z),
                iso_offset(z),
                region()
            ));
        }
        "iso_offset_date_time" => return Ok(format!("{date}T{}{}", iso_time(z), iso_offset(z))),
        "iso_local_date_time" => return Ok(format!("{date}T{}", iso_time(z))),
        "iso_date" | "iso_offset_date" => return Ok(format!("{date}{}", iso_offset(z))),
        "iso_local_date" => return Ok(date),
        "iso_time" | "iso_offset_time" => return Ok(format!("{}{}", iso_time(z), iso_offset(z))),
        "iso_local_time" => return Ok(iso_time(z)),
        "iso_instant" => {
            let utc = z.with_time_zone(TimeZone::UTC);
            let d = format!("{:04}-{:02}-{:02}", utc.year(), utc.month(), utc.day());
            return Ok(format!("{d}T{}Z", iso_time(&utc)));
        }
        "iso_ordinal_date" => {
            return Ok(format!(
                "{:04}-{:03}{}",
                z.year(),
                z.day_of_year(),
                iso_offset(z)
            ));
        }
        "iso_week_date" => {
            let w = z.date().iso_week_date();
            return Ok(format!(
                "{:04}-W{:02}-{}{}",
                w.year(),
                w.week(),
                w.weekday().to_monday_one_offset(),
                iso_offset(z)
            ));
        }
        "rfc_1123_date_time" => {
            let off = z.offset().seconds();
            let zone = if off == 0 {
                "GMT".to_string()
            } else {
                offset_text(off, false, false, true)
            };
            return Ok(format!(
                "{}, {} {} {:04} {:02}:{:02}:{:02} {zone}",
                &DAYS_EN[z.weekday().to_monday_zero_offset() as usize][..3],
                z.day(),
                &MONTHS_EN[(z.month() - 1) as usize][..3],
                z.year(),
                z.hour(),
                z.minute(),
                z.second()
            ));
        }
        "full" => "EEEE, MMMM d, y 'at' h:mm:ss a zzzz",
        "long" => "MMMM d, y 'at' h:mm:ss a z",
        "medium" => "MMM d, y, h:mm:ss a",
        "short" => "M/d/yy, h:mm a",
        pattern => pattern,
    };
    let mut out = String::new();
    format_pieces(z, &tokenize(pattern)?, locale, &mut out)?;
    Ok(out)
}

// ---- reading text with a pattern -----------------------------------------

#[derive(Default)]
struct Fields {
    year: Option<i64>,
    month: Option<i64>,
    day: Option<i64>,
    day_of_year: Option<i64>,
    hour: Option<i64>,
    hour12: Option<i64>,
    pm: Option<bool>,
    minute: Option<i64>,
    second: Option<i64>,
    nano: Option<i64>,
    offset: Option<Offset>,
    zone: Option<TimeZone>,
}

struct Reader<'a> {
    s: &'a str,
    i: usize,
}

impl Reader<'_> {
    fn rest(&self) -> &str {
        &self.s[self.i..]
    }

    fn digits(&mut self, min: usize, max: usize) -> Result<i64, String> {
        let sign = if self.rest().starts_with('-') && max > 4 {
            self.i += 1;
            -1
        } else {
            1
        };
        let n = self
            .rest()
            .chars()
            .take(max)
            .take_while(char::is_ascii_digit)
            .count();
        if n < min {
            return Err(format!("expected digits at `{}`", self.rest()));
        }
        let v: i64 = self.rest()[..n].parse().map_err(|_| "number too large")?;
        self.i += n;
        Ok(sign * v)
    }

    fn name(&mut self, names: &[String]) -> Result<usize, String> {
        let rest = self.rest().to_lowercase();
        let mut best: Option<(usize, usize)> = None;
        for (idx, n) in names.iter().enumerate() {
            let lower = n.to_lowercase();
            if rest.starts_with(&lower) && best.is_none_or(|(_, len)| lower.len() > len) {
                best = Some((idx, lower.len()));
            }
        }
        let (idx, len) = best.ok_or_else(|| format!("unexpected text `{}`", self.rest()))?;
        self.i += self
            .rest()
            .char_indices()
            .nth(len)
            .map_or(self.rest().len(), |(b, _)| b);
        Ok(idx)
    }
}

/// Reads text with a Java pattern (or a preset name) and builds the
/// zoned date-time Kestra would: zoned when the text has an offset or a
/// zone, else local (date-time or date at midnight) in `tz`.
fn parse_with(text: &str, format: &str, tz: &TimeZone) -> Result<Zoned, String> {
    let pattern = match format {
        "iso" | "iso8601" => "yyyy-MM-dd'T'HH:mm:ss.SSSSSSXXX",
        "iso_sec" => "yyyy-MM-dd'T'HH:mm:ssXXX",
        "sql" => "yyyy-MM-dd HH:mm:ss.SSSSSS",
        "sql_seq" => "yyyy-MM-dd HH:mm:ss",
        "rfc_1123_date_time" => "EEE, d MMM yyyy HH:mm:ss z",
        "iso_local_date" | "iso_date" => "yyyy-MM-dd",
        "iso_date_time" | "iso_zoned_date_time" | "iso_offset_date_time" | "iso_instant" => {
            return parse_iso_zoned(text)
                .ok_or_else(|| format!("could not parse `{text}` as {format}"));
        }
        "iso_local_date_time" => {
            let dt: DateTime = text
                .parse()
                .map_err(|e| format!("could not parse `{text}`: {e}"))?;
            return dt.to_zoned(tz.clone()).map_err(|e| e.to_string());
        }
        p => p,
    };
    let pieces = tokenize(pattern)?;
    let mut r = Reader { s: text, i: 0 };
    let mut f = Fields::default();
    read_pieces(&mut r, &pieces, &mut f)?;
    if !r.rest().is_empty() {
        return Err(format!(
            "Text '{text}' could not be parsed, unparsed text found at index {}",
            r.i
        ));
    }
    build(&f, tz, text)
}

fn read_pieces(r: &mut Reader<'_>, pieces: &[Piece], f: &mut Fields) -> Result<(), String> {
    for (idx, p) in pieces.iter().enumerate() {
        // A number followed by another number is read with its exact width.
        let adjacent =
            matches!(pieces.get(idx + 1), Some(Piece::Field(c, _)) if "yuMdDHhKkmsSn".contains(*c));
        match p {
            Piece::Lit(l) => {
                if !r.rest().starts_with(l.as_str()) {
                    return Err(format!("expected `{l}` at `{}`", r.rest()));
                }
                r.i += l.len();
            }
            Piece::Optional(inner) => {
                let save = r.i;
                if read_pieces(r, inner, f).is_err() {
                    r.i = save;
                }
            }
            Piece::Field(c, n) => read_field(r, *c, *n, adjacent, f)?,
        }
    }
    Ok(())
}

fn read_field(
    r: &mut Reader<'_>,
    c: char,
    n: usize,
    adjacent: bool,
    f: &mut Fields,
) -> Result<(), String> {
    let width = |max: usize| {
        if adjacent {
            (n.max(1), n.max(1))
        } else {
            (n.max(1), max)
        }
    };
    let names = |list: &[&str], len: Option<usize>| -> Vec<String> {
        list.iter()
            .map(|m| len.map_or((*m).to_string(), |l| m[..l].to_string()))
            .collect()
    };
    let numeric = match c {
        'M' | 'L' if n < 3 => Some((&mut f.month, 2)),
        'd' => Some((&mut f.day, 2)),
        'D' => Some((&mut f.day_of_year, 3)),
        'H' | 'k' => Some((&mut f.hour, 2)),
        'h' | 'K' => Some((&mut f.hour12, 2)),
        'm' => Some((&mut f.minute, 2)),
        's' => Some((&mut f.second, 2)),
        _ => None,
    };
    if let Some((slot, widest)) = numeric {
        let (min, max) = width(widest);
        *slot = Some(r.digits(min, max)?);
        f.hour = f.hour.map(|h| h % 24);
        f.hour12 = f.hour12.map(|h| h % 12);
        return Ok(());
    }
    match c {
        'y' | 'u' | 'Y' => {
            let (min, max) = if n == 2 { (2, 2) } else { width(9) };
            let y = r.digits(min, max)?;
            f.year = Some(if n == 2 { 2000 + y } else { y });
        }
        'M' | 'L' => f.month = Some(r.name(&names(&MONTHS_EN, (n == 3).then_some(3)))? as i64 + 1),
        'E' => {
            r.name(&names(&DAYS_EN, (n < 4).then_some(3)))?;
        }
        'a' => f.pm = Some(r.name(&["AM".to_string(), "PM".to_string()])? == 1),
        'S' => {
            let start = r.i;
            let v = r.digits(n, n)?;
            let len = r.i - start;
            f.nano = Some(v * 10i64.pow(9u32.saturating_sub(len as u32)));
        }
        'n' => f.nano = Some(r.digits(1, 9)?),
        'X' | 'x' | 'Z' | 'z' | 'V' | 'O' => read_zone(r, c, f)?,
        other => return Err(format!("cannot read the pattern letter `{other}`")),
    }
    Ok(())
}

/// An offset (`X`, `x`, `Z`: `Z`, `+02`, `+0200`, `+02:00`) or a zone
/// (`z`, `V`, `O`: `GMT`, `UTC`, `GMT+2`, a region).
fn read_zone(r: &mut Reader<'_>, c: char, f: &mut Fields) -> Result<(), String> {
    let rest = r.rest();
    if matches!(c, 'X' | 'x' | 'Z') {
        let len = if rest.starts_with(['Z', 'z']) {
            1
        } else {
            rest.char_indices()
                .skip(1)
                .find(|(_, ch)| !(ch.is_ascii_digit() || *ch == ':'))
                .map_or(rest.len(), |(b, _)| b)
        };
        f.offset =
            Some(parse_offset(&rest[..len]).ok_or_else(|| format!("invalid offset at `{rest}`"))?);
        r.i += len;
        return Ok(());
    }
    let len = rest.find(char::is_whitespace).unwrap_or(rest.len());
    let word = &rest[..len];
    let word = word
        .strip_prefix("GMT")
        .filter(|w| !w.is_empty())
        .unwrap_or(word);
    match parse_offset(word) {
        Some(off) => f.offset = Some(off),
        None => f.zone = Some(time_zone(word)?),
    }
    r.i += len;
    Ok(())
}

fn build(f: &Fields, tz: &TimeZone, text: &str) -> Result<Zoned, String> {
    let out_of_range = |what: &str| format!("`{text}`: {what} is out of range");
    let small = |v: i64, what: &str| i8::try_from(v).map_err(|_| out_of_range(what));
    let year = f.year.ok_or_else(|| format!("`{text}` has no year"))?;
    let year = i16::try_from(year).map_err(|_| out_of_range("the year"))?;
    let date = match (f.month, f.day, f.day_of_year) {
        (Some(m), Some(d), _) => Date::new(year, small(m, "the month")?, small(d, "the day")?)
            .map_err(|e| e.to_string())?,
        (_, _, Some(doy)) => Date::new(year, 1, 1)
            .and_then(|d| {
                d.with()
                    .day_of_year(i16::try_from(doy).unwrap_or(i16::MAX))
                    .build()
            })
            .map_err(|e| e.to_string())?,
        _ => return Err(format!("`{text}` has no complete date")),
    };
    let hour = match (f.hour, f.hour12, f.pm) {
        (Some(h), _, _) => h,
        (None, Some(h), Some(true)) => h + 12,
        (None, Some(h), _) => h,
        _ => 0,
    };
    let dt = DateTime::new(
        date.year(),
        date.month(),
        date.day(),
        small(hour, "the hour")?,
        small(f.minute.unwrap_or(0), "the minute")?,
        small(f.second.unwrap_or(0), "the second")?,
        i32::try_from(f.nano.unwrap_or(0)).map_err(|_| out_of_range("the fraction"))?,
    )
    .map_err(|e| e.to_string())?;
    let zone = match (&f.offset, &f.zone) {
        (Some(off), _) => TimeZone::fixed(*off),
        (None, Some(z)) => z.clone(),
        _ => tz.clone(),
    };
    dt.to_zoned(zone).map_err(|e| e.to_string())
}
