//! Compiling in the background: a thread with its own [`Jit`] that turns hot blocks into
//! machine code while the vCPU keeps interpreting them.
//!
//! Cranelift needs a few hundred microseconds per block; a kernel boot compiles tens of
//! thousands. Done on the vCPU thread, that is seconds of stalls; done here, it overlaps with
//! execution on another core. The cost is that the moment a block turns compiled depends on
//! host timing, which changes nothing the guest can see (both tiers run the same semantics)
//! but does change how instructions split between tiers from run to run. Runs that must be
//! repeatable exactly compile synchronously instead ([`super::JitOptions::background`]).
//!
//! The hottest job is compiled first: the one whose block the vCPU has interpreted most often
//! since it was queued ([`Job::heat`], counted by the cache and published every eighth run), the newest among equals. With a
//! first-in-first-out queue, a short benchmark's hot loop waited behind the hundreds of
//! blocks its program's start-up had queued, interpreted all the while. Newest-first (session
//! 7) fixed that but starved old jobs that stayed hot: on the Debian boot the kernel's
//! `clear_page` (a REP STOSQ, one block run per iteration) ran 163 thousand times in the
//! interpreter while newer, colder blocks went first, and 3.6 M interpreted block runs in
//! all were of blocks already queued (0.5 M with synchronous compiles).
//!
//! The worker only sees copies: the decoded block and its [`ChainSlots`] (addresses that stay
//! valid as long as the cache, since each block's slots are boxed and the table is never
//! reallocated). The cache installs a result only if the block it was made for is still the
//! one under that id ([`Job::serial`]); code for a block dropped meanwhile is thrown away.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc::{channel, Receiver, TryRecvError};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{ChainSlots, Jit, JitError, JitOptions};
use crate::decode::DecodedBlock;

/// A block to compile.
pub struct Job {
    /// The cache's id of the block.
    pub id: u32,
    /// The block's serial number: ids are reused, serials never.
    pub serial: u64,
    /// What to compile.
    pub blocks: Vec<DecodedBlock>,
    /// Its exits' chaining information.
    pub chain: ChainSlots,
    /// The block's runs since it was queued, counted by the cache while it waits;
    /// [`CANCELLED`] once the block is gone.
    pub heat: Arc<AtomicU32>,
}

/// A job's heat once the cache dropped its block (a store into its page, a flush): the
/// worker answers it at once with [`JitError::Cancelled`], without compiling. It is the
/// greatest heat, so dead jobs leave the queue first.
pub const CANCELLED: u32 = u32::MAX;

/// A compiled block (or the reason it could not be).
pub struct Done {
    /// The job's id.
    pub id: u32,
    /// The job's serial.
    pub serial: u64,
    /// The machine code.
    pub result: Result<super::Compiled, JitError>,
    /// Time the worker spent on it.
    pub time: Duration,
    /// It was a region of several blocks.
    pub region: bool,
    /// It is quick code ([`super::ChainSlots::tier_up`]).
    pub quick: bool,
}

/// Jobs waiting for the worker, newest last.
#[derive(Default)]
struct Queue {
    jobs: Vec<Job>,
    /// The cache is gone: the worker ends.
    closed: bool,
}

impl Queue {
    /// Removes and returns the job run most often since it was queued, the newest of those.
    /// A scan: the queue is bounded (the cache's `MAX_IN_FLIGHT`), and a compile costs far more.
    fn take_hottest(&mut self) -> Option<Job> {
        let i = hottest(self.jobs.iter().map(|j| j.heat.load(Ordering::Relaxed)))?;
        Some(self.jobs.remove(i))
    }
}

/// The index of the greatest of `heats`, the last of equals (jobs are queued oldest first).
fn hottest(heats: impl Iterator<Item = u32>) -> Option<usize> {
    heats
        .enumerate()
        .max_by_key(|&(i, h)| (h, i))
        .map(|(i, _)| i)
}

/// The queue and the condition the worker waits on while it is empty.
type Shared = Arc<(Mutex<Queue>, Condvar)>;

/// The background compiler: send it [`Job`]s, collect [`Done`]s.
pub struct CompileWorker {
    queue: Shared,
    done: Receiver<Done>,
    thread: Option<JoinHandle<()>>,
    /// Set when the cache goes away: queued jobs are dropped, not compiled.
    stop: Arc<AtomicBool>,
    in_flight: usize,
}

