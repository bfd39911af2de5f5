//! The one rule for a moment in time as podshim stores and sends it: seconds and nanoseconds
//! since the Unix epoch, as protobuf's `Timestamp` and containerd have it. A clock before the
//! epoch reads as the epoch. Each crate converts it to its protobuf type at its edge.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Stored as `{"secs":…,"nanos":…}` in the daemons' records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Timestamp {
    pub secs: i64,
    pub nanos: i32,
}

impl Timestamp {
    pub fn now() -> Self {
        Self::from(SystemTime::now())
    }
}

impl From<SystemTime> for Timestamp {
    fn from(t: SystemTime) -> Self {
        let d = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        Timestamp {
            secs: d.as_secs() as i64,
            nanos: d.subsec_nanos() as i32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_and_nanos_since_the_epoch() {
        let t = UNIX_EPOCH + Duration::new(1_796_320_000, 123_456_789);
        assert_eq!(
            Timestamp::from(t),
            Timestamp {
                secs: 1_796_320_000,
                nanos: 123_456_789
            }
        );
        assert_eq!(
            Timestamp::from(UNIX_EPOCH - Duration::from_secs(5)),
            Timestamp::default()
        );
    }

    #[test]
    fn stored_as_the_daemons_always_stored_it() {
        let t = Timestamp { secs: 7, nanos: 9 };
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, r#"{"secs":7,"nanos":9}"#);
        assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), t);
    }
}
