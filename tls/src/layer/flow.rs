//! The plaintext flow-control state of a TLS transport: whether its protocol should pause
//! producing, and what it was told. The rules are the reactor's (a pause someone observed
//! through `is_writing_paused` is always followed by a resume; an unobserved burst that
//! drained before anyone was told is not reported), applied to "the transport is above its
//! mark", which the layer computes from its own plaintext queue and the transport under it.

/// What the protocol is to be told.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Notice {
    pub(crate) pause: bool,
    pub(crate) resume: bool,
}

#[derive(Debug, Default)]
pub(crate) struct Flow {
    /// Above the mark now.
    paused: bool,
    /// Someone saw `paused` through `is_writing_paused`.
    observed: bool,
    /// What the protocol was last told: `pause_writing` (true) or `resume_writing`.
    told_paused: bool,
    /// A delivery is scheduled.
    scheduled: bool,
}

impl Flow {
    /// The transport is (or is not) above its mark now. Returns whether a delivery must be
    /// scheduled.
    pub(crate) fn set(&mut self, paused: bool) -> bool {
        self.paused = paused;
        let due = self.paused != self.told_paused || (self.observed && !self.told_paused);
        let schedule = due && !self.scheduled;
        if schedule {
            self.scheduled = true;
        }
        schedule
    }

    /// `is_writing_paused`: the state now; if paused, the protocol is sure to hear
    /// `pause_writing` and later `resume_writing`.
    pub(crate) fn observe(&mut self) -> bool {
        if self.paused {
            self.observed = true;
        }
        self.paused
    }

    /// What to tell the protocol now, so that what it was told last matches the state.
    pub(crate) fn take(&mut self) -> Notice {
        self.scheduled = false;
        let pause = !self.told_paused && (self.paused || self.observed);
        let resume = (pause || self.told_paused) && !self.paused;
        self.observed = false;
        self.told_paused = self.paused;
        Notice { pause, resume }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pause_then_resume() {
        let mut f = Flow::default();
        assert!(f.set(true));
        assert!(!f.set(true), "already scheduled");
        assert_eq!(
            f.take(),
            Notice {
                pause: true,
                resume: false
            }
        );
        assert!(f.set(false));
        assert_eq!(
            f.take(),
            Notice {
                pause: false,
                resume: true
            }
        );
        assert_eq!(f.take(), Notice::default());
    }

    #[test]
    fn an_observed_pause_gets_its_resume() {
        let mut f = Flow::default();
        assert!(f.set(true));
        assert!(f.observe());
        let _ = f.set(false);
        assert_eq!(
            f.take(),
            Notice {
                pause: true,
                resume: true
            }
        );
    }

    #[test]
    fn an_unobserved_burst_is_not_reported() {
        let mut f = Flow::default();
        assert!(f.set(true));
        let _ = f.set(false);
        assert_eq!(f.take(), Notice::default());
    }
}
