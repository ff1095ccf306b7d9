//! The marker lines a guest prints on its serial console, and the splitting of a timed
//! transcript into one timing per workload.
//!
//! `/init` prints `crane86: boot complete`; the bench script
//! (`guest-images/linux/bench/bench`) prints, per workload, `crane86-bench: start NAME`, the
//! workload's result lines, then `crane86-bench: end NAME` or `crane86-bench: fail NAME
//! STATUS`, and `crane86-bench: done` after the last one. A marker is recognised anywhere
//! in a line: QEMU's console puts terminal escapes before the first line, and a late kernel
//! message may share a line with the guest's output.

use std::time::Duration;

/// The line `/init` prints once the kernel has started it.
pub const BOOT_COMPLETE: &str = "crane86: boot complete";

/// The prefix of the bench script's marker lines.
const PREFIX: &str = "crane86-bench: ";

/// One marker line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Marker<'a> {
    /// `/init` is running.
    BootComplete,
    /// The timed part of a workload begins.
    Start(&'a str),
    /// The workload finished successfully.
    End(&'a str),
    /// The workload's command failed with the status given.
    Fail(&'a str, &'a str),
    /// Every workload has run; the guest powers off next.
    Done,
}

/// The marker in `line`, if there is one.
pub fn parse(line: &str) -> Option<Marker<'_>> {
    if line.contains(BOOT_COMPLETE) {
        return Some(Marker::BootComplete);
    }
    let rest = &line[line.find(PREFIX)? + PREFIX.len()..];
    let mut words = rest.split_whitespace();
    match (words.next()?, words.next(), words.next()) {
        ("start", Some(name), None) => Some(Marker::Start(name)),
        ("end", Some(name), None) => Some(Marker::End(name)),
        ("fail", Some(name), status) => Some(Marker::Fail(name, status.unwrap_or("?"))),
        ("done", None, None) => Some(Marker::Done),
        _ => None,
    }
}

/// A line of a child's output and when it arrived, counted from the child's spawn.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timed {
    /// Arrival time.
    pub at: Duration,
    /// The line without its line ending (`\r\n` from a serial console, or `\n`).
    pub text: String,
}

/// What happened to one workload of a boot.
#[derive(Clone, Debug, PartialEq)]
pub struct Span {
    /// The workload's name.
    pub name: String,
    /// Seconds from its start line to its end line, or why there is no timing.
    pub secs: Result<f64, String>,
    /// Its result lines (between the markers, without kernel messages).
    pub output: Vec<String>,
}

/// Turns a transcript, fed line by line as it arrives, into [`Span`]s.
#[derive(Debug, Default)]
pub struct Splitter {
    /// When `crane86: boot complete` arrived.
    pub boot: Option<Duration>,
    /// The finished workloads, in order.
    pub spans: Vec<Span>,
    /// The `done` marker arrived.
    pub done: bool,
    open: Option<(String, Duration, Vec<String>)>,
}

impl Splitter {
    /// Takes the next line; returns whether it was a marker (a sign of progress).
    pub fn feed(&mut self, line: &Timed) -> bool {
        let Some(marker) = parse(&line.text) else {
            if let Some((_, _, output)) = &mut self.open {
                let text = line.text.trim();
                // Kernel messages ("[   12.345678] ...") are not the workload's output.
                if !text.is_empty() && !text.starts_with('[') {
                    output.push(text.to_string());
                }
            }
            return false;
        };
        match marker {
            Marker::BootComplete => self.boot = self.boot.or(Some(line.at)),
            Marker::Start(name) => {
                self.close_unfinished("the next workload started before its end line");
                self.open = Some((name.to_string(), line.at, Vec::new()));
            }
            Marker::End(name) | Marker::Fail(name, _) => match self.open.take() {
                Some((open, t0, output)) if open == name => {
                    let secs = match marker {
                        Marker::Fail(_, status) => Err(format!("exited with status {status}")),
                        _ => Ok((line.at - t0).as_secs_f64()),
                    };
                    self.spans.push(Span {
                        name: open,
                        secs,
                        output,
                    });
                }
                other => {
                    self.open = other;
                    self.close_unfinished(&format!("an end line for `{name}` came instead"));
                }
            },
            Marker::Done => {
                self.close_unfinished("`done` came before its end line");
                self.done = true;
            }
        }
        true
    }

