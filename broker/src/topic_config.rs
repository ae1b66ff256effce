//! Kafka topic configs Strata knows, in one table ([`KNOWN`]: key, default, type, validation,
//! documentation), and the effective values a partition enforces. Handlers spell keys through
//! this module and never keep lists of their own. Keys not listed here are refused, so a user
//! is never told a config is set when nothing would honour it. No I/O.

use protocol::model::TopicInfo;
use protocol::range_rpc::MAX_APPEND_BYTES;

/// `cleanup.policy`: `delete`, `compact` or both.
pub const CLEANUP_POLICY: &str = "cleanup.policy";
/// `max.message.bytes`: the largest record batch a partition accepts.
pub const MAX_MESSAGE_BYTES: &str = "max.message.bytes";
/// `message.timestamp.type`: `CreateTime` or `LogAppendTime`.
pub const MESSAGE_TIMESTAMP_TYPE: &str = "message.timestamp.type";
/// `retention.bytes`: size-based retention per partition.
pub const RETENTION_BYTES: &str = "retention.bytes";
/// `retention.ms`: time-based retention.
pub const RETENTION_MS: &str = "retention.ms";
/// `min.insync.replicas`: stored and reported only.
pub const MIN_INSYNC_REPLICAS: &str = "min.insync.replicas";

/// The type Kafka reports for a config (DescribeConfigs v3+ `config_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    String,
    Int,
    Long,
    List,
}

impl ConfigType {
    /// Kafka's wire code for this type.
    pub fn code(self) -> i8 {
        match self {
            ConfigType::String => 2,
            ConfigType::Int => 3,
            ConfigType::Long => 5,
            ConfigType::List => 7,
        }
    }
}

/// What a value must look like.
#[derive(Debug, Clone, Copy)]
pub enum Check {
    /// An integer no smaller than this.
    AtLeast(i64),
    /// An integer in this range (inclusive); `why` says where the upper bound comes from.
    Between {
        min: i64,
        max: i64,
        why: &'static str,
    },
    /// One of `values`; `said` is how the error message lists them.
    OneOf {
        values: &'static [&'static str],
        said: &'static str,
    },
    /// A non-empty comma-separated list of `values`.
    ListOf {
        values: &'static [&'static str],
        said: &'static str,
    },
}

/// One topic config Strata knows.
#[derive(Debug, Clone, Copy)]
pub struct ConfigKey {
    pub key: &'static str,
    pub default: &'static str,
    /// False: the value is stored and reported but has no effect yet.
    pub enforced: bool,
    pub kind: ConfigType,
    pub check: Check,
    pub doc: &'static str,
}

/// The configs a topic may set, in the order DescribeConfigs and CreateTopics report them.
pub const KNOWN: &[ConfigKey] = &[
    ConfigKey {
        key: CLEANUP_POLICY,
        default: "delete",
        enforced: true,
        kind: ConfigType::List,
        check: Check::ListOf {
            values: &["delete", "compact"],
            said: "delete, compact or both",
        },
        doc: "delete: old records are removed by retention; compact: kept as given (no compaction yet)",
    },
    ConfigKey {
        key: MAX_MESSAGE_BYTES,
        default: "1048588",
        enforced: true,
        kind: ConfigType::Int,
        check: Check::Between {
            min: 0,
            max: MAX_APPEND_BYTES as i64,
            why: "the most one stream append carries",
        },
        doc: "largest record batch a partition accepts",
    },
    ConfigKey {
        key: MESSAGE_TIMESTAMP_TYPE,
        default: "CreateTime",
        enforced: true,
        kind: ConfigType::String,
        check: Check::OneOf {
            values: &["CreateTime", "LogAppendTime"],
            said: "CreateTime or LogAppendTime",
        },
        doc: "LogAppendTime: the broker stamps each batch with its append time",
    },
    ConfigKey {
        key: RETENTION_BYTES,
        default: "-1",
        enforced: true,
        kind: ConfigType::Long,
        check: Check::AtLeast(-1),
        doc: "bytes a partition keeps before trimming its oldest records; -1: no limit",
    },
    ConfigKey {
        key: RETENTION_MS,
        default: "604800000",
        enforced: true,
        kind: ConfigType::Long,
        check: Check::AtLeast(-1),
        doc: "how long records are kept; -1: forever",
    },
    ConfigKey {
        key: MIN_INSYNC_REPLICAS,
        default: "1",
        enforced: false,
        kind: ConfigType::Int,
        check: Check::AtLeast(1),
        doc: "stored and reported, not enforced: every write waits for the stream's ack count",
    },
];

