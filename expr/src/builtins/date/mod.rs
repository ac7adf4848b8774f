//! Dates as Kestra's `AbstractDate` handles them: inputs are epoch seconds
//! or ISO strings (zoned, then local date-time, then local date), or text
//! read with `existingFormat`; outputs are formatted with Java
//! `DateTimeFormatter` patterns or Kestra's presets. The default time zone
//! is UTC (Kestra uses the server's zone).
//!
//! Split by concern: this file holds the filters and functions; `input`
//! reads their arguments (zones, locales, input dates), `format` writes
//! with Java patterns and `parse` reads text with them.

mod format;
mod input;
mod parse;

use jiff::civil::{Date, DateTime, Weekday};
use jiff::tz::TimeZone;
use jiff::{Span, Timestamp};

use self::format::{format_zoned, weekday_name};
use self::input::{input, locale, parse_iso_zoned, zone};
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
