//! Where in a flow's YAML text a problem is: the parser's errors carry
//! their line and column; a validation problem carries a path
//! (`tasks[0].then[1].format`), found here in the text's block structure
//! so the editor can mark the line. A path that cannot be followed to the
//! end (flow-style YAML, a missing key) points at the deepest part found.

use serde::Serialize;

use crate::flow::FlowError;

/// One problem of a source, at its line and column (both from 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Located {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Every problem of `err`, located in `source`.
pub fn locate_problem(source: &str, err: &FlowError) -> Vec<Located> {
    match err {
        FlowError::Yaml {
            line,
            column,
            message,
        } => vec![Located {
            line: (*line).max(1),
            column: (*column).max(1),
            message: message.clone(),
        }],
        FlowError::Invalid { problems } => problems
            .iter()
            .map(|p| {
                let (line, column) = locate_path(source, &p.path);
                Located {
                    line,
                    column,
                    message: p.to_string(),
                }
            })
            .collect(),
    }
}

/// One meaningful line: its number (from 1), indentation and text.
struct Line<'a> {
    no: usize,
    indent: usize,
    text: &'a str,
}

enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

fn segments(path: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty() && *p != "$") {
        let (key, mut rest) = part.split_at(part.find('[').unwrap_or(part.len()));
        if !key.is_empty() {
            out.push(Segment::Key(key));
        }
        while let Some(inner) = rest.strip_prefix('[') {
            let Some(end) = inner.find(']') else { break };
            if let Ok(n) = inner[..end].parse() {
                out.push(Segment::Index(n));
            }
            rest = &inner[end + 1..];
        }
    }
    out
}

/// Where the lines of one block are: `lines[start..end]`, and the text
/// after a list item's dash on the line before `start` (`inline`).
struct Scope<'a> {
    start: usize,
    end: usize,
    inline: Option<(usize, usize, &'a str)>,
}

fn is_key(text: &str, key: &str) -> bool {
    let text = text
        .strip_prefix('"')
        .and_then(|t| t.strip_prefix(key))
        .and_then(|t| t.strip_prefix('"'))
        .or_else(|| text.strip_prefix(key));
    text.is_some_and(|t| t.starts_with(':'))
}

/// The end of the block under a line indented `indent` (a list may sit at
/// the key's own indentation).
fn block_end(lines: &[Line], from: usize, limit: usize, indent: usize, dash_too: bool) -> usize {
    (from..limit)
        .find(|&j| {
            let l = &lines[j];
            l.indent < indent || (l.indent == indent && !(dash_too && l.text.starts_with('-')))
        })
        .unwrap_or(limit)
}

/// The line and column of `path` in `source` (1:1 when nothing matches).
pub fn locate_path(source: &str, path: &str) -> (usize, usize) {
    let lines: Vec<Line> = source
        .lines()
        .enumerate()
        .filter_map(|(i, raw)| {
            let text = raw.trim_start();
            (!text.is_empty() && !text.starts_with('#') && text != "---").then(|| Line {
                no: i + 1,
                indent: raw.len() - text.len(),
                text,
            })
        })
        .collect();
    let mut found = (1, 1);
    let mut scope = Scope {
        start: 0,
        end: lines.len(),
        inline: None,
    };
    for segment in segments(path) {
        let next = match segment {
            Segment::Key(key) => find_key(&lines, &scope, key),
            Segment::Index(n) => find_item(&lines, &scope, n),
        };
        match next {
            Some((at, scope_next)) => {
                found = at;
                scope = scope_next;
            }
            None => break,
        }
    }
    found
}

fn find_key<'a>(
    lines: &[Line<'a>],
    scope: &Scope<'a>,
    key: &str,
) -> Option<((usize, usize), Scope<'a>)> {
    if let Some((no, col, text)) = scope.inline
        && is_key(text, key)
    {
        let end = block_end(lines, scope.start, scope.end, col, true);
        let next = Scope {
            start: scope.start,
            end,
            inline: None,
        };
        return Some(((no, col + 1), next));
    }
    let child = scope
        .inline
        .map(|(_, col, _)| col)
        .or_else(|| lines.get(scope.start).map(|l| l.indent))?;
    (scope.start..scope.end)
        .find(|&i| lines[i].indent == child && is_key(lines[i].text, key))
        .map(|i| {
            let l = &lines[i];
            let end = block_end(lines, i + 1, scope.end, l.indent, true);
            (
                (l.no, l.indent + 1),
                Scope {
                    start: i + 1,
                    end,
                    inline: None,
                },
            )
        })
}

fn find_item<'a>(
    lines: &[Line<'a>],
    scope: &Scope<'a>,
    n: usize,
) -> Option<((usize, usize), Scope<'a>)> {
    let first = lines.get(scope.start)?;
    let dash = first.indent;
    let i = (scope.start..scope.end)
        .filter(|&i| {
            lines[i].indent == dash && (lines[i].text.starts_with("- ") || lines[i].text == "-")
        })
        .nth(n)?;
    let l = &lines[i];
    let after = l.text[1..].trim_start();
    let col = l.indent + (l.text.len() - after.len());
    let end = block_end(lines, i + 1, scope.end, dash + 1, false);
    let inline = (!after.is_empty()).then_some((l.no, col, after));
    Some((
        (l.no, l.indent + 1),
        Scope {
            start: i + 1,
            end,
            inline,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLOW: &str = "id: f\nnamespace: n\n# comment\ntasks:\n  - id: a\n    type: io.kestra.plugin.core.log.Log\n    message: hi\n  - id: b\n    type: io.kestra.plugin.core.flow.If\n    condition: x\n    then:\n    - id: c\n      type: nope\n";

    #[test]
    fn paths_are_found_in_block_yaml() {
        assert_eq!(locate_path(FLOW, "namespace"), (2, 1));
        assert_eq!(locate_path(FLOW, "tasks[0]"), (5, 3));
        assert_eq!(locate_path(FLOW, "tasks[0].message"), (7, 5));
        assert_eq!(locate_path(FLOW, "tasks[1].id"), (8, 5));
        assert_eq!(locate_path(FLOW, "tasks[1].then[0].type"), (13, 7));
        // Not there: the deepest part found.
        assert_eq!(locate_path(FLOW, "tasks[1].nothing"), (8, 3));
        assert_eq!(locate_path(FLOW, "$"), (1, 1));
    }
}
