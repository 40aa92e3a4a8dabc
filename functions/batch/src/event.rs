//! The invocation event, in the shapes it arrives in:
//!
//! - EventBridge Scheduler (and a direct invoke, and the CLI): the JSON input
//!   configured on the schedule, `{"model", "input", "output", "settings",
//!   "max_images", "continuation"}`;
//! - an EventBridge rule's scheduled event: the same object in `detail`;
//! - a Step Functions Distributed Map batch (ItemReader over an S3 prefix +
//!   ItemBatcher): `{"Items": [{"Key": …}, …], "BatchInput": {…the job…}}`,
//!   optionally with `continuation` when the state machine loops an unfinished batch.

use serde_json::{Map, Value};

use crate::error::BatchError;
use crate::location::Location;

/// Which images a run covers.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// Every image under the input location after the continuation.
    Prefix,
    /// Exactly these keys (relative to the input location), e.g. one map batch.
    Keys(Vec<String>),
}

/// Inference settings of a run (as in serve's `settings`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SettingsSpec {
    pub conf_thres: Option<f64>,
    pub classes: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct JobRequest {
    /// Catalog key or alias; None: the configured default.
    pub model: Option<String>,
    pub input: Location,
    pub output: Location,
    pub settings: SettingsSpec,
    /// Images to annotate at most in this run (skipped ones do not count).
    pub max_images: Option<usize>,
    /// Opaque token from a previous run's result: start after it.
    pub continuation: Option<String>,
    pub source: Source,
}

const JOB_FIELDS: &str = "model, input, output, settings, max_images, continuation";

fn bad(msg: impl Into<String>) -> BatchError {
    BatchError::BadEvent(msg.into())
}

/// Parse an event in any of the shapes above.
pub fn parse_event(v: &Value) -> Result<JobRequest, BatchError> {
    let obj = v.as_object().ok_or_else(|| bad(format!("expected a JSON object with {JOB_FIELDS}, got {}", kind(v))))?;
    if obj.contains_key("Items") {
        return parse_map_batch(obj);
    }
    // EventBridge rule events wrap the configured input in `detail`.
    if obj.contains_key("detail-type") {
        let detail = obj.get("detail").ok_or_else(|| bad("an EventBridge event without `detail`: put the job in the rule target's input"))?;
        return parse_event(detail);
    }
    parse_job(obj, Source::Prefix)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn parse_map_batch(obj: &Map<String, Value>) -> Result<JobRequest, BatchError> {
    for k in obj.keys() {
        if !matches!(k.as_str(), "Items" | "BatchInput" | "continuation") {
            return Err(bad(format!("unknown field `{k}` in a Distributed Map batch (expected Items, BatchInput, continuation)")));
        }
    }
    let mut job = obj
        .get("BatchInput")
        .and_then(Value::as_object)
        .cloned()
        .ok_or_else(|| bad("a Distributed Map batch needs `BatchInput` with the job (model, input, output, settings): set ItemBatcher.BatchInput"))?;
    if let Some(c) = obj.get("continuation") {
        job.insert("continuation".into(), c.clone());
    }
    let items = obj.get("Items").and_then(Value::as_array).ok_or_else(|| bad("`Items` must be an array"))?;
    // Parse the job first: item keys are relative to its input prefix.
    let mut req = parse_job(&job, Source::Prefix)?;
    let prefix = match &req.input {
        Location::S3 { prefix, .. } => prefix.clone(),
        Location::Local(_) => String::new(),
    };
    let mut keys = Vec::with_capacity(items.len());
    for it in items {
        // ItemReader over S3 gives {"Key", "Size", "Etag", "LastModified"}; a JSON array of strings works too.
        let key = match it {
            Value::String(s) => s.as_str(),
            Value::Object(o) => o.get("Key").and_then(Value::as_str).ok_or_else(|| bad(format!("an item without a string `Key`: {it}")))?,
            other => return Err(bad(format!("an item must be {{\"Key\": …}} or a string, got {}", kind(other)))),
        };
        let rel = key.strip_prefix(prefix.as_str()).ok_or_else(|| {
            bad(format!("item `{key}` is not under the input prefix `{}`: the ItemReader Prefix and BatchInput.input must agree", req.input))
        })?;
        // The prefix itself ("folder" marker objects) is not an image.
        if !rel.is_empty() && !rel.ends_with('/') {
            keys.push(rel.to_string());
        }
    }
    keys.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    keys.dedup();
    req.source = Source::Keys(keys);
    Ok(req)
}

fn parse_job(obj: &Map<String, Value>, source: Source) -> Result<JobRequest, BatchError> {
    for k in obj.keys() {
        if !JOB_FIELDS.split(", ").any(|f| f == k) {
            return Err(bad(format!("unknown field `{k}` (expected {JOB_FIELDS})")));
        }
    }
    let string = |name: &str| -> Result<Option<String>, BatchError> {
        match obj.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.trim().to_string())),
            Some(other) => Err(bad(format!("`{name}` must be a non-empty string, got {}", kind(other)))),
        }
    };
    let input = string("input")?.ok_or_else(|| bad("`input` is missing: the images to annotate, e.g. \"s3://bucket/photos/\""))?;
    let output = string("output")?.ok_or_else(|| bad("`output` is missing: where annotations go, e.g. \"s3://bucket/annotations/\""))?;
    let max_images = match obj.get("max_images") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(n) if n > 0 => Some(n as usize),
            _ => return Err(bad(format!("`max_images` must be a positive integer, got {v}"))),
        },
    };
    let req = JobRequest {
        model: string("model")?,
        input: Location::parse(&input)?,
        output: Location::parse(&output)?,
        settings: parse_settings(obj.get("settings").unwrap_or(&Value::Null))?,
        max_images,
        continuation: string("continuation")?,
        source,
    };
    if req.input == req.output {
        return Err(bad("`input` and `output` are the same location: write annotations to another prefix"));
    }
    Ok(req)
}

