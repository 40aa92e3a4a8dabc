//! Download progress bars: one per file plus an overall bar, drawn only when
//! stderr is a terminal (indicatif hides them otherwise).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use d2serve_registry::download::PullProgress;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Bars {
    multi: MultiProgress,
    overall: ProgressBar,
    files: Mutex<HashMap<String, ProgressBar>>,
}

impl Bars {
    pub fn new(files: usize, visible: bool) -> Self {
        let target = if visible {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let multi = MultiProgress::with_draw_target(target);
        let overall = multi.add(ProgressBar::new(files as u64));
        overall.set_style(
            ProgressStyle::with_template("{prefix:>12} [{bar:30}] {pos}/{len} files")
                .expect("valid template")
                .progress_chars("=> "),
        );
        overall.set_prefix("overall");
        Self {
            multi,
            overall,
            files: Mutex::new(HashMap::new()),
        }
    }

    pub fn clear(&self) {
        let _ = self.multi.clear();
    }

    fn bar(&self, key: &str) -> ProgressBar {
        let mut files = self.files.lock().expect("progress lock");
        files
            .entry(key.to_string())
            .or_insert_with(|| {
                let bar = self.multi.insert_before(&self.overall, ProgressBar::new(0));
                bar.set_style(
                    ProgressStyle::with_template(
                        "{prefix:>12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {msg}",
                    )
                    .expect("valid template")
                    .progress_chars("=> "),
                );
                let short = key.rsplit('/').next().unwrap_or(key);
                bar.set_prefix(short.chars().take(12).collect::<String>());
                bar
            })
            .clone()
    }
}

impl PullProgress for Bars {
    fn started(&self, key: &str, total: Option<u64>, already: u64) {
        let bar = self.bar(key);
        if let Some(t) = total {
            bar.set_length(t);
        }
        bar.set_position(already);
        bar.set_message("");
    }

    fn advanced(&self, key: &str, bytes: u64) {
        self.bar(key).inc(bytes);
    }

    fn retrying(&self, key: &str, attempt: u32, reason: &str, wait: Duration) {
        let msg = format!("retry {attempt} in {:.1}s: {reason}", wait.as_secs_f32());
        let bar = self.bar(key);
        if bar.is_hidden() {
            eprintln!("zoo: {key}: {msg}");
        } else {
            bar.set_message(msg);
        }
    }

    fn finished(&self, key: &str) {
        self.bar(key).finish_and_clear();
        self.overall.inc(1);
    }
}