impl CompileWorker {
    /// Starts the worker thread, with a compiler configured by `opts`.
    pub fn start(opts: JitOptions) -> Result<CompileWorker, JitError> {
        // Build the compiler here, so a host Cranelift cannot handle fails now, not later.
        let mut jit = Jit::new(opts)?;
        let queue: Shared = Arc::default();
        let (done_tx, done) = channel::<Done>();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let shared = queue.clone();
        let thread = std::thread::Builder::new()
            .name("crane86-jit".into())
            .spawn(move || loop {
                let job = {
                    let (lock, ready) = &*shared;
                    let mut q = lock.lock().unwrap_or_else(|e| e.into_inner());
                    loop {
                        if q.closed || stopped.load(Ordering::Relaxed) {
                            return;
                        }
                        if let Some(job) = q.take_hottest() {
                            break job;
                        }
                        q = ready.wait(q).unwrap_or_else(|e| e.into_inner());
                    }
                };
                let t0 = Instant::now();
                let result = if job.heat.load(Ordering::Relaxed) == CANCELLED {
                    Err(JitError::Cancelled)
                } else {
                    jit.compile_region(&job.blocks, job.chain)
                };
                let d = Done {
                    id: job.id,
                    serial: job.serial,
                    result,
                    time: t0.elapsed(),
                    region: job.blocks.len() > 1,
                    quick: job.chain.tier_up != 0,
                };
                if done_tx.send(d).is_err() {
                    return;
                }
            })
            .map_err(|e| JitError::Isa(format!("cannot start the compile thread: {e}")))?;
        Ok(CompileWorker {
            queue,
            done,
            thread: Some(thread),
            stop,
            in_flight: 0,
        })
    }

    /// Queues a block. False if the worker is gone (it panicked): compile synchronously then.
    pub fn submit(&mut self, job: Job) -> bool {
        if self.thread.as_ref().is_none_or(|t| t.is_finished()) {
            return false;
        }
        let (lock, ready) = &*self.queue;
        lock.lock()
            .unwrap_or_else(|e| e.into_inner())
            .jobs
            .push(job);
        ready.notify_one();
        self.in_flight += 1;
        true
    }

    /// The next finished block, if one is ready.
    pub fn poll(&mut self) -> Option<Done> {
        if self.in_flight == 0 {
            return None;
        }
        match self.done.try_recv() {
            Ok(d) => {
                self.in_flight -= 1;
                Some(d)
            }
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => {
                self.in_flight = 0;
                None
            }
        }
    }

    /// Blocks queued and not yet collected.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }
}

impl Drop for CompileWorker {
    fn drop(&mut self) {
        // The thread ends after the job at hand: queued ones are skipped.
        self.stop.store(true, Ordering::Relaxed);
        {
            let (lock, ready) = &*self.queue;
            lock.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
            ready.notify_one();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU32;
    use std::sync::Arc;

    use crane86_runtime::{BlockKey, CpuMode, CpuState};

    use super::{hottest, CompileWorker, Job, CANCELLED};
    use crate::jit::{ChainSlots, JitError, JitOptions};

    /// A cancelled job comes back as [`JitError::Cancelled`] without a compile; another
    /// one (here with nothing to compile) does not.
    #[test]
    fn a_cancelled_job_is_answered_without_compiling() {
        let mut w = CompileWorker::start(JitOptions::default()).unwrap();
        let chain = ChainSlots {
            slot_addr: [0; 3],
            token: [0; 3],
            key: BlockKey::new(0x1000, &CpuState::new(CpuMode::Long64)),
            jump_table: 0,
            epoch: 0,
            count: false,
            shims: Default::default(),
            runtime: 0,
            tier_up: 0,
            tier_up_runs: 1,
            jump_cache: 0,
            second_page: None,
        };
        for (id, heat) in [(1, CANCELLED), (2, 0)] {
            let job = Job {
                id,
                serial: u64::from(id),
                blocks: Vec::new(),
                chain,
                heat: Arc::new(AtomicU32::new(heat)),
            };
            assert!(w.submit(job));
            let done = loop {
                if let Some(d) = w.poll() {
                    break d;
                }
                std::thread::yield_now();
            };
            assert_eq!(done.id, id);
            let cancelled = matches!(done.result, Err(JitError::Cancelled));
            assert_eq!(cancelled, heat == CANCELLED, "job {id}");
        }
        assert_eq!(w.in_flight(), 0);
    }

    #[test]
    fn the_hottest_job_goes_first_and_the_newest_among_equals() {
        assert_eq!(hottest([].into_iter()), None);
        assert_eq!(hottest([0, 0, 0].into_iter()), Some(2));
        assert_eq!(hottest([7, 0, 3].into_iter()), Some(0));
        assert_eq!(hottest([1, 9, 9, 2].into_iter()), Some(2));
    }
}
