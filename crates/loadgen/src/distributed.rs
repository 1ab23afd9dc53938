//! Load split across generators (`--shard`, `--start-at`, `--out-dir`).
//!
//! Every shard runs the same command line and takes its own part of one
//! generator's load, so the union of the shards is exactly what a single
//! generator with those flags would do:
//!
//! - open loop: the global schedule is computed in full by every shard
//!   (arrival `k` at its time, request id `k`, payload `k`; Poisson gaps
//!   from the one seeded process) and shard `INDEX` of `COUNT` keeps the
//!   arrivals with `k % COUNT == INDEX`;
//! - closed loop: `-c` is split (`C / COUNT` workers, the first `C % COUNT`
//!   shards one more) and the ids are strided: a shard's `j`-th request is
//!   id `j * COUNT + INDEX`, so with `-n N` the shards together issue every
//!   id below `N` once.
//!
//! `--start-at` names a wall-clock instant every shard waits for; the open
//! loop's intended starts are measured from it, so a shard that starts late
//! pays its lateness in latency instead of shifting its schedule (no
//! coordinated omission). Shards on different machines agree on that
//! instant only as well as their clocks do (NTP: typically well under a
//! millisecond). These are the shards of the *load*; the thread-per-core
//! [`crate::shards`] are something else.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The environment variable a Kubernetes Indexed Job sets to the pod's
/// completion index; `--shard COUNT` reads INDEX from it.
pub const SHARD_INDEX_VAR: &str = "JOB_COMPLETION_INDEX";
/// Most shards one load may be split into.
pub(crate) const MAX_SHARDS: u32 = 1024;
/// How far ahead `--start-at` may be: a start further off is a wrong date
/// or time zone far more often than a plan.
pub(crate) const MAX_START_AHEAD: Duration = Duration::from_secs(24 * 3600);
/// How far in the past `--start-at` may be when the run is checked.
pub(crate) const MAX_START_BEHIND: Duration = Duration::from_secs(1);
/// A shard starting later than this after `--start-at` says so on stderr.
pub(crate) const LATE_START_WARNING_MS: f64 = 10.0;

const SHARD_FORMS: &str =
    "--shard takes INDEX/COUNT (e.g. 0/4) or COUNT alone with INDEX from JOB_COMPLETION_INDEX; COUNT is 1..=1024, INDEX 0..COUNT";
const START_FORMS: &str =
    "--start-at takes RFC 3339 (2026-12-02T10:00:00Z, 2026-12-02T10:00:00.250+01:00) or Unix seconds (1764669600.25)";

/// One generator's part of a load split `count` ways.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This shard, `0..count`.
    pub index: u32,
    /// How many shards share the load, `1..=1024`.
    pub count: u32,
}

impl Shard {
    /// The whole load: one shard of one.
    pub(crate) const WHOLE: Shard = Shard { index: 0, count: 1 };

    /// `self` if `count` is 1..=1024 and `index` below it.
    pub(crate) fn check(self) -> Result<Self, String> {
        if !(1..=MAX_SHARDS).contains(&self.count) {
            return Err(format!(
                "--shard {}/{}: the shard count must be 1..={MAX_SHARDS}",
                self.index, self.count
            ));
        }
        if self.index >= self.count {
            return Err(format!(
                "--shard {}/{}: the index must be below the count, 0..={}",
                self.index,
                self.count,
                self.count - 1
            ));
        }
        Ok(self)
    }

    /// Whether global arrival (or request id) `k` is this shard's.
    pub(crate) fn keeps(self, k: u64) -> bool {
        k % u64::from(self.count) == u64::from(self.index)
    }

    /// This shard's part of `total` things dealt round-robin: the ids below
    /// `total` it keeps, or its workers of `total` (the first
    /// `total % count` shards get one more).
    pub(crate) fn share(self, total: u64) -> u64 {
        let count = u64::from(self.count);
        total / count + u64::from(u64::from(self.index) < total % count)
    }

