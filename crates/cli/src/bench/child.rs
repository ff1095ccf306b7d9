//! A child process (crane86, QEMU or a native benchmark) whose stdout lines are timestamped
//! by the host as they arrive, with deadlines instead of blocking reads, and that is always
//! killed and reaped: on [`Child::kill`], or when it is dropped still running.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::markers::Timed;

/// How much of a child's stderr is kept for error messages.
const STDERR_TAIL: usize = 2000;

/// What [`Child::next_line`] found before its deadline.
#[derive(Debug)]
pub enum Next {
    /// A line arrived.
    Line(Timed),
    /// The child closed its stdout (it exited).
    Eof,
    /// The deadline passed first.
    TimedOut,
}

/// A running child with stdin from /dev/null (the terminal is never touched), stdout read
/// line by line on a thread, and stderr collected on another.
pub struct Child {
    child: std::process::Child,
    t0: Instant,
    lines: Receiver<Timed>,
    stderr: Option<JoinHandle<String>>,
    status: Option<ExitStatus>,
}

impl Child {
    /// Starts `cmd`; times count from just before the spawn.
    pub fn spawn(cmd: &mut Command) -> Result<Child> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let t0 = Instant::now();
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {:?}", cmd.get_program()))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut stderr = child.stderr.take().expect("stderr is piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match r.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let at = t0.elapsed();
                        let text = String::from_utf8_lossy(&buf);
                        let text = text.trim_end_matches(['\n', '\r']).to_string();
                        if tx.send(Timed { at, text }).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut all = Vec::new();
            let _ = stderr.read_to_end(&mut all);
            let start = all.len().saturating_sub(STDERR_TAIL);
            String::from_utf8_lossy(&all[start..]).into_owned()
        });
        Ok(Child {
            child,
            t0,
            lines,
            stderr: Some(stderr),
            status: None,
        })
    }

    /// Time since the spawn.
    pub fn elapsed(&self) -> Duration {
        self.t0.elapsed()
    }

    /// The next stdout line, end of file, or the deadline.
    pub fn next_line(&mut self, deadline: Instant) -> Next {
        let wait = deadline.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(wait) {
            Ok(line) => Next::Line(line),
            Err(RecvTimeoutError::Disconnected) => Next::Eof,
            Err(RecvTimeoutError::Timeout) => Next::TimedOut,
        }
    }

    /// Waits for the child to exit until `deadline`; returns its status and the time of its
    /// exit (as first seen, to within a millisecond), or `None` after killing it when the
    /// deadline passed.
    pub fn wait(&mut self, deadline: Instant) -> Option<(ExitStatus, Duration)> {
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    self.status = Some(status);
                    return Some((status, self.elapsed()));
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                _ => {
                    self.kill();
                    return None;
                }
            }
        }
    }

    /// Kills the child (when it still runs) and reaps it.
    pub fn kill(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            self.status = self.child.wait().ok();
        }
    }

    /// The last part of what the child wrote to stderr; kills it first if it still runs.
    pub fn stderr_tail(&mut self) -> String {
        self.kill();
        self.stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut c = Command::new("sh");
        c.args(["-c", script]);
        c
    }

    #[test]
    fn lines_arrive_in_order_with_rising_timestamps_then_eof() {
        let mut c = Child::spawn(&mut sh("echo one; sleep 0.05; printf 'two\\r\\nthree'")).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut got = Vec::new();
        while let Next::Line(l) = c.next_line(deadline) {
            got.push(l);
        }
        let texts: Vec<_> = got.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["one", "two", "three"]);
        assert!(got[1].at >= got[0].at + Duration::from_millis(40));
        let (status, _) = c.wait(deadline).unwrap();
        assert!(status.success());
    }

    #[test]
    fn a_deadline_stops_a_silent_child_and_kills_it() {
        let mut c = Child::spawn(&mut sh("echo err >&2; exec sleep 30")).unwrap();
        let t = Instant::now();
        assert!(matches!(
            c.next_line(Instant::now() + Duration::from_millis(100)),
            Next::TimedOut
        ));
        assert!(c.wait(Instant::now() + Duration::from_millis(50)).is_none());
        assert_eq!(c.stderr_tail(), "err\n");
        assert!(t.elapsed() < Duration::from_secs(5));
    }
}
