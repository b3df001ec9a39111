//! Outcomes of a program run and readable reports of how two outcomes differ.

use std::fmt::Write as _;

/// What a test compares: everything the program wrote to stdout and its final exit status
/// (128+N when signal N killed it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub stdout: Vec<u8>,
    pub status: i32,
}

/// Lines shown before the first differing line.
const CONTEXT: usize = 2;

/// Where `actual` first differs from `expected`, as a readable paragraph, or `None` when the
/// two are equal. `parts` are the lengths of the pieces `actual` was concatenated from (one
/// per launch), to name the launch that wrote the first wrong byte.
pub fn stdout_difference(expected: &[u8], actual: &[u8], parts: &[usize]) -> Option<String> {
    if expected == actual {
        return None;
    }
    let at = expected
        .iter()
        .zip(actual)
        .position(|(a, b)| a != b)
        .unwrap_or(expected.len().min(actual.len()));
    let line_start = expected[..at]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |p| p + 1);
    let line_no = expected[..at].iter().filter(|&&b| b == b'\n').count() + 1;
    let mut s = String::new();
    let _ = write!(
        s,
        "stdout differs from the oracle at line {line_no} (byte {at}"
    );
    if let Some(launch) = part_of(parts, at) {
        let _ = write!(s, ", written by launch {} of {}", launch + 1, parts.len());
    }
    s.push_str("):\n");
    let before: Vec<&[u8]> = expected[..line_start]
        .split(|&b| b == b'\n')
        .rev()
        .skip(1)
        .take(CONTEXT)
        .collect();
    for (i, l) in before.iter().enumerate().rev() {
        let _ = writeln!(s, "    line {:>5}: {}", line_no - 1 - i, show(l));
    }
    let _ = writeln!(s, "    expected  : {}", show_line(expected, line_start));
    let _ = writeln!(s, "    actual    : {}", show_line(actual, line_start));
    let _ = write!(
        s,
        "    expected {} lines / {} bytes, got {} lines / {} bytes",
        count_lines(expected),
        expected.len(),
        count_lines(actual),
        actual.len()
    );
    Some(s)
}

/// Compares an outcome with the oracle's; `Err` holds a readable report.
pub fn compare(expected: &Outcome, actual: &Outcome, parts: &[usize]) -> Result<(), String> {
    let mut problems = Vec::new();
    if expected.status != actual.status {
        problems.push(format!(
            "exit status: expected {}, got {}",
            expected.status, actual.status
        ));
    }
    if let Some(d) = stdout_difference(&expected.stdout, &actual.stdout, parts) {
        problems.push(d);
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

/// Index of the part holding byte `at` (or the last part when `at` is past the end).
fn part_of(parts: &[usize], at: usize) -> Option<usize> {
    let mut end = 0;
    for (i, len) in parts.iter().enumerate() {
        end += len;
        if at < end {
            return Some(i);
        }
    }
    parts.len().checked_sub(1)
}

fn count_lines(b: &[u8]) -> usize {
    b.iter().filter(|&&c| c == b'\n').count() + usize::from(b.last().is_some_and(|&c| c != b'\n'))
}

/// The line of `b` that starts at `start`, or a marker when `b` ends before it.
fn show_line(b: &[u8], start: usize) -> String {
    if start >= b.len() {
        return "<end of output>".to_string();
    }
    let rest = &b[start..];
    let end = rest.iter().position(|&c| c == b'\n');
    let mut shown = show(&rest[..end.unwrap_or(rest.len())]);
    if end.is_none() {
        shown.push_str(" <no newline: output ends here>");
    }
    shown
}

/// A line as a quoted, escaped string, shortened when very long.
pub fn show(line: &[u8]) -> String {
    const MAX: usize = 300;
    let text = String::from_utf8_lossy(&line[..line.len().min(MAX)]);
    let mut s = format!("{text:?}");
    if line.len() > MAX {
        let _ = write!(s, " ...({} more bytes)", line.len() - MAX);
    }
    s
}

/// The last `n` lines of `b`, indented, for showing a launch's stderr in a report.
pub fn tail_lines(b: &[u8], n: usize) -> String {
    let text = String::from_utf8_lossy(b);
    let lines: Vec<&str> = text.lines().collect();
    let skip = lines.len().saturating_sub(n);
    let mut s = String::new();
    if skip > 0 {
        let _ = writeln!(s, "        ... ({skip} earlier lines)");
    }
    for l in &lines[skip..] {
        let _ = writeln!(s, "        | {l}");
    }
    s
}