    /// The id of this shard's `j`-th closed-loop request.
    pub(crate) fn request_id(self, j: u64) -> u64 {
        j.saturating_mul(u64::from(self.count))
            .saturating_add(u64::from(self.index))
    }
}

/// `--shard` as given: INDEX/COUNT, or COUNT with the index still to be read
/// from [`SHARD_INDEX_VAR`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardArg {
    /// INDEX, when given on the command line.
    pub index: Option<u32>,
    /// COUNT.
    pub count: u32,
}

/// Parses `INDEX/COUNT` or `COUNT`.
pub fn parse_shard(text: &str) -> Result<ShardArg, String> {
    let number = |part: &str| {
        part.trim()
            .parse::<u32>()
            .map_err(|_| format!("{text:?} is not a shard; {SHARD_FORMS}"))
    };
    let arg = match text.split_once('/') {
        Some((index, count)) => ShardArg {
            index: Some(number(index)?),
            count: number(count)?,
        },
        None => ShardArg {
            index: None,
            count: number(text)?,
        },
    };
    if !(1..=MAX_SHARDS).contains(&arg.count) {
        return Err(format!(
            "{text:?} is out of range; the shard count must be 1..={MAX_SHARDS}"
        ));
    }
    if let Some(index) = arg.index {
        Shard {
            index,
            count: arg.count,
        }
        .check()?;
    }
    Ok(arg)
}

impl ShardArg {
    /// The shard, INDEX from the command line or else from `index_var` (the
    /// value of [`SHARD_INDEX_VAR`], `None` when unset).
    pub fn resolve(self, index_var: Option<&OsStr>) -> Result<Shard, String> {
        let count = self.count;
        let index = match (self.index, index_var) {
            (Some(index), _) => index,
            (None, None) => {
                return Err(format!(
                    "--shard {count} takes the index from {SHARD_INDEX_VAR} (set by a Kubernetes Indexed Job), which is not set; give --shard INDEX/{count} instead"
                ))
            }
            (None, Some(value)) => {
                let text = value.to_string_lossy();
                let index: u32 = text.trim().parse().map_err(|_| {
                    format!(
                        "--shard {count}: {SHARD_INDEX_VAR}={text:?} is not a whole number; it must be the shard index, 0..={}",
                        count - 1
                    )
                })?;
                if index >= count {
                    return Err(format!(
                        "--shard {count}: {SHARD_INDEX_VAR}={index} is not below the shard count; it must be 0..={}",
                        count - 1
                    ));
                }
                index
            }
        };
        Shard { index, count }.check()
    }
}

/// Parses `--start-at`: RFC 3339 (`2026-12-02T10:00:00Z`,
/// `2026-12-02T10:00:00.250+01:00`; `t`, `z` or a space as RFC 3339
/// allows) or Unix seconds with an optional fraction (`1764669600.25`).
/// Fractions finer than a nanosecond are dropped.
pub fn parse_start_at(text: &str) -> Result<SystemTime, String> {
    let trimmed = text.trim();
    let unix_ns = if trimmed.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        parse_unix_seconds(trimmed)
    } else {
        parse_rfc3339(trimmed)
    }
    .map_err(|why| format!("{text:?} is not a time ({why}); {START_FORMS}"))?;
    if unix_ns < 0 {
        return Err(format!("{text:?} is before 1970; {START_FORMS}"));
    }
    let seconds = u64::try_from(unix_ns / 1_000_000_000).unwrap_or(u64::MAX);
    let nanos = u32::try_from(unix_ns % 1_000_000_000).unwrap_or(0);
    UNIX_EPOCH
        .checked_add(Duration::new(seconds, nanos))
        .ok_or_else(|| format!("{text:?} is too far in the future; {START_FORMS}"))
}

