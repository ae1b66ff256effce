//! Kafka topic configs Strata knows: their defaults, validation, and the effective values a
//! partition enforces. Keys not listed here are refused, so a user is never told a config is
//! set when nothing would honour it.

use protocol::model::TopicInfo;

/// `(key, default, enforced)`: the configs a topic may set. `enforced == false` means the
/// value is stored and reported but has no effect yet (said plainly in DescribeConfigs docs).
pub const KNOWN: &[(&str, &str, bool)] = &[
    ("cleanup.policy", "delete", true),
    ("max.message.bytes", "1048588", true),
    ("message.timestamp.type", "CreateTime", true),
    ("retention.bytes", "-1", true),
    ("retention.ms", "604800000", true),
    ("min.insync.replicas", "1", false),
];

pub fn default_of(key: &str) -> Option<&'static str> {
    KNOWN.iter().find(|(k, _, _)| *k == key).map(|(_, d, _)| *d)
}

/// Checks one `key=value` pair; the error says what is wrong.
pub fn validate(key: &str, value: &str) -> Result<(), String> {
    let long = |min: i64| -> Result<(), String> {
        match value.trim().parse::<i64>() {
            Ok(v) if v >= min => Ok(()),
            _ => Err(format!("{key} must be an integer >= {min}, not {value:?}")),
        }
    };
    match key {
        "cleanup.policy" => {
            let ok = !value.is_empty()
                && value
                    .split(',')
                    .all(|p| matches!(p.trim(), "delete" | "compact"));
            if ok {
                Ok(())
            } else {
                Err(format!(
                    "cleanup.policy must be delete, compact or both, not {value:?}"
                ))
            }
        }
        "max.message.bytes" => long(0),
        "message.timestamp.type" => match value {
            "CreateTime" | "LogAppendTime" => Ok(()),
            _ => Err(format!(
                "message.timestamp.type must be CreateTime or LogAppendTime, not {value:?}"
            )),
        },
        "retention.bytes" | "retention.ms" => long(-1),
        "min.insync.replicas" => long(1),
        _ => Err(format!("topic config {key} is not supported by Strata")),
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
        let long = |key: &str, fallback: i64| get(key).trim().parse::<i64>().unwrap_or(fallback);
        TopicConfig {
            retention_ms: long("retention.ms", 604_800_000),
            retention_bytes: long("retention.bytes", -1),
            max_message_bytes: long("max.message.bytes", 1_048_588).max(0) as usize,
            log_append_time: get("message.timestamp.type") == "LogAppendTime",
            delete_policy: get("cleanup.policy")
                .split(',')
                .any(|p| p.trim() == "delete"),
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
    }
}
