//! The classic small services, each a [`Protocol`] with its RFC's behaviour (Twisted's
//! `twisted.protocols.wire`, corrected where Twisted is wrong).
//!
//! | Protocol | RFC | Port | Behaviour |
//! | --- | --- | --- | --- |
//! | [`Echo`] | 862 | 7 | sends back every byte; pauses reading while the peer does not read |
//! | [`Discard`] | 863 | 9 | throws every byte away |
//! | [`Chargen`] | 864 | 19 | sends the rotating 72-character lines until the peer closes; pauses while the peer does not read |
//! | [`Daytime`] | 867 | 13 | sends the date and time as a line of text, then closes |
//! | [`Time`] | 868 | 37 | sends the time as 32-bit big-endian seconds since 1900-01-01, then closes |
//! | [`Qotd`] | 865 | 17 | sends a quote, then closes |
//!
//! Twisted's `Time` sends Unix time (seconds since 1970) and its `Chargen` repeats one
//! fixed 71-byte pattern; these follow the RFCs. Every service closes once the peer has
//! half-closed and what is owed has been sent.
//!
//! ```
//! use torsion_protocols::services::{Echo, Qotd};
//! use torsion_reactor::{Protocol, testing::StringTransport};
//!
//! let t = StringTransport::new();
//! let mut echo = Echo::new();
//! echo.connection_made(&t.transport());
//! echo.data_received(&t.transport(), b"ping");
//! assert_eq!(t.written(), b"ping");
//!
//! let t = StringTransport::new();
//! Qotd::new("Simple is better.").connection_made(&t.transport());
//! assert_eq!(t.written(), b"Simple is better.\r\n");
//! assert!(t.lose_connection_called());
//! ```

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use torsion_reactor::{Protocol, Scheduler, SchedulerExt, Transport};

/// Echo (RFC 862): sends back everything it receives.
///
/// Flow control: when the write buffer passes its high-water mark (the peer sends but
/// does not read its echoes), reading is paused until the buffer drains, so such a peer
/// cannot grow the server's memory past the marks. After the peer half-closes, what was
/// received is echoed, then the connection closes.
#[derive(Debug, Default, Clone, Copy)]
pub struct Echo;

impl Echo {
    /// An echo protocol.
    pub fn new() -> Echo {
        Echo
    }
}

impl Protocol for Echo {
    fn data_received(&mut self, transport: &Transport, data: &[u8]) {
        transport.write(data);
    }

    fn pause_writing(&mut self, transport: &Transport) {
        transport.pause_reading();
    }

    fn resume_writing(&mut self, transport: &Transport) {
        transport.resume_reading();
    }
}

/// Discard (RFC 863): throws away everything it receives and sends nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct Discard;

impl Discard {
    /// A discard protocol.
    pub fn new() -> Discard {
        Discard
    }
}

impl Protocol for Discard {
    fn data_received(&mut self, _transport: &Transport, _data: &[u8]) {}
}

/// Characters per chargen line, without the `\r\n`.
pub const CHARGEN_LINE: usize = 72;
/// Lines written per turn of the loop: about 4.6 KiB.
pub const CHARGEN_LINES_PER_CHUNK: usize = 64;
/// Bytes written per turn of the loop.
pub const CHARGEN_CHUNK: usize = CHARGEN_LINES_PER_CHUNK * (CHARGEN_LINE + 2);

/// The 95 printable ASCII characters, space to `~`, in order.
const PRINTABLE: usize = 95;

/// Line `n` of the chargen stream (RFC 864): 72 printable characters starting at the
/// `n`th one (wrapping around after `~`), then `\r\n`.
///
/// ```
/// use torsion_protocols::services::chargen_line;
/// assert_eq!(&chargen_line(0)[..10], b" !\"#$%&'()");
/// assert_eq!(&chargen_line(1)[..3], b"!\"#");
/// assert!(chargen_line(0).ends_with(b"efg\r\n"));
/// assert_eq!(chargen_line(95), chargen_line(0));
/// ```
pub fn chargen_line(n: usize) -> [u8; CHARGEN_LINE + 2] {
    let mut line = [0u8; CHARGEN_LINE + 2];
    for (i, byte) in line[..CHARGEN_LINE].iter_mut().enumerate() {
        *byte = b' ' + ((n + i) % PRINTABLE) as u8;
    }
    line[CHARGEN_LINE] = b'\r';
    line[CHARGEN_LINE + 1] = b'\n';
    line
}

