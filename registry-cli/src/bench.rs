//! `zoo bench`: cold start and warm latency of a converted model (docs/BENCHMARKS.md).

use anyhow::Result;
use d2serve_d2onnx::{ConvertOptions, convert_checkpoint};
use d2serve_engine::runtime::SessionOptions;
use d2serve_engine::RgbImage;
use d2serve_registry::manifest::MODEL_FILE;
use d2serve_registry::Registry;

use crate::{BenchArgs, Global};
use crate::predict::read_image;

/// A deterministic 800x1067 RGB pattern (the 800/1333 test size of a 3:4 photo).
pub(crate) fn test_pattern() -> RgbImage {
    let (h, w) = (800usize, 1067usize);
    let mut data = Vec::with_capacity(h * w * 3);
    for y in 0..h {
        for x in 0..w {
            data.extend_from_slice(&[((x * 7 + y * 3) % 256) as u8, ((x * x + y) % 251) as u8, ((y * 5) % 256) as u8]);
        }
    }
    RgbImage { height: h, width: w, data }
}

pub(crate) async fn bench(g: &Global, args: &BenchArgs) -> Result<()> {
    let catalog = g.catalog()?;
    let key = g.model_key(&catalog, &args.model, args.artifact.as_deref())?;
    let work = tempfile::tempdir()?;
    let dir = match &args.artifact {
        Some(d) => d.clone(),
        None if g.artifacts.join(&key).join(MODEL_FILE).is_file() => g.artifacts.join(&key),
        None => {
            let entry = catalog.require(&key)?;
            let pkl = work.path().join("synth.pkl");
            let mut w = std::io::BufWriter::new(std::fs::File::create(&pkl)?);
            d2serve_d2onnx::synth::write_checkpoint(entry, 1, &mut w)?;
            drop(w);
            let out = work.path().join("artifact");
            convert_checkpoint(entry, &catalog.classes(entry), &pkl, &out, &ConvertOptions { random_weights: true, ..Default::default() })?;
            std::fs::remove_file(&pkl)?;
            eprintln!("bench: converted a full-size synthesized {} (random weights)", entry.key);
            out
        }
    };
    let registry = work.path().join("registry");
    Registry::new(std::sync::Arc::new(d2serve_registry::store::LocalStore::new(&registry)))
        .publish(&key, &dir)
        .await?;
    let image = match &args.image {
        Some(p) => read_image(p)?,
        None => test_pattern(),
    };
    let session = SessionOptions { optimize: !args.no_optimize, ..args.runtime.session_options() };
    let sessions = if args.only { vec![session] } else { d2serve_engine::bench::comparison(&session) };
    let r = d2serve_engine::bench::bench(&registry, &key, work.path(), &image, args.runs, &sessions).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        let optimize = if r.optimize { "on" } else { "off" };
        println!(
            "{} on {}x{} (resized {}x{}), device {}, {} threads, ONNX Runtime graph optimizations {optimize}",
            r.key, r.image_hw[0], r.image_hw[1], r.resized_hw[0], r.resized_hw[1], r.device, r.threads
        );
        println!("  cold start ({} {}): fetch {:.3} s, verify {:.3} s, session {:.3} s, first inference {:.3} s (total {:.3} s)", r.runtime, r.precision, r.cold_fetch_s, r.cold_verify_s, r.cold_session_s, r.cold_first_inference_s, r.cold_total_s);
        println!("  warm: {} rounds, one run of each runtime per round", r.warm_runs);
        for f in &r.runtimes {
            println!(
                "  {:<11} {:<4}: p50 {:.3} s ({:.2}x), p95 {:.3} s, min {:.3} s; session {:.3} s, first {:.3} s; new shape first {:.3} s, then {:.3} s; {} detections",
                f.runtime.to_string(), f.precision.to_string(), f.warm_p50_s, f.warm_p50_ratio, f.warm_p95_s, f.warm_min_s, f.cold_session_s, f.cold_first_inference_s, f.new_shape_first_s, f.new_shape_second_s, f.detections
            );
        }
        println!("  auto picks {}: {}", r.auto.runtime, r.auto.reason);
        println!("  peak RSS {:.0} MB", r.peak_rss_mb);
    }
    Ok(())
}