/// `{"conf_thres": 0..1, "classes": [names] | "all"}`; unknown keys are refused (typos would be silently ignored otherwise).
pub fn parse_settings(v: &Value) -> Result<SettingsSpec, BatchError> {
    let obj = match v {
        Value::Null => return Ok(SettingsSpec::default()),
        Value::Object(o) => o,
        other => return Err(BatchError::BadSettings(format!("`settings` must be an object, got {}", kind(other)))),
    };
    let mut s = SettingsSpec::default();
    for (k, v) in obj {
        match k.as_str() {
            "conf_thres" => match v {
                Value::Null => {}
                v => match v.as_f64() {
                    Some(c) if (0.0..=1.0).contains(&c) => s.conf_thres = Some(c),
                    _ => return Err(BatchError::BadSettings(format!("conf_thres must be a number in [0, 1], got {v}"))),
                },
            },
            "classes" => match v {
                Value::Null => {}
                Value::String(a) if a == "all" => {}
                Value::Array(a) => {
                    let names = a.iter().map(|c| c.as_str().map(str::to_string)).collect::<Option<Vec<_>>>();
                    s.classes = Some(names.ok_or_else(|| BatchError::BadSettings("classes must be a list of class names or \"all\"".into()))?);
                }
                _ => return Err(BatchError::BadSettings("classes must be a list of class names or \"all\"".into())),
            },
            other => return Err(BatchError::BadSettings(format!("unknown setting `{other}` (expected conf_thres, classes)"))),
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn scheduler_input_rule_event_and_map_batch_give_the_same_job() {
        let job = json!({"model": "r50-fpn-3x", "input": "s3://photos/in/", "output": "s3://photos/out", "settings": {"conf_thres": 0.6}, "max_images": 50});
        let a = parse_event(&job).unwrap();
        assert_eq!(a.source, Source::Prefix);
        assert_eq!(a.output, Location::S3 { bucket: "photos".into(), prefix: "out/".into() });
        assert_eq!(a.settings.conf_thres, Some(0.6));
        assert_eq!(a.max_images, Some(50));
        let rule = json!({"version": "0", "id": "x", "detail-type": "Scheduled Event", "source": "aws.events", "detail": job});
        assert_eq!(parse_event(&rule).unwrap(), a);
        let batch = json!({
            "Items": [{"Key": "in/b.jpg", "Size": 10, "Etag": "\"e\"", "LastModified": "2026-11-25T10:00:00Z"}, {"Key": "in/a/x.png"}, {"Key": "in/"}],
            "BatchInput": job,
            "continuation": "a/x.png"
        });
        let m = parse_event(&batch).unwrap();
        assert_eq!(m.source, Source::Keys(vec!["a/x.png".into(), "b.jpg".into()]));
        assert_eq!(m.continuation.as_deref(), Some("a/x.png"));
        assert_eq!(m.model, a.model);
    }

    #[test]
    fn user_mistakes_get_messages_that_say_what_to_do() {
        let cases = [
            (json!([1]), "JSON object"),
            (json!({"input": "s3://photos/in/"}), "`output` is missing"),
            (json!({"input": "s3://photos/in/", "output": "s3://photos/in"}), "same location"),
            (json!({"input": "s3:/photos", "output": "s3://photos/o/"}), "neither s3://"),
            (json!({"input": "s3://photos/i/", "output": "s3://photos/o/", "modle": "x"}), "unknown field `modle`"),
            (json!({"input": "s3://photos/i/", "output": "s3://photos/o/", "max_images": 0}), "positive integer"),
            (json!({"input": "s3://photos/i/", "output": "s3://photos/o/", "settings": {"conf_thresh": 1}}), "unknown setting `conf_thresh`"),
            (json!({"input": "s3://photos/i/", "output": "s3://photos/o/", "settings": {"conf_thres": 2}}), "[0, 1]"),
            (json!({"Items": [{"Key": "other/a.jpg"}], "BatchInput": {"input": "s3://photos/i/", "output": "s3://photos/o/"}}), "not under the input prefix"),
            (json!({"Items": []}), "BatchInput"),
        ];
        for (ev, want) in cases {
            let e = parse_event(&ev).unwrap_err().to_string();
            assert!(e.contains(want), "{ev}: {e}");
        }
    }
}
