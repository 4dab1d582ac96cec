//! [`WakeFlag`] and [`TaskFlag`]: the two flags that keep wake-ups cheap without losing any.

use super::{AtomicBool, Ordering};

/// Whether a wake-up of the poller is already on its way: `notify` writes the eventfd only
/// when it [`arm`](WakeFlag::arm)s the flag, and the loop [`reset`](WakeFlag::reset)s it
/// each time its wait returns.
///
/// The reset is a read-modify-write (a swap), not a store: when a notifier finds the flag
/// still armed and skips the eventfd, the loop's reset reads that notifier's swap, and so
/// sees everything the notifier did before it (the call it queued), and its next look at
/// the queues finds the call. With a plain store nothing orders the loop after such a
/// notifier, and the memory model lets the loop miss the call and wait with no wake-up
/// coming. (x86 and ARMv8 do not reorder this in practice, and loom, which lets every
/// read-modify-write read the newest store, cannot show it either; the swap costs nothing
/// next to the `epoll_wait` it follows.)
// (The portable backend's own poller does this itself: only epoll and loom use it.)
#[cfg_attr(all(feature = "portable-poller", not(loom)), allow(dead_code))]
pub(crate) struct WakeFlag(AtomicBool);

#[cfg_attr(all(feature = "portable-poller", not(loom)), allow(dead_code))]
impl WakeFlag {
    pub(crate) fn new() -> WakeFlag {
        WakeFlag(AtomicBool::new(false))
    }

    /// Arms the flag; true if it was not armed, and so the caller must deliver the wake-up.
    pub(crate) fn arm(&self) -> bool {
        !self.0.swap(true, Ordering::AcqRel)
    }

    /// The wait returned: a notify from now on must deliver a wake-up again.
    pub(crate) fn reset(&self) {
        self.0.swap(false, Ordering::AcqRel);
    }
}

/// Whether a task is queued to be polled: a wake queues it once, however many wakes
/// follow, until the loop [`clear`](TaskFlag::clear)s the flag, which it does *before*
/// polling, so a wake that comes during the poll queues the task again.
pub(crate) struct TaskFlag(AtomicBool);

impl TaskFlag {
    /// A flag for a task that is queued already (a new task is polled once at the start).
    pub(crate) fn queued() -> TaskFlag {
        TaskFlag(AtomicBool::new(true))
    }

    /// A wake: true if the task was not queued, and so the caller must queue it.
    pub(crate) fn wake(&self) -> bool {
        !self.0.swap(true, Ordering::AcqRel)
    }

    /// The loop is about to poll the task. A swap, not a store, for the reason
    /// [`WakeFlag::reset`] is one: a wake that found the task still queued (and so queued
    /// nothing) must be seen by this poll, and reading that wake's swap is what orders the
    /// poll after whatever the waker did first. With a store, loom finds the lost wake-up
    /// (`loom_models::a_wake_during_a_poll_is_never_lost`).
    pub(crate) fn clear(&self) {
        self.0.swap(false, Ordering::AcqRel);
    }
}
