//! The glob patterns of `outputFiles`, read as Kestra reads them (Java's
//! `glob:` path matcher) against a file's path relative to the working
//! directory: `*` any run of characters within one folder, `**` any run
//! across folders, `?` one character, `[abc]`, `[a-z]`, `[!a]` one of (not
//! of) a set, `{csv,json}` one of the alternatives, `\` escapes.
//!
//! Matching is a table over pattern and path positions, so no pattern
//! takes more than their product in steps.

/// Most alternatives a pattern's `{...}` groups expand to.
const MAX_EXPANSIONS: usize = 64;

/// Whether `path` (relative, `/`-separated) matches `pattern`.
pub fn matches(pattern: &str, path: &str) -> bool {
    let path: Vec<char> = path.chars().collect();
    expand(pattern)
        .iter()
        .any(|p| matches_tokens(&tokens(p), &path))
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Char(char),
    /// `?`
    One,
    /// `*`
    Star,
    /// `**`
    Stars,
    /// `[...]`: negated, and the ranges (a single character is a range of one).
    Class(bool, Vec<(char, char)>),
}

/// The patterns `{a,b}` groups stand for (not nested, as in Java).
fn expand(pattern: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let escaped = chars.next().unwrap_or('\\');
                for p in &mut out {
                    p.push('\\');
                    p.push(escaped);
                }
            }
            '{' => {
                let mut group = String::new();
                for c in chars.by_ref() {
                    if c == '}' {
                        break;
                    }
                    group.push(c);
                }
                let mut next = Vec::new();
                for p in &out {
                    for alternative in group.split(',') {
                        if next.len() < MAX_EXPANSIONS {
                            next.push(format!("{p}{alternative}"));
                        }
                    }
                }
                out = next;
            }
            c => out.iter_mut().for_each(|p| p.push(c)),
        }
    }
    out
}

fn tokens(pattern: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(match c {
            '\\' => Token::Char(chars.next().unwrap_or('\\')),
            '?' => Token::One,
            '*' if chars.peek() == Some(&'*') => {
                chars.next();
                Token::Stars
            }
            '*' => Token::Star,
            '[' => {
                let negated = chars.next_if(|&c| c == '!').is_some();
                let mut ranges = Vec::new();
                while let Some(c) = chars.next() {
                    if c == ']' {
                        break;
                    }
                    let mut ahead = chars.clone();
                    match (ahead.next(), ahead.next()) {
                        (Some('-'), Some(end)) if end != ']' => {
                            chars.next();
                            chars.next();
                            ranges.push((c, end));
                        }
                        _ => ranges.push((c, c)),
                    }
                }
                Token::Class(negated, ranges)
            }
            c => Token::Char(c),
        });
    }
    out
}

fn matches_tokens(tokens: &[Token], path: &[char]) -> bool {
    let width = path.len() + 1;
    // ok[i * width + j]: tokens[i..] match path[j..].
    let mut ok = vec![false; (tokens.len() + 1) * width];
    ok[tokens.len() * width + path.len()] = true;
    for i in (0..tokens.len()).rev() {
        for j in (0..=path.len()).rev() {
            let rest = |i: usize, j: usize| ok[i * width + j];
            let here = path.get(j).copied();
            ok[i * width + j] = match &tokens[i] {
                Token::Char(c) => here == Some(*c) && rest(i + 1, j + 1),
                Token::One => here.is_some_and(|c| c != '/') && rest(i + 1, j + 1),
                Token::Class(negated, ranges) => {
                    here.is_some_and(|c| {
                        c != '/' && ranges.iter().any(|&(a, b)| a <= c && c <= b) != *negated
                    }) && rest(i + 1, j + 1)
                }
                Token::Star => rest(i + 1, j) || (here.is_some_and(|c| c != '/') && rest(i, j + 1)),
                Token::Stars => rest(i + 1, j) || (here.is_some() && rest(i, j + 1)),
            };
        }
    }
    ok[0]
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn patterns_match_as_in_kestra() {
        let cases = [
            ("*.csv", "data.csv", true),
            ("*.csv", "out/data.csv", false),
            ("**.csv", "out/data.csv", true),
            ("out/**", "out/a/b.txt", true),
            ("out/**", "other/a.txt", false),
            ("**/*.json", "a/b/c.json", true),
            ("**/*.json", "c.json", false),
            ("report.txt", "report.txt", true),
            ("report.txt", "report.txt.bak", false),
            ("file?.txt", "file1.txt", true),
            ("file?.txt", "file10.txt", false),
            ("*.{csv,json}", "a.json", true),
            ("*.{csv,json}", "a.xml", false),
            ("[a-c]*.txt", "b1.txt", true),
            ("[!a-c]*.txt", "b1.txt", false),
            ("\\*.txt", "*.txt", true),
            ("\\*.txt", "a.txt", false),
            ("*", "a", true),
            ("*", "a/b", false),
        ];
        for (pattern, path, expected) in cases {
            assert_eq!(matches(pattern, path), expected, "{pattern} ~ {path}");
        }
    }

    #[test]
    fn hostile_patterns_stay_cheap() {
        let pattern = "*a".repeat(40) + "b";
        let path = "a".repeat(1000);
        assert!(!matches(&pattern, &path));
    }
}