struct ChargenState {
    scheduler: Rc<dyn Scheduler>,
    interval: Duration,
    transport: RefCell<Option<Transport>>,
    next_line: Cell<usize>,
    paused: Cell<bool>,
    scheduled: Cell<bool>,
    done: Cell<bool>,
}

impl ChargenState {
    fn schedule(self: &Rc<Self>) {
        if self.scheduled.get() || self.paused.get() || self.done.get() {
            return;
        }
        self.scheduled.set(true);
        let me = Rc::downgrade(self);
        self.scheduler.call_later(self.interval, move || {
            if let Some(me) = me.upgrade() {
                me.scheduled.set(false);
                me.produce();
            }
        });
    }

    /// Writes one chunk, then comes back on the next turn unless paused.
    fn produce(self: &Rc<Self>) {
        if self.paused.get() || self.done.get() {
            return;
        }
        let Some(transport) = self.transport.borrow().clone() else {
            return;
        };
        if transport.is_closing() {
            self.done.set(true);
            return;
        }
        let first = self.next_line.get();
        let mut chunk = Vec::with_capacity(CHARGEN_CHUNK);
        for n in first..first + CHARGEN_LINES_PER_CHUNK {
            chunk.extend_from_slice(&chargen_line(n));
        }
        self.next_line
            .set((first + CHARGEN_LINES_PER_CHUNK) % PRINTABLE);
        if transport.try_write_bytes(chunk.into()).is_err() {
            self.done.set(true);
            return;
        }
        self.schedule();
    }
}

/// Character generator (RFC 864): sends lines of 72 printable characters, each starting
/// one character further along the 95 printable ASCII characters than the one before,
/// until the peer closes; what the peer sends is thrown away.
///
/// It produces one chunk ([`CHARGEN_CHUNK`] bytes) per turn of the loop, through the
/// scheduler (`call_later(Duration::ZERO)`: on the reactor such a call runs on the next
/// turn, after I/O), never in a tight loop: other connections run in between. On
/// `pause_writing` (the peer is not reading) it stops producing, and on `resume_writing`
/// it goes on where it stopped, so its write buffer never holds more than the high-water
/// mark plus one chunk.
///
/// ```
/// use std::rc::Rc;
/// use std::time::Duration;
/// use torsion_protocols::services::{CHARGEN_CHUNK, Chargen, chargen_line};
/// use torsion_reactor::{Clock, Protocol, testing::StringTransport};
///
/// // A `Clock` runs zero-delay chains within one `advance`: give each turn a length.
/// let clock = Clock::new();
/// let turn = Duration::from_millis(1);
/// let t = StringTransport::new();
/// let mut p = Chargen::with_interval(Rc::new(clock.clone()), turn);
/// p.connection_made(&t.transport());
/// clock.advance(turn); // one turn: one chunk
/// assert_eq!(t.written().len(), CHARGEN_CHUNK);
/// assert_eq!(&t.written()[..74], chargen_line(0));
/// p.pause_writing(&t.transport());
/// clock.advance(Duration::from_secs(1));
/// assert_eq!(t.written().len(), CHARGEN_CHUNK); // paused: nothing more
/// p.resume_writing(&t.transport());
/// clock.advance(turn);
/// assert_eq!(t.written().len(), CHARGEN_CHUNK * 2);
/// assert_eq!(&t.written()[CHARGEN_CHUNK..][..74], chargen_line(64)); // where it stopped
/// ```
pub struct Chargen {
    state: Rc<ChargenState>,
}

