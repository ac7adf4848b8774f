//! Reading text with a Java pattern (`existingFormat`).

use jiff::Zoned;
use jiff::civil::{Date, DateTime};
use jiff::tz::{Offset, TimeZone};

use super::format::{DAYS_EN, MONTHS_EN, Piece, tokenize};
use super::input::{parse_iso_zoned, parse_offset, time_zone};

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
pub(super) fn parse_with(text: &str, format: &str, tz: &TimeZone) -> Result<Zoned, String> {
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
