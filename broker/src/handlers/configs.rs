//! DescribeConfigs, AlterConfigs and IncrementalAlterConfigs for topics (and a read-only view
//! of this broker's own settings). Only the configs in [`crate::topic_config::KNOWN`] can be
//! set; anything else is refused with INVALID_CONFIG rather than silently ignored.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse as IncrementalResult;
use kafka_protocol::messages::*;
use protocol::pd::AlterTopicConfigs;
use protocol::ErrorCode;

use super::str_bytes;
use crate::context::SharedBroker;
use crate::metadata::refresh;
use crate::topic_config::{self, ConfigType};

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const SOURCE_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

/// The type of a config: the topic config table's, else (broker settings) a string.
fn config_type(key: &str) -> ConfigType {
    topic_config::spec(key).map_or(ConfigType::String, |c| c.kind)
}

fn entry(
    key: &str,
    value: &str,
    source: i8,
    read_only: bool,
    version: i16,
) -> DescribeConfigsResourceResult {
    let mut e = DescribeConfigsResourceResult::default()
        .with_name(str_bytes(key))
        .with_value(Some(str_bytes(value)))
        .with_read_only(read_only)
        .with_config_source(source);
    if version >= 3 {
        e = e.with_config_type(config_type(key).code());
    }
    e
}

pub async fn describe_configs(
    broker: &SharedBroker,
    request: DescribeConfigsRequest,
    version: i16,
) -> DescribeConfigsResponse {
    let snapshot = broker.snapshot();
    let mut results = Vec::new();
    for resource in request.resources {
        let name = resource.resource_name.to_string();
        let keys: Option<Vec<String>> = resource
            .configuration_keys
            .as_ref()
            .map(|k| k.iter().map(|s| s.to_string()).collect());
        let wanted = |key: &str| keys.as_ref().is_none_or(|k| k.iter().any(|w| w == key));
        let mut result = DescribeConfigsResult::default()
            .with_resource_type(resource.resource_type)
            .with_resource_name(resource.resource_name.clone());
        match resource.resource_type {
            RESOURCE_TOPIC => match snapshot.topics.get(&name) {
                Some(topic) => {
                    let configs = topic_config::KNOWN
                        .iter()
                        .filter(|c| wanted(c.key))
                        .map(|c| match topic.config(c.key) {
                            Some(value) => entry(c.key, value, SOURCE_TOPIC, false, version),
                            None => entry(c.key, c.default, SOURCE_DEFAULT, false, version),
                        })
                        .collect();
                    result = result.with_configs(configs);
                }
                None => {
                    result = result
                        .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                        .with_error_message(Some(str_bytes(&format!("unknown topic {name}"))));
                }
            },
            RESOURCE_BROKER if name.is_empty() || name == broker.node_id.to_string() => {
                let config = &broker.config;
                let settings = [
                    (
                        "auto.create.topics.enable",
                        config.auto_create_topics.to_string(),
                    ),
                    ("num.partitions", config.num_partitions.to_string()),
                    (
                        "default.replication.factor",
                        config.default_replication.to_string(),
                    ),
                    (
                        "socket.request.max.bytes",
                        config.max_request_bytes.to_string(),
                    ),
                ];
                let configs = settings
                    .iter()
                    .filter(|(key, _)| wanted(key))
                    .map(|(key, value)| entry(key, value, SOURCE_STATIC_BROKER, true, version))
                    .collect();
                result = result.with_configs(configs);
            }
            _ => {
                result = result
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(str_bytes(&format!(
                        "cannot describe resource type {} named {name:?}",
                        resource.resource_type
                    ))));
            }
        }
        results.push(result);
    }
    DescribeConfigsResponse::default().with_results(results)
}

/// How altering one resource went.
struct Altered {
    error: Option<ResponseError>,
    message: Option<String>,
}

impl Altered {
    const OK: Altered = Altered {
        error: None,
        message: None,
    };

    fn failed(error: ResponseError, message: String) -> Altered {
        Altered {
            error: Some(error),
            message: Some(message),
        }
    }

    /// The error code to encode.
    fn code(&self) -> i16 {
        super::error_code(self.error)
    }
}