impl Chargen {
    /// A chargen protocol that produces on `scheduler`'s turns (the reactor, or a
    /// `Clock` in tests).
    pub fn new(scheduler: Rc<dyn Scheduler>) -> Chargen {
        Chargen::with_interval(scheduler, Duration::ZERO)
    }

    /// Produces a chunk every `interval` instead of every turn: for a `Clock`, which runs
    /// zero-delay calls scheduled by zero-delay calls within the same `advance`, or to
    /// send more slowly.
    pub fn with_interval(scheduler: Rc<dyn Scheduler>, interval: Duration) -> Chargen {
        Chargen {
            state: Rc::new(ChargenState {
                scheduler,
                interval,
                transport: RefCell::new(None),
                next_line: Cell::new(0),
                paused: Cell::new(false),
                scheduled: Cell::new(false),
                done: Cell::new(false),
            }),
        }
    }
}

impl Protocol for Chargen {
    fn connection_made(&mut self, transport: &Transport) {
        *self.state.transport.borrow_mut() = Some(transport.clone());
        self.state.schedule();
    }

    fn data_received(&mut self, _transport: &Transport, _data: &[u8]) {}

    fn connection_lost(&mut self, _reason: &torsion_reactor::ConnectionLost) {
        self.state.done.set(true);
        self.state.transport.borrow_mut().take();
    }

    fn pause_writing(&mut self, _transport: &Transport) {
        self.state.paused.set(true);
    }

    fn resume_writing(&mut self, _transport: &Transport) {
        self.state.paused.set(false);
        self.state.schedule();
    }
}

impl std::fmt::Debug for Chargen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chargen")
            .field("next_line", &self.state.next_line.get())
            .field("paused", &self.state.paused.get())
            .finish()
    }
}

/// Where a service reads the time: the system clock, or a fixed time in tests.
#[derive(Debug, Clone, Copy)]
enum Now {
    System,
    Fixed(SystemTime),
}

impl Now {
    fn get(self) -> SystemTime {
        match self {
            Now::System => SystemTime::now(),
            Now::Fixed(t) => t,
        }
    }
}

