//! [`PoolQueue`]: the thread pool's handoff between the reactor thread and its workers.

use std::collections::VecDeque;

use super::{Condvar, Mutex, lock};

struct Queue<J> {
    jobs: VecDeque<J>,
    /// Workers waiting for a job.
    idle: usize,
    stopping: bool,
}

/// Jobs in submission order, the number of idle workers, and the stop flag, behind one
/// lock; workers wait on the condition variable while there is nothing to do.
pub(crate) struct PoolQueue<J> {
    queue: Mutex<Queue<J>>,
    available: Condvar,
}

impl<J> PoolQueue<J> {
    pub(crate) fn new() -> PoolQueue<J> {
        PoolQueue {
            queue: Mutex::new(Queue {
                jobs: VecDeque::new(),
                idle: 0,
                stopping: false,
            }),
            available: Condvar::new(),
        }
    }

    /// Queues `job` and wakes an idle worker. Returns whether more jobs wait than workers
    /// are idle (so another worker would help).
    pub(crate) fn push(&self, job: J) -> bool {
        let wants_worker = {
            let mut q = lock(&self.queue);
            q.jobs.push_back(job);
            q.jobs.len() > q.idle
        };
        self.available.notify_one();
        wants_worker
    }

    /// Takes back the job queued last (no worker could be started to run it).
    pub(crate) fn pop_last(&self) -> Option<J> {
        lock(&self.queue).jobs.pop_back()
    }

    /// A worker's next job: waits while there is none; `None` once stopping with none left.
    pub(crate) fn next(&self) -> Option<J> {
        let mut q = lock(&self.queue);
        loop {
            if let Some(job) = q.jobs.pop_front() {
                return Some(job);
            }
            if q.stopping {
                return None;
            }
            q.idle += 1;
            q = self.available.wait(q).unwrap_or_else(|p| p.into_inner());
            q.idle -= 1;
        }
    }

    /// Workers finish the queued jobs, then `next` returns `None`; `false` starts over.
    pub(crate) fn set_stopping(&self, stopping: bool) {
        lock(&self.queue).stopping = stopping;
        if stopping {
            self.available.notify_all();
        }
    }
}
