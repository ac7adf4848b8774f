//! Java `DateTimeFormatter` patterns: tokenizing and formatting, with
//! the English and French month and day names.

use jiff::Zoned;
use jiff::civil::Weekday;
use jiff::tz::TimeZone;

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Locale {
    En,
    Fr,
}

pub(super) const MONTHS_EN: [&str; 12] = [
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
pub(super) const DAYS_EN: [&str; 7] = [
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

pub(super) fn weekday_name(w: Weekday) -> &'static str {
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
pub(super) enum Piece {
    Field(char, usize),
    Lit(String),
    Optional(Vec<Piece>),
}

pub(super) fn tokenize(pattern: &str) -> Result<Vec<Piece>, String> {
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
