//! What the binary calls: one configured process (catalog, model cache, S3
//! client) that runs jobs from CLI flags or Lambda events.

use std::sync::Arc;
use std::time::Duration;

use d2serve_engine::cache::ModelCache;
use d2serve_registry::Catalog;
use serde_json::Value;

use crate::annotate::EngineAnnotator;
use crate::deadline::Deadline;
use crate::error::BatchError;
use crate::event::{JobRequest, parse_event};
use crate::job::{JobOptions, NoProgress, Progress, Summary, new_run_id};
use crate::location::Location;
use crate::storage;

pub struct Runner {
    pub catalog: Catalog,
    pub cache: Arc<ModelCache>,
    /// For s3:// locations (built once: credentials and connections are reused across invocations).
    pub s3: Option<aws_sdk_s3::Client>,
    /// Model of jobs that name none.
    pub default_model: String,
    pub concurrency: usize,
    pub max_pixels: u64,
    pub max_image_bytes: u64,
    /// Reserve before the deadline (summary, return).
    pub safety_margin: Duration,
}

impl Runner {
    /// Run one job until done, `deadline`, or `max_images`.
    pub async fn run(&self, req: &JobRequest, deadline: Deadline, progress: &dyn Progress) -> Result<Summary, BatchError> {
        let model = req.model.as_deref().unwrap_or(&self.default_model);
        // A missing output folder is created; a missing input folder is a mistake, not an empty job.
        if let Location::Local(p) = &req.input
            && !p.is_dir()
        {
            return Err(BatchError::BadLocation(format!("the input folder {} does not exist", p.display())));
        }
        let input = storage::open(&req.input, self.s3.as_ref())?;
        let output = storage::open(&req.output, self.s3.as_ref())?;
        let annotator = EngineAnnotator::load(&self.cache, &self.catalog, model, &req.settings, self.max_pixels).await?;
        let opts = JobOptions {
            model: annotator.model_key().to_string(),
            concurrency: self.concurrency,
            max_image_bytes: self.max_image_bytes,
            max_images: req.max_images,
            deadline,
            run_id: new_run_id(),
        };
        let summary = crate::job::run(&req.source, req.continuation.as_deref(), &*input, &*output, &annotator, &opts, progress).await?;
        tracing::info!(
            run_id = %summary.run_id, processed = summary.processed, skipped = summary.skipped,
            failed = summary.failed.len() + summary.failed_unlisted, remaining = summary.remaining,
            seconds = summary.seconds, "batch run finished"
        );
        Ok(summary)
    }

    /// A Lambda invocation: any event shape of [`crate::event`], the context's deadline.
    pub async fn handle(&self, event: lambda_runtime::LambdaEvent<Value>) -> Result<Value, BatchError> {
        let req = parse_event(&event.payload)?;
        for loc in [&req.input, &req.output] {
            if let Location::Local(p) = loc {
                return Err(BatchError::BadLocation(format!(
                    "`{}` is a local path; under Lambda, input and output must be s3://BUCKET/PREFIX/ URIs",
                    p.display()
                )));
            }
        }
        let deadline = Deadline::at_system(event.context.deadline(), self.safety_margin);
        let summary = self.run(&req, deadline, &NoProgress).await?;
        Ok(serde_json::to_value(summary).expect("a summary serializes"))
    }
}