/// Applies one topic resource change at PD.
async fn alter_topic(
    broker: &SharedBroker,
    resource_type: i8,
    name: &str,
    set: Vec<(String, String)>,
    remove: Vec<String>,
    replace_all: bool,
    validate_only: bool,
) -> Altered {
    if resource_type != RESOURCE_TOPIC {
        return Altered::failed(
            ResponseError::InvalidRequest,
            "only topic configs can be altered".into(),
        );
    }
    for (key, value) in &set {
        if let Err(why) = topic_config::validate(key, value) {
            return Altered::failed(ResponseError::InvalidConfig, why);
        }
    }
    for key in &remove {
        if let Err(why) = topic_config::known(key) {
            return Altered::failed(ResponseError::InvalidConfig, why);
        }
    }
    let altered = broker
        .pd
        .call(AlterTopicConfigs {
            name: name.to_string(),
            set,
            remove,
            replace_all,
            validate_only,
        })
        .await;
    match altered {
        Ok(_) => {
            if let Err(e) = refresh(broker).await {
                tracing::debug!("metadata refresh after config change: {e}");
            }
            Altered::OK
        }
        Err(e) if e.code == ErrorCode::NotFound => {
            Altered::failed(ResponseError::UnknownTopicOrPartition, e.message)
        }
        Err(e) => Altered::failed(ResponseError::InvalidConfig, e.message),
    }
}

pub async fn alter_configs(
    broker: &SharedBroker,
    request: AlterConfigsRequest,
    _version: i16,
) -> AlterConfigsResponse {
    let mut responses = Vec::new();
    for resource in request.resources {
        let name = resource.resource_name.to_string();
        let set = resource
            .configs
            .iter()
            .filter_map(|c| {
                c.value
                    .as_ref()
                    .map(|v| (c.name.to_string(), v.to_string()))
            })
            .collect();
        let altered = alter_topic(
            broker,
            resource.resource_type,
            &name,
            set,
            Vec::new(),
            true,
            request.validate_only,
        )
        .await;
        responses.push(
            AlterConfigsResourceResponse::default()
                .with_error_code(altered.code())
                .with_error_message(altered.message.map(|m| str_bytes(&m)))
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name),
        );
    }
    AlterConfigsResponse::default().with_responses(responses)
}

pub async fn incremental_alter_configs(
    broker: &SharedBroker,
    request: IncrementalAlterConfigsRequest,
    _version: i16,
) -> IncrementalAlterConfigsResponse {
    let mut responses = Vec::new();
    for resource in request.resources {
        let name = resource.resource_name.to_string();
        let current = broker.snapshot().topics.get(&name).cloned();
        let mut set = Vec::new();
        let mut remove = Vec::new();
        let mut error = None;
        for c in &resource.configs {
            let key = c.name.to_string();
            let value = c.value.as_ref().map(|v| v.to_string()).unwrap_or_default();
            match c.config_operation {
                0 => set.push((key, value)),
                1 => remove.push(key),
                2 | 3 if config_type(&key) == ConfigType::List => {
                    let existing = current
                        .as_ref()
                        .and_then(|t| t.config(&key).map(str::to_string))
                        .or_else(|| topic_config::default_of(&key).map(str::to_string))
                        .unwrap_or_default();
                    let mut items: Vec<String> = existing
                        .split(',')
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                        .collect();
                    for item in value.split(',').map(|s| s.trim()).filter(|s| !s.is_empty()) {
                        if c.config_operation == 2 {
                            if !items.iter().any(|i| i == item) {
                                items.push(item.to_string());
                            }
                        } else {
                            items.retain(|i| i != item);
                        }
                    }
                    set.push((key, items.join(",")));
                }
                op => {
                    error = Some(Altered::failed(
                        ResponseError::InvalidConfig,
                        format!("operation {op} does not apply to {key}"),
                    ));
                }
            }
        }
        let altered = match error {
            Some(altered) => altered,
            None => {
                alter_topic(
                    broker,
                    resource.resource_type,
                    &name,
                    set,
                    remove,
                    false,
                    request.validate_only,
                )
                .await
            }
        };
        responses.push(
            IncrementalResult::default()
                .with_error_code(altered.code())
                .with_error_message(altered.message.map(|m| str_bytes(&m)))
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name),
        );
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}
