//! Resource limits: what a challenge asks for ([`Limits`], zero = the server's default) and
//! what its runs get ([`ResolvedLimits`]: defaults filled in, then bounded by the server's
//! caps). Resolution happens once, in [`Limits::resolve`]; the field list lives in
//! [`Limits::entries`] and [`Limits::from_values`], so no other code walks the fields.

use serde::{Deserialize, Serialize};

use crate::units::{ByteSize, HumanDuration, format_bytes, format_duration};

/// Resource limits. Zero means "the server's default"; every value is checked against the
/// server's caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Wall time before our timer kills the run.
    pub wall_time: HumanDuration,
    /// RAM + tmpfs; no swap.
    pub memory_bytes: ByteSize,
    /// CPU in thousandths of a core.
    pub cpu_millis: u32,
    /// Processes and threads.
    pub pids: u32,
    /// Everything under /output.
    pub output_bytes: ByteSize,
    /// /tmp.
    pub scratch_bytes: ByteSize,
    /// GPUs.
    pub gpus: u32,
    /// Submitted archive, compressed.
    pub archive_bytes: ByteSize,
    /// Submitted archive, extracted.
    pub extracted_bytes: ByteSize,
    /// stdout + stderr kept per run.
    pub log_bytes: ByteSize,
    /// Runs of this challenge at once.
    pub concurrency: u32,
}

/// How a limit's value reads in a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Millis,
    Bytes,
    Count,
}

impl Unit {
    fn show(self, v: u128) -> String {
        match self {
            Unit::Millis => format_duration(std::time::Duration::from_millis(v as u64)),
            Unit::Bytes => format_bytes(v as u64),
            Unit::Count => v.to_string(),
        }
    }
}

/// Number of fields of [`Limits`].
const FIELDS: usize = 11;

impl Limits {
    /// Every field as (name, value, unit), in declaration order.
    fn entries(&self) -> [(&'static str, u128, Unit); FIELDS] {
        [
            ("wall_time", self.wall_time.0.as_millis(), Unit::Millis),
            ("memory_bytes", self.memory_bytes.0.into(), Unit::Bytes),
            ("cpu_millis", self.cpu_millis.into(), Unit::Count),
            ("pids", self.pids.into(), Unit::Count),
            ("output_bytes", self.output_bytes.0.into(), Unit::Bytes),
            ("scratch_bytes", self.scratch_bytes.0.into(), Unit::Bytes),
            ("gpus", self.gpus.into(), Unit::Count),
            ("archive_bytes", self.archive_bytes.0.into(), Unit::Bytes),
            (
                "extracted_bytes",
                self.extracted_bytes.0.into(),
                Unit::Bytes,
            ),
            ("log_bytes", self.log_bytes.0.into(), Unit::Bytes),
            ("concurrency", self.concurrency.into(), Unit::Count),
        ]
    }

    /// The limits with these values, in the order of [`Limits::entries`].
    fn from_values(v: [u128; FIELDS]) -> Limits {
        let u32_of = |x: u128| x.min(u32::MAX as u128) as u32;
        let u64_of = |x: u128| x.min(u64::MAX as u128) as u64;
        Limits {
            wall_time: HumanDuration(std::time::Duration::from_millis(u64_of(v[0]))),
            memory_bytes: ByteSize(u64_of(v[1])),
            cpu_millis: u32_of(v[2]),
            pids: u32_of(v[3]),
            output_bytes: ByteSize(u64_of(v[4])),
            scratch_bytes: ByteSize(u64_of(v[5])),
            gpus: u32_of(v[6]),
            archive_bytes: ByteSize(u64_of(v[7])),
            extracted_bytes: ByteSize(u64_of(v[8])),
            log_bytes: ByteSize(u64_of(v[9])),
            concurrency: u32_of(v[10]),
        }
    }

    /// Field by field, `f(self's value, other's value)`.
    fn combine(&self, other: &Limits, f: impl Fn(u128, u128) -> u128) -> Limits {
        let (a, b) = (self.entries(), other.entries());
        Limits::from_values(std::array::from_fn(|i| f(a[i].1, b[i].1)))
    }

    /// Each zero field replaced by the default's value.
    pub fn or_defaults(&self, defaults: &Limits) -> Limits {
        self.combine(defaults, |v, d| if v == 0 { d } else { v })
    }

    /// What a run of this challenge gets: the server's defaults where this says 0, each
    /// bounded by the server's caps (a challenge stored before the caps were lowered gets
    /// the new caps, never more).
    pub fn resolve(&self, defaults: &Limits, caps: &Limits) -> ResolvedLimits {
        ResolvedLimits(
            self.or_defaults(defaults)
                .combine(caps, |v, cap| v.min(cap)),
        )
    }

    /// The names of fields above `caps`, with both values, for a validation message.
    pub fn over_caps(&self, caps: &Limits) -> Vec<String> {
        self.entries()
            .iter()
            .zip(caps.entries())
            .filter(|((_, v, _), (_, cap, _))| v > cap)
            .map(|((name, v, unit), (_, cap, _))| {
                format!(
                    "limits.{name} {} is over the server's cap of {}",
                    unit.show(*v),
                    unit.show(cap)
                )
            })
            .collect()
    }
}

/// A challenge's limits as its runs get them: made only by [`Limits::resolve`], so a
/// holder knows no field is zero-for-default or over a cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResolvedLimits(Limits);

impl std::ops::Deref for ResolvedLimits {
    type Target = Limits;

    fn deref(&self) -> &Limits {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limits(wall_s: u64, memory: u64, pids: u32) -> Limits {
        Limits {
            wall_time: HumanDuration(Duration::from_secs(wall_s)),
            memory_bytes: ByteSize(memory),
            pids,
            ..Limits::default()
        }
    }

    #[test]
    fn resolution_fills_zeros_from_the_defaults_and_bounds_by_the_caps() {
        let asked = limits(0, 8 << 30, 16);
        let defaults = limits(60, 1 << 30, 64);
        let caps = limits(600, 4 << 30, 1024);
        let r = asked.resolve(&defaults, &caps);
        assert_eq!(r.wall_time.0, Duration::from_secs(60));
        assert_eq!(r.memory_bytes.0, 4 << 30);
        assert_eq!(r.pids, 16);
    }

    #[test]
    fn fields_over_the_caps_are_each_named_with_both_values() {
        let over = limits(7200, 8 << 30, 1).over_caps(&limits(3600, 4 << 30, 10));
        assert_eq!(
            over,
            [
                "limits.wall_time 7200s is over the server's cap of 3600s",
                "limits.memory_bytes 8 GiB is over the server's cap of 4 GiB"
            ]
        );
    }

    #[test]
    fn the_field_list_round_trips() {
        let l = Limits {
            wall_time: HumanDuration(Duration::from_millis(1500)),
            memory_bytes: ByteSize(1),
            cpu_millis: 2,
            pids: 3,
            output_bytes: ByteSize(4),
            scratch_bytes: ByteSize(5),
            gpus: 6,
            archive_bytes: ByteSize(7),
            extracted_bytes: ByteSize(8),
            log_bytes: ByteSize(9),
            concurrency: 10,
        };
        assert_eq!(Limits::from_values(l.entries().map(|e| e.1)), l);
    }
}