    /// The workload still running, if any.
    pub fn running(&self) -> Option<&str> {
        self.open.as_ref().map(|(name, _, _)| name.as_str())
    }

    /// Ends the transcript early (the child died or was stopped): a workload still open is
    /// recorded as failed with `why`.
    pub fn close_unfinished(&mut self, why: &str) {
        if let Some((name, _, output)) = self.open.take() {
            self.spans.push(Span {
                name,
                secs: Err(why.to_string()),
                output,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(ms: u64, text: &str) -> Timed {
        Timed {
            at: Duration::from_millis(ms),
            text: text.into(),
        }
    }

    #[test]
    fn markers_parse_with_noise_around_them() {
        assert_eq!(parse("crane86: boot complete"), Some(Marker::BootComplete));
        assert_eq!(
            parse("\x1bc\x1b[?7lcrane86-bench: start gzip"),
            Some(Marker::Start("gzip"))
        );
        assert_eq!(
            parse("crane86-bench: end fork-exec  "),
            Some(Marker::End("fork-exec"))
        );
        assert_eq!(
            parse("crane86-bench: fail pipe 1"),
            Some(Marker::Fail("pipe", "1"))
        );
        assert_eq!(
            parse("crane86-bench: fail pipe"),
            Some(Marker::Fail("pipe", "?"))
        );
        assert_eq!(parse("crane86-bench: done"), Some(Marker::Done));
    }

    #[test]
    fn other_lines_are_not_markers() {
        assert_eq!(parse("crc32: bytes=33554432 crc=e7b441cb"), None);
        assert_eq!(parse("crane86-bench: start"), None);
        assert_eq!(parse("crane86-bench: start a b"), None);
        assert_eq!(parse("crane86-bench: begin gzip"), None);
        assert_eq!(parse("crane86: checks done"), None);
    }

    #[test]
    fn a_transcript_splits_into_timed_workloads_with_their_output() {
        let mut s = Splitter::default();
        let lines = [
            line(100, "[    0.000000] Linux version 6.1.0"),
            line(1500, "crane86: boot complete"),
            line(2000, "crane86-bench: start crc32"),
            line(2100, "[   12.5] a kernel warning"),
            line(2600, "crc32: bytes=1 crc=0"),
            line(2750, "crane86-bench: end crc32"),
            line(3000, "crane86-bench: start pipe"),
            line(3100, "pipe: broken"),
            line(3500, "crane86-bench: fail pipe 1"),
            line(3600, "crane86-bench: done"),
        ];
        let progress: Vec<bool> = lines.iter().map(|l| s.feed(l)).collect();
        assert_eq!(
            progress,
            [false, true, true, false, false, true, true, false, true, true]
        );
        assert_eq!(s.boot, Some(Duration::from_millis(1500)));
        assert!(s.done);
        assert_eq!(
            s.spans,
            [
                Span {
                    name: "crc32".into(),
                    secs: Ok(0.75),
                    output: vec!["crc32: bytes=1 crc=0".into()],
                },
                Span {
                    name: "pipe".into(),
                    secs: Err("exited with status 1".into()),
                    output: vec!["pipe: broken".into()],
                },
            ]
        );
    }

    #[test]
    fn a_workload_cut_short_is_recorded_as_failed() {
        let mut s = Splitter::default();
        s.feed(&line(0, "crane86-bench: start gzip"));
        s.feed(&line(10, "crane86-bench: start shell-loop"));
        assert_eq!(s.running(), Some("shell-loop"));
        s.close_unfinished("timed out");
        let names: Vec<_> = s
            .spans
            .iter()
            .map(|p| (p.name.as_str(), p.secs.is_ok()))
            .collect();
        assert_eq!(names, [("gzip", false), ("shell-loop", false)]);
        assert_eq!(s.spans[1].secs, Err("timed out".into()));
        assert!(!s.done);
    }

    #[test]
    fn an_end_line_for_another_workload_fails_the_open_one() {
        let mut s = Splitter::default();
        s.feed(&line(0, "crane86-bench: start gzip"));
        s.feed(&line(5, "crane86-bench: end pipe"));
        assert_eq!(s.running(), None);
        assert_eq!(s.spans.len(), 1);
        assert!(s.spans[0].secs.as_ref().unwrap_err().contains("pipe"));
    }
}
