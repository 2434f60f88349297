//! One way to run a domain job off the window's thread: a named thread, a cancel flag,
//! `Progress | Done(Result)` events on a channel, the window's waker after each, and
//! cancel-and-join when the handle is dropped. Test-set classification, worst images,
//! training, retraining, sweeps and model loading and saving all run as a [`Job`]; the engine
//! run has its own richer protocol (`Worker`), built the same way.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, TryRecvError, channel};
use std::thread::JoinHandle;

/// The callback that asks the window for a repaint.
pub type Wake = Arc<dyn Fn() + Send + Sync>;

/// What a job tells its owner.
#[derive(Debug)]
pub enum JobEvent<P, T> {
    Progress(P),
    /// The job's end: its result, or its error as one line.
    Done(Result<T, String>),
}

/// What the job's function gets: a way to report progress and to see a cancel.
pub struct JobCtx<P, T> {
    tx: Sender<JobEvent<P, T>>,
    cancel: Arc<AtomicBool>,
    wake: Wake,
}

impl<P, T> JobCtx<P, T> {
    /// Sends `p` and wakes the window; false once the job is cancelled or nobody listens,
    /// so the function can stop.
    pub fn progress(&self, p: P) -> bool {
        let is_heard = self.tx.send(JobEvent::Progress(p)).is_ok();
        (self.wake)();
        is_heard && !self.is_cancelled()
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    /// The flag itself, for the long loops of the core that poll one.
    pub fn cancel_flag(&self) -> &AtomicBool {
        &self.cancel
    }
}

/// The owner's handle. Dropping it cancels the job and waits for its thread.
pub struct Job<P, T> {
    name: String,
    rx: Receiver<JobEvent<P, T>>,
    cancel: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl<P: Send + 'static, T: Send + 'static> Job<P, T> {
    /// Runs `f` on a thread named `backwork-<name>`, below the window's priority by `nice`;
    /// its result becomes the `Done` event. Fails only when no thread can be started.
    pub fn spawn<F>(name: &str, nice: i32, wake: Wake, f: F) -> Result<Self, String>
    where
        F: FnOnce(&JobCtx<P, T>) -> Result<T, String> + Send + 'static,
    {
        let (tx, rx) = channel();
        let cancel = Arc::new(AtomicBool::new(false));
        let ctx = JobCtx {
            tx,
            cancel: cancel.clone(),
            wake,
        };
        let thread = std::thread::Builder::new()
            .name(format!("backwork-{name}"))
            .spawn(move || {
                crate::util::lower_thread_priority(nice);
                let result = f(&ctx);
                let _ = ctx.tx.send(JobEvent::Done(result));
                (ctx.wake)();
            })
            .map_err(|e| format!("could not start the {name} thread: {e}"))?;
        Ok(Self {
            name: name.to_string(),
            rx,
            cancel,
            thread: Some(thread),
        })
    }
}

impl<P, T> Job<P, T> {
    /// Every event sent since the last call, in order. After `Done` the thread is joined.
    pub fn poll(&mut self) -> Vec<JobEvent<P, T>> {
        let mut out = Vec::new();
        loop {
            match self.rx.try_recv() {
                Ok(ev) => {
                    let is_done = matches!(ev, JobEvent::Done(_));
                    out.push(ev);
                    if is_done {
                        self.join();
                        break;
                    }
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    // The thread ended without a Done: it panicked.
                    if self.thread.is_some() {
                        self.join();
                        out.push(JobEvent::Done(Err(format!("the {} job failed", self.name))));
                    }
                    break;
                }
            }
        }
        out
    }

    /// Asks the job to stop; it still ends with a `Done`.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    /// Whether its thread has not yet been seen to end.
    pub fn is_running(&self) -> bool {
        self.thread.is_some()
    }

    fn join(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl<P, T> Drop for Job<P, T> {
    fn drop(&mut self) {
        self.cancel();
        self.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_wake() -> Wake {
        Arc::new(|| {})
    }

    fn wait_done<P, T>(job: &mut Job<P, T>) -> (Vec<P>, Result<T, String>) {
        let mut progress = Vec::new();
        loop {
            for ev in job.poll() {
                match ev {
                    JobEvent::Progress(p) => progress.push(p),
                    JobEvent::Done(r) => return (progress, r),
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    #[test]
    fn a_job_reports_progress_in_order_then_its_result_and_its_thread_ends() {
        let mut job = Job::spawn("test", 0, no_wake(), |ctx: &JobCtx<usize, &str>| {
            for i in 0..5 {
                ctx.progress(i);
            }
            Ok("done")
        })
        .unwrap();
        let (p, r) = wait_done(&mut job);
        assert_eq!(p, vec![0, 1, 2, 3, 4]);
        assert_eq!(r, Ok("done"));
        assert!(!job.is_running());
    }

    #[test]
    fn cancel_stops_a_job_that_polls_and_drop_joins_it() {
        let ran = Arc::new(AtomicBool::new(false));
        let seen = ran.clone();
        let mut job = Job::spawn("test", 0, no_wake(), move |ctx: &JobCtx<(), ()>| {
            while !ctx.is_cancelled() {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            seen.store(true, Ordering::Relaxed);
            Err("cancelled".into())
        })
        .unwrap();
        job.cancel();
        let (_, r) = wait_done(&mut job);
        assert_eq!(r, Err("cancelled".to_string()));
        assert!(ran.load(Ordering::Relaxed));
        // Dropping a running job cancels and joins it: the loop ends, so drop returns.
        let job2 = Job::spawn("test", 0, no_wake(), |ctx: &JobCtx<(), ()>| {
            while !ctx.is_cancelled() {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            Ok(())
        })
        .unwrap();
        drop(job2);
    }

    #[test]
    fn a_job_that_panics_ends_with_an_error_naming_it() {
        #[allow(clippy::panic)]
        let mut job =
            Job::spawn("boom", 0, no_wake(), |_: &JobCtx<(), ()>| panic!("inside")).unwrap();
        let (_, r) = wait_done(&mut job);
        assert_eq!(r, Err("the boom job failed".to_string()));
    }
}