const DAYS: [&str; 7] = [
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
];
const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// The civil date (year, month 1–12, day 1–31) of a count of days since 1970-01-01
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Formats `time` the way the daytime service sends it, in UTC, in the style of RFC 867's
/// example (`Weekday, Month Day, Year HH:MM:SS-Zone`).
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use torsion_protocols::services::format_daytime;
/// let t = UNIX_EPOCH + Duration::from_secs(383_247_463);
/// assert_eq!(format_daytime(t), "Monday, February 22, 1982 17:37:43-UTC");
/// ```
pub fn format_daytime(time: SystemTime) -> String {
    let secs = match time.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX / 2),
    };
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let weekday = DAYS[days.rem_euclid(7) as usize];
    let month_name = MONTHS[(month - 1) as usize];
    format!(
        "{weekday}, {month_name} {day}, {year} {:02}:{:02}:{:02}-UTC",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Daytime (RFC 867): sends the current date and time as one line of text (see
/// [`format_daytime`]; UTC), then closes.
#[derive(Debug, Clone, Copy)]
pub struct Daytime {
    now: Now,
}

impl Default for Daytime {
    fn default() -> Self {
        Daytime::new()
    }
}

impl Daytime {
    /// Tells the system clock's time.
    pub fn new() -> Daytime {
        Daytime { now: Now::System }
    }

    /// Always tells `time` (for tests).
    pub fn at(time: SystemTime) -> Daytime {
        Daytime {
            now: Now::Fixed(time),
        }
    }
}

impl Protocol for Daytime {
    fn connection_made(&mut self, transport: &Transport) {
        let line = format!("{}\r\n", format_daytime(self.now.get()));
        transport.write(line.as_bytes());
        transport.lose_connection();
    }

    fn data_received(&mut self, _transport: &Transport, _data: &[u8]) {}
}

/// Seconds from 1900-01-01 (RFC 868's epoch) to 1970-01-01.
pub const SECONDS_1900_TO_1970: u64 = 2_208_988_800;

/// The RFC 868 time of `time`: seconds since 1900-01-01 00:00 UTC, modulo 2³² (the
/// 32-bit count wraps in February 2036, as the RFC's clients expect).
///
/// ```
/// use std::time::UNIX_EPOCH;
/// use torsion_protocols::services::rfc868_time;
/// assert_eq!(rfc868_time(UNIX_EPOCH), 2_208_988_800);
/// ```
pub fn rfc868_time(time: SystemTime) -> u32 {
    let since_1970 = match time.duration_since(UNIX_EPOCH) {
        Ok(d) => i128::from(d.as_secs()),
        Err(e) => -i128::from(e.duration().as_secs()),
    };
    let since_1900 = since_1970 + i128::from(SECONDS_1900_TO_1970);
    since_1900.rem_euclid(1 << 32) as u32
}

/// Time (RFC 868): sends the time as a 32-bit big-endian count of seconds since
/// 1900-01-01 00:00 UTC (see [`rfc868_time`]), then closes.
#[derive(Debug, Clone, Copy)]
pub struct Time {
    now: Now,
}

impl Default for Time {
    fn default() -> Self {
        Time::new()
    }
}

impl Time {
    /// Tells the system clock's time.
    pub fn new() -> Time {
        Time { now: Now::System }
    }

    /// Always tells `time` (for tests).
    pub fn at(time: SystemTime) -> Time {
        Time {
            now: Now::Fixed(time),
        }
    }
}

impl Protocol for Time {
    fn connection_made(&mut self, transport: &Transport) {
        transport.write(&rfc868_time(self.now.get()).to_be_bytes());
        transport.lose_connection();
    }

    fn data_received(&mut self, _transport: &Transport, _data: &[u8]) {}
}

/// The quote [`Qotd::default`] sends (Twisted's).
pub const DEFAULT_QUOTE: &str = "An apple a day keeps the doctor away.";

/// Quote of the day (RFC 865): sends a quote, then closes. The RFC asks for fewer than
/// 512 characters of ASCII text; a quote without its own line ending gets `\r\n`.
#[derive(Debug, Clone)]
pub struct Qotd {
    quote: Rc<str>,
}

impl Default for Qotd {
    fn default() -> Self {
        Qotd::new(DEFAULT_QUOTE)
    }
}

impl Qotd {
    /// Sends `quote`.
    pub fn new(quote: &str) -> Qotd {
        let quote = if quote.ends_with('\n') {
            quote.to_string()
        } else {
            format!("{quote}\r\n")
        };
        Qotd {
            quote: quote.into(),
        }
    }
}

impl Protocol for Qotd {
    fn connection_made(&mut self, transport: &Transport) {
        transport.write(self.quote.as_bytes());
        transport.lose_connection();
    }

    fn data_received(&mut self, _transport: &Transport, _data: &[u8]) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        let t = UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        assert_eq!(
            format_daytime(t),
            "Wednesday, November 18, 2026 11:06:40-UTC"
        );
        let before = UNIX_EPOCH - Duration::from_secs(1);
        assert_eq!(
            format_daytime(before),
            "Wednesday, December 31, 1969 23:59:59-UTC"
        );
    }

    #[test]
    fn time_wraps_in_2036() {
        // 2036-02-07 06:28:16 UTC is 2^32 seconds after 1900.
        let wrap = UNIX_EPOCH + Duration::from_secs((1u64 << 32) - SECONDS_1900_TO_1970);
        assert_eq!(rfc868_time(wrap), 0);
        assert_eq!(rfc868_time(wrap - Duration::from_secs(1)), u32::MAX);
    }

    #[test]
    fn chargen_lines_rotate_through_the_printable_characters() {
        let all: Vec<u8> = (0..PRINTABLE).flat_map(chargen_line).collect();
        for (n, line) in all.chunks(74).enumerate() {
            assert_eq!(line[0], b' ' + n as u8);
            assert!(line[..72].iter().all(|b| (b' '..=b'~').contains(b)));
            assert_eq!(&line[72..], b"\r\n");
        }
        assert_eq!(&chargen_line(94)[..2], b"~ ");
    }
}