/// The table entry of `key`, if Strata knows it.
pub fn spec(key: &str) -> Option<&'static ConfigKey> {
    KNOWN.iter().find(|c| c.key == key)
}

/// The table entry of `key`, or the error that refuses it.
pub fn known(key: &str) -> Result<&'static ConfigKey, String> {
    spec(key).ok_or_else(|| format!("topic config {key} is not supported by Strata"))
}

pub fn default_of(key: &str) -> Option<&'static str> {
    spec(key).map(|c| c.default)
}

/// Checks one `key=value` pair; the error says what is wrong.
pub fn validate(key: &str, value: &str) -> Result<(), String> {
    let spec = known(key)?;
    let bad = |said: &str| Err(format!("{key} must be {said}, not {value:?}"));
    match spec.check {
        Check::AtLeast(min) => match value.trim().parse::<i64>() {
            Ok(v) if v >= min => Ok(()),
            _ => bad(&format!("an integer >= {min}")),
        },
        Check::Between { min, max, why } => match value.trim().parse::<i64>() {
            Ok(v) if (min..=max).contains(&v) => Ok(()),
            _ => bad(&format!("an integer from {min} to {max} ({why})")),
        },
        Check::OneOf { values, said } => match values.contains(&value) {
            true => Ok(()),
            false => bad(said),
        },
        Check::ListOf { values, said } => {
            match !value.is_empty() && value.split(',').all(|p| values.contains(&p.trim())) {
                true => Ok(()),
                false => bad(said),
            }
        }
    }
}

/// The values a partition of `topic` enforces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicConfig {
    pub retention_ms: i64,
    pub retention_bytes: i64,
    pub max_message_bytes: usize,
    pub log_append_time: bool,
    pub delete_policy: bool,
}

impl TopicConfig {
    pub fn of(topic: &TopicInfo) -> TopicConfig {
        let get = |key: &str| topic.config(key).or_else(|| default_of(key)).unwrap_or("");
        // A stored value that does not parse counts as the default.
        let long = |key: &str| {
            let parse = |v: &str| v.trim().parse::<i64>().ok();
            parse(get(key))
                .or_else(|| default_of(key).and_then(parse))
                .unwrap_or(0)
        };
        TopicConfig {
            retention_ms: long(RETENTION_MS),
            retention_bytes: long(RETENTION_BYTES),
            max_message_bytes: long(MAX_MESSAGE_BYTES).max(0) as usize,
            log_append_time: get(MESSAGE_TIMESTAMP_TYPE) == "LogAppendTime",
            delete_policy: get(CLEANUP_POLICY).split(',').any(|p| p.trim() == "delete"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        assert!(validate("retention.ms", "-1").is_ok());
        assert!(validate("retention.ms", "abc").is_err());
        assert!(validate("cleanup.policy", "compact,delete").is_ok());
        assert!(validate("cleanup.policy", "compact,nope").is_err());
        assert!(validate("message.timestamp.type", "LogAppendTime").is_ok());
        assert!(validate("segment.bytes", "1").is_err());
        assert_eq!(
            validate("cleanup.policy", "nope"),
            Err("cleanup.policy must be delete, compact or both, not \"nope\"".to_string())
        );
        assert_eq!(
            validate("message.timestamp.type", "x"),
            Err(
                "message.timestamp.type must be CreateTime or LogAppendTime, not \"x\"".to_string()
            )
        );
        assert_eq!(
            validate("min.insync.replicas", "0"),
            Err("min.insync.replicas must be an integer >= 1, not \"0\"".to_string())
        );
    }

    #[test]
    fn defaults_parse() {
        for c in KNOWN {
            assert!(validate(c.key, c.default).is_ok(), "{}", c.key);
        }
    }
}
