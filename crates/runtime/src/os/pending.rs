//! Signals pending at the failure come back pending, each with its whole `siginfo`, in
//! queue order (every queued instance of a real-time signal).
//!
//! Process-directed ones are taken out of the queue by the coordinator at the save
//! (`sigtimedwait`) and queued again with `rt_sigqueueinfo` at the resume, before any thread
//! runs. Signals pending for one thread (`pthread_kill`, `raise`, `pthread_sigqueue`, timers
//! aimed at a thread) can only be dequeued by that thread: the coordinator asks each stopped
//! thread with such signals to take them (`Stopped::take_signals`) and the resume queues them
//! again for the thread with `rt_tgsigqueueinfo`. A signal the program sent itself names the
//! sender's pid: when the pid changed (no pid namespace) it names the new one.

use super::sigev_thread;
use crate::signals::{FAIL_SIGNAL, STOP_SIGNAL};
use crate::sys::{self, SigInfo};
use crate::sys::{SI_ASYNCIO, SI_MESGQ, SI_USER, SIGALRM, SIGPROF, SIGVTALRM};
use crate::sys::{
    SI_KERNEL, SI_QUEUE, SI_TIMER, SI_TKILL, SIGCHLD, SIGEV_THREAD_ID, SIGKILL, SIGSTOP,
};
use zhuque_image::Meta;
use zhuque_image::os::{Pending, PosixTimer, TAG_PENDING};

fn wanted() -> u64 {
    !(sys::sig_bit(SIGKILL)
        | sys::sig_bit(SIGSTOP)
        | sys::sig_bit(FAIL_SIGNAL)
        | sys::sig_bit(STOP_SIGNAL))
}

/// The pending signals a save took off the queues (see `timers::settle`).
pub struct Taken {
    pending: Pending,
    /// Kernel ids of the timers whose expiry signals were among them.
    pub timer_ids: Vec<i32>,
    /// Signals taken from the process's queue (and the coordinator's own).
    pub signals: u64,
}

/// Takes the process-directed pending signals off the queue (each with its `siginfo`), and
/// the coordinator's own: expiries of `SIGEV_THREAD` timers become due notifications there
/// (`sigev_thread`), never pending signals. Then every stopped thread takes its own pending
/// signals (the shared queue is empty by then, so they are the thread's).
pub fn take(stopped: &crate::threads::stop::Stopped, timers: &[PosixTimer]) -> Taken {
    let mut t = Taken {
        pending: Pending::default(),
        timer_ids: Vec::new(),
        signals: 0,
    };
    while let Ok(info) = sys::sigtimedwait_now(wanted()) {
        t.take_process(info);
        if t.pending.process.len() > 1 << 16 {
            break;
        }
    }
    let pid = sys::getpid();
    for (tid, infos) in stopped.take_signals(wanted()) {
        let mut own = Vec::new();
        for info in infos {
            if process_directed(&info, timers, pid) {
                t.take_process(info);
            } else {
                if info.code == SI_TIMER {
                    t.timer_ids.push(info.timer());
                }
                own.push(info.as_bytes().to_vec());
            }
        }
        if !own.is_empty() {
            t.pending.threads.push((tid, own));
        }
    }
    t
}

/// Whether a signal a stopped thread took can only have been aimed at the process. The
/// process's queue was empty when the threads took theirs, and no program thread could
/// send a signal since it stopped: whatever came in meanwhile came from a timer aimed at the
/// process, an interval timer, a child or another process, and a thread may have taken it
/// (a thread dequeues the process's signals too).
fn process_directed(info: &SigInfo, timers: &[PosixTimer], pid: i32) -> bool {
    let sender = info.pid;
    match info.code {
        SI_TIMER => timers
            .iter()
            .find(|p| p.id == info.timer())
            .is_some_and(|p| p.notify & SIGEV_THREAD_ID == 0),
        SI_KERNEL => matches!(info.signo, SIGALRM | SIGVTALRM | SIGPROF),
        SI_USER | SI_QUEUE => sender != 0 && sender != pid,
        SI_MESGQ | SI_ASYNCIO => true,
        code => code > 0 && info.signo == SIGCHLD,
    }
}

impl Taken {
    /// A signal taken off the process's queue (or aimed at it, see [`process_directed`]).
    fn take_process(&mut self, info: SigInfo) {
        if info.code == SI_TIMER {
            self.timer_ids.push(info.timer());
        }
        if info.signo == sigev_thread::SIGTIMER {
            // glibc's reserved signal: only the runtime's timers send it to the process.
            sigev_thread::expired(&info);
            return;
        }
        self.signals |= sys::sig_bit(info.signo);
        self.pending.process.push(info.as_bytes().to_vec());
    }
}

impl Taken {
    /// A process-directed signal the kernel generated after the queue was read.
    pub fn add_process_signal(&mut self, info: SigInfo) {
        self.signals |= sys::sig_bit(info.signo);
        self.pending.process.push(info.as_bytes().to_vec());
    }

    /// A signal for thread `tid` generated after its queue was read.
    pub fn add_thread_signal(&mut self, tid: i32, info: SigInfo) {
        let bytes = info.as_bytes().to_vec();
        match self.pending.threads.iter_mut().find(|(t, _)| *t == tid) {
            Some((_, infos)) => infos.push(bytes),
            None => self.pending.threads.push((tid, vec![bytes])),
        }
    }

    pub fn save(self, meta: &mut Meta) {
        meta.set_section(TAG_PENDING, self.pending.encode());
    }
}

fn load(meta: &Meta) -> Option<Pending> {
    let bytes = meta.section(TAG_PENDING)?;
    match Pending::decode(bytes) {
        Ok(p) => Some(p),
        Err(_) => {
            crate::diag::refuse(crate::diag::Line::new().str("image: invalid pending signals"))
        }
    }
}

/// Queues the process-directed signals again (resume, dispositions restored, all blocked).
pub fn restore_process(meta: &Meta) {
    let Some(p) = load(meta) else { return };
    let pid = sys::getpid();
    for info in &p.process {
        let Some(info) = as_siginfo(info, meta.pid, pid) else {
            continue;
        };
        let sig = info.signo;
        if let Err(e) = sys::rt_sigqueueinfo(pid, sig, &info) {
            lost(sig, e);
        }
    }
}

/// Queues thread-directed pending signals again (resume, threads created and still held),
/// for each thread at its id in this process.
pub fn restore_threads(meta: &Meta) {
    let Some(p) = load(meta) else { return };
    let pid = sys::getpid();
    for (saved, infos) in &p.threads {
        let Some(tid) = crate::process::get().current_tid(*saved) else {
            continue;
        };
        for info in infos {
            let Some(info) = as_siginfo(info, meta.pid, pid) else {
                continue;
            };
            let sig = info.signo;
            if let Err(e) = sys::rt_tgsigqueueinfo(pid, tid, sig, &info) {
                lost(sig, e);
            }
        }
    }
}

fn lost(sig: i32, e: sys::Errno) {
    crate::diag::Line::new()
        .str("warning: pending signal ")
        .num(sig as u64)
        .str(" is lost: errno ")
        .num(e.0 as u64)
        .emit();
}

/// A saved siginfo, ready to queue in this process: a signal the saved process sent itself
/// names this process as the sender (glibc's cancellation handler, for one, checks that).
fn as_siginfo(bytes: &[u8], saved_pid: i32, pid: i32) -> Option<SigInfo> {
    let mut info = SigInfo::from_bytes(bytes)?;
    if matches!(info.code, SI_USER | SI_QUEUE | SI_TKILL) && info.pid == saved_pid {
        info.pid = pid;
    }
    Some(info)
}