/// `SECONDS[.FRACTION]` as nanoseconds since the epoch.
fn parse_unix_seconds(text: &str) -> Result<i128, String> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() || fraction.contains('.') {
        return Err("expected whole seconds, then an optional fraction".into());
    }
    // 11 digits reach the year 5138; more are a typo (milliseconds instead
    // of seconds, say).
    if whole.len() > 11 {
        return Err("too many digits for Unix seconds (milliseconds?)".into());
    }
    let seconds: i128 = whole.parse().map_err(|_| "bad seconds".to_owned())?;
    Ok(seconds * 1_000_000_000 + fraction_ns(fraction)?)
}

/// Digits after a decimal point as nanoseconds (beyond 9 digits dropped).
fn fraction_ns(digits: &str) -> Result<i128, String> {
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err("the fraction of a second must be digits".into());
    }
    let kept = &digits[..digits.len().min(9)];
    let mut ns: i128 = 0;
    for b in kept.bytes() {
        ns = ns * 10 + i128::from(b - b'0');
    }
    Ok(ns * 10_i128.pow(9 - u32::try_from(kept.len()).unwrap_or(9)))
}

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM)` as nanoseconds since the
/// epoch.
pub(crate) fn parse_rfc3339(text: &str) -> Result<i128, String> {
    let b = text.as_bytes();
    let digits = |from: usize, len: usize| -> Result<i64, String> {
        let part = b
            .get(from..from + len)
            .filter(|p| p.iter().all(u8::is_ascii_digit))
            .ok_or_else(|| "expected YYYY-MM-DDTHH:MM:SS and a zone".to_owned())?;
        Ok(part.iter().fold(0_i64, |n, d| n * 10 + i64::from(d - b'0')))
    };
    let separators_ok = b.len() >= 20
        && b[4] == b'-'
        && b[7] == b'-'
        && matches!(b[10], b'T' | b't' | b' ')
        && b[13] == b':'
        && b[16] == b':';
    if !separators_ok {
        return Err("expected YYYY-MM-DDTHH:MM:SS and a zone".into());
    }
    let (year, month, day) = (digits(0, 4)?, digits(5, 2)?, digits(8, 2)?);
    let (hour, minute, second) = (digits(11, 2)?, digits(14, 2)?, digits(17, 2)?);
    if !(1..=12).contains(&month) {
        return Err(format!("month {month} is not 1..=12"));
    }
    let month_days = match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if !(1..=month_days).contains(&day) {
        return Err(format!(
            "day {day} is not 1..={month_days} in month {month}"
        ));
    }
    if hour > 23 || minute > 59 || second > 59 {
        return Err(format!(
            "{hour:02}:{minute:02}:{second:02} is not a time of day (00:00:00 to 23:59:59; no leap seconds)"
        ));
    }
    let mut rest = &text[19..];
    let mut fraction = 0;
    if let Some(after_point) = rest.strip_prefix('.') {
        let end = after_point
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(after_point.len());
        if end == 0 {
            return Err("a decimal point needs digits after it".into());
        }
        fraction = fraction_ns(&after_point[..end])?;
        rest = &after_point[end..];
    }
    let offset_s: i64 = match rest.as_bytes() {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let zone = [*h1, *h2, *m1, *m2];
            if !zone.iter().all(u8::is_ascii_digit) {
                return Err(format!("bad zone offset {rest:?}"));
            }
            let hours = i64::from(zone[0] - b'0') * 10 + i64::from(zone[1] - b'0');
            let minutes = i64::from(zone[2] - b'0') * 10 + i64::from(zone[3] - b'0');
            if hours > 23 || minutes > 59 {
                return Err(format!("bad zone offset {rest:?}"));
            }
            let offset = hours * 3600 + minutes * 60;
            if *sign == b'+' {
                offset
            } else {
                -offset
            }
        }
        _ => {
            return Err(format!(
                "the zone must be Z or +HH:MM / -HH:MM, not {rest:?}"
            ))
        }
    };
    let days = days_from_civil(year, month, day);
    let local_s = days * 86_400 + hour * 3600 + minute * 60 + second;
    // 10:00+01:00 is 09:00Z: the offset is subtracted.
    Ok(i128::from(local_s - offset_s) * 1_000_000_000 + fraction)
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Milliseconds since the Unix epoch (negative before it).
pub(crate) fn unix_ms(at: SystemTime) -> f64 {
    match at.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64() * 1000.0,
        Err(e) => -e.duration().as_secs_f64() * 1000.0,
    }
}

/// `start_at` if it is at most [`MAX_START_AHEAD`] after `now` and at most
/// [`MAX_START_BEHIND`] before it.
pub(crate) fn check_start_at(start_at: SystemTime, now: SystemTime) -> Result<SystemTime, String> {
    match start_at.duration_since(now) {
        Ok(ahead) if ahead > MAX_START_AHEAD => Err(format!(
            "--start-at is {:.1} h ahead; it may be at most 24 h ahead (a wrong date or time zone?)",
            ahead.as_secs_f64() / 3600.0
        )),
        Ok(_) => Ok(start_at),
        // A start in the past would make every request overdue at once
        // (the open loop sends them together; every latency counts from
        // the past). A second of slack lets shards started together by a
        // scheduler take a moment to come up.
        Err(e) if e.duration() > MAX_START_BEHIND => Err(format!(
            "--start-at is {:.3} s in the past; give a time from now to 24 h ahead (the same for every shard, e.g. a minute from now)",
            e.duration().as_secs_f64()
        )),
        Err(_) => Ok(start_at),
    }
}

/// Waits until `start` and returns the instant the load starts (at or just
/// after `start`; at once when `start` is past). It reads tokio's clock, so
/// a test with paused time steps over the wait.
pub(crate) async fn wait_until(start: Instant) -> Instant {
    tokio::time::sleep_until(start.into()).await;
    tokio::time::Instant::now().into_std()
}

/// `later - earlier` in milliseconds, negative when `later` is earlier.
pub(crate) fn signed_ms(later: Instant, earlier: Instant) -> f64 {
    match later.checked_duration_since(earlier) {
        Some(d) => d.as_secs_f64() * 1000.0,
        None => -(earlier - later).as_secs_f64() * 1000.0,
    }
}

/// How a shard's load takes a late start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LateStart {
    /// Open loop: intended starts stay on the schedule from `--start-at`.
    OpenLoop,
    /// Closed loop with `-z`: it still stops at `--start-at` + `-z`.
    ClosedForDuration,
    /// Closed loop with `-n` only: its requests come that much later.
    ClosedForCount,
}

/// What a shard that started `skew_ms` after `--start-at` tells its user,
/// when that is more than [`LATE_START_WARNING_MS`].
pub(crate) fn late_start_warning(skew_ms: f64, load: LateStart) -> Option<String> {
    (skew_ms > LATE_START_WARNING_MS).then(|| {
        let effect = match load {
            LateStart::OpenLoop => {
                "its latencies include that lateness (intended starts are measured from --start-at)"
            }
            LateStart::ClosedForDuration => {
                "its closed loop lost that much of -z (it still stops at --start-at + -z)"
            }
            LateStart::ClosedForCount => {
                "its closed loop runs that much later than shards that started on time"
            }
        };
        format!("started {skew_ms:.1} ms after --start-at; {effect}")
    })
}

/// The files of `--out-dir DIR`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutDir {
    dir: PathBuf,
}

impl OutDir {
    /// The per-request log's name in an output directory.
    pub(crate) const LOG: &'static str = "log.csv";
    /// The summary's name in an output directory.
    pub(crate) const SUMMARY: &'static str = "summary.json";

    /// The files of `dir` (nothing is created yet).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// Creates the directory (and its parents); an existing one is used as
    /// it is, as a mounted volume would be.
    pub fn create(&self) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `DIR/log.csv`.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join(Self::LOG)
    }

    /// `DIR/summary.json`.
    pub fn summary_path(&self) -> PathBuf {
        self.dir.join(Self::SUMMARY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unix_s(text: &str) -> f64 {
        unix_ms(parse_start_at(text).unwrap()) / 1000.0
    }

    #[test]
    fn shards_parse_with_or_without_an_index() {
        assert_eq!(
            parse_shard("1/4"),
            Ok(ShardArg {
                index: Some(1),
                count: 4
            })
        );
        assert_eq!(
            parse_shard("4"),
            Ok(ShardArg {
                index: None,
                count: 4
            })
        );
        assert!(parse_shard("x/4").unwrap_err().contains("INDEX/COUNT"));
        assert!(parse_shard("1/").unwrap_err().contains("INDEX/COUNT"));
        assert!(parse_shard("-1/4").unwrap_err().contains("INDEX/COUNT"));
        assert!(parse_shard("0").unwrap_err().contains("1..=1024"));
        assert!(parse_shard("0/1025").unwrap_err().contains("1..=1024"));
        assert!(parse_shard("4/4")
            .unwrap_err()
            .contains("index must be below the count, 0..=3"));
        assert!(parse_shard("0/1024").is_ok());
    }

    #[test]
    fn the_index_comes_from_the_indexed_job() {
        let arg = parse_shard("4").unwrap();
        assert_eq!(
            arg.resolve(Some(OsStr::new("3"))),
            Ok(Shard { index: 3, count: 4 })
        );
        assert!(arg
            .resolve(None)
            .unwrap_err()
            .contains("JOB_COMPLETION_INDEX (set by a Kubernetes Indexed Job), which is not set"));
        assert!(arg
            .resolve(Some(OsStr::new("two")))
            .unwrap_err()
            .contains("JOB_COMPLETION_INDEX=\"two\" is not a whole number"));
        assert!(arg
            .resolve(Some(OsStr::new("4")))
            .unwrap_err()
            .contains("0..=3"));
        // An index on the command line wins over the environment.
        assert_eq!(
            parse_shard("1/4").unwrap().resolve(Some(OsStr::new("3"))),
            Ok(Shard { index: 1, count: 4 })
        );
    }

    #[test]
    fn shares_deal_round_robin() {
        let shards = |count| (0..count).map(move |index| Shard { index, count });
        // -c 10 over 4 shards: 3, 3, 2, 2.
        let workers: Vec<u64> = shards(4).map(|s| s.share(10)).collect();
        assert_eq!(workers, [3, 3, 2, 2]);
        for n in [0, 1, 7, 100, 101] {
            for count in [1, 3, 4, 7] {
                let total: u64 = shards(count).map(|s| s.share(n)).sum();
                assert_eq!(total, n);
                for s in shards(count) {
                    let kept = (0..n).filter(|&k| s.keeps(k)).count() as u64;
                    assert_eq!(kept, s.share(n), "{s:?} of {n}");
                }
            }
        }
        let s = Shard { index: 2, count: 4 };
        assert_eq!(
            (0..3).map(|j| s.request_id(j)).collect::<Vec<_>>(),
            [2, 6, 10]
        );
        assert_eq!(Shard::WHOLE.request_id(5), 5);
    }

    #[test]
    fn start_times_parse_as_rfc3339_or_unix_seconds() {
        assert_eq!(unix_s("2025-12-02T10:00:00Z"), 1_764_669_600.0);
        assert_eq!(unix_s("2025-12-02T11:00:00.250+01:00"), 1_764_669_600.25);
        assert_eq!(unix_s("2025-12-02t05:30:00.25-04:30"), 1_764_669_600.25);
        assert_eq!(unix_s("2025-12-02 10:00:00z"), 1_764_669_600.0);
        assert_eq!(unix_s("1764669600.25"), 1_764_669_600.25);
        assert_eq!(unix_s("1764669600"), 1_764_669_600.0);
        assert_eq!(unix_s("1970-01-01T00:00:00Z"), 0.0);
        assert_eq!(unix_s("2000-03-01T00:00:00Z"), 951_868_800.0);
        assert_eq!(unix_s("2024-02-29T00:00:00Z"), 1_709_164_800.0);
        // Nanoseconds are kept, finer digits dropped.
        let t = parse_start_at("1764669600.123456789999").unwrap();
        assert_eq!(
            t.duration_since(UNIX_EPOCH).unwrap().subsec_nanos(),
            123_456_789
        );
        for bad in [
            "",
            "tomorrow",
            "2025-12-02T10:00:00",
            "2025-12-02",
            "2025-13-02T10:00:00Z",
            "2025-02-29T10:00:00Z",
            "2025-12-02T24:00:00Z",
            "2025-12-02T10:00:60Z",
            "2025-12-02T10:00:00.Z",
            "2025-12-02T10:00:00+0100",
            "2025-12-02T10:00:00+25:00",
            "1764669600.25.5",
            ".5",
            "1764669600250",
            "-1764669600",
            "1969-12-31T23:59:59Z",
        ] {
            let e = parse_start_at(bad).unwrap_err();
            assert!(e.contains("--start-at takes RFC 3339"), "{bad}: {e}");
        }
        assert!(parse_start_at("2025-02-29T10:00:00Z")
            .unwrap_err()
            .contains("day 29 is not 1..=28"));
    }

    #[test]
    fn a_start_more_than_a_day_ahead_or_a_second_behind_is_refused() {
        let now = UNIX_EPOCH + Duration::from_secs(1_764_669_600);
        let day = Duration::from_secs(24 * 3600);
        assert!(check_start_at(now + day, now).is_ok());
        assert!(check_start_at(now - Duration::from_millis(900), now).is_ok());
        assert!(check_start_at(now - day * 3, now)
            .unwrap_err()
            .contains("--start-at is 259200.000 s in the past; give a time from now"));
        assert!(check_start_at(now - Duration::from_millis(1500), now)
            .unwrap_err()
            .contains("1.500 s in the past"));
        assert!(check_start_at(now + day + Duration::from_secs(60), now)
            .unwrap_err()
            .contains("--start-at is 24.0 h ahead; it may be at most 24 h ahead"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_shard_waits_for_its_start_and_measures_its_lateness() {
        let now = tokio::time::Instant::now().into_std();
        // Ahead: the wait ends on time (tokio's timer rounds up to 1 ms).
        let start = now + Duration::from_secs(3600);
        let started = wait_until(start).await;
        let skew_ms = signed_ms(started, start);
        assert!((0.0..=1.0).contains(&skew_ms), "{skew_ms}");
        assert_eq!(late_start_warning(skew_ms, LateStart::OpenLoop), None);
        // Past: it starts at once, as late as the start was past.
        let now = tokio::time::Instant::now().into_std();
        let start = now - Duration::from_secs(1);
        let skew_ms = signed_ms(wait_until(start).await, start);
        assert!((skew_ms - 1000.0).abs() < 1e-6, "{skew_ms}");
        let warning = late_start_warning(skew_ms, LateStart::OpenLoop).unwrap();
        assert!(warning.contains("1000.0 ms after --start-at"), "{warning}");
        assert!(warning.contains("latencies include"), "{warning}");
        assert!(signed_ms(start, now) < 0.0);
        let closed = late_start_warning(skew_ms, LateStart::ClosedForDuration).unwrap();
        assert!(closed.contains("stops at --start-at + -z"), "{closed}");
        assert!(late_start_warning(10.5, LateStart::ClosedForCount).is_some());
        assert!(late_start_warning(9.5, LateStart::ClosedForCount).is_none());
    }
}
