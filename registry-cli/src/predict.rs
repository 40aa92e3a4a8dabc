//! `zoo predict` and `zoo draw`: a converted model run locally, its answer drawn over the image.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use d2serve_engine::pipeline::Settings;
use d2serve_engine::{LoadedModel, RgbImage, supervisely};
use d2serve_registry::manifest::MODEL_FILE;

use crate::{Global, PredictArgs};

pub(crate) fn read_image(path: &Path) -> Result<RgbImage> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    d2serve_engine::decode(&bytes, 200_000_000).with_context(|| format!("decoding {}", path.display()))
}

/// A PNG written whole or not at all (a reader never sees half a picture).
pub(crate) fn save_png(path: &Path, img: &RgbImage) -> Result<()> {
    let mut png = std::io::Cursor::new(Vec::new());
    image::write_buffer_with_format(&mut png, &img.data, img.width as u32, img.height as u32, image::ExtendedColorType::Rgb8, image::ImageFormat::Png)?;
    d2serve_registry::atomic::write(path, png.get_ref()).with_context(|| format!("writing {}", path.display()))
}

pub(crate) fn output_path(base: &Path, image: &Path, many: bool, ext: &str) -> PathBuf {
    if many {
        let stem = image.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "image".into());
        base.join(format!("{stem}.{ext}"))
    } else {
        base.to_path_buf()
    }
}

pub(crate) fn predict(g: &Global, args: &PredictArgs) -> Result<()> {
    let catalog = g.catalog()?;
    let key = g.model_key(&catalog, &args.model, args.artifact.as_deref())?;
    let dir = args.artifact.clone().unwrap_or_else(|| g.artifacts.join(&key));
    if !dir.join(MODEL_FILE).is_file() {
        bail!(
            "{} has no converted model: `zoo pull {key} --convert` downloads and converts it; offline, \
             `zoo convert {key} --synth` makes one with random weights (or scripts/demo.sh the bundled sample); \
             or pass --artifact DIR",
            dir.display()
        );
    }
    let model = LoadedModel::open(&dir, &args.runtime.session_options())?;
    if model.manifest.is_sample() {
        println!("note: {} has random weights: its detections show the pipeline works and mean nothing", model.manifest.name);
    }
    let many = args.images.len() > 1;
    let settings = Settings { conf_thres: args.conf, ..Default::default() };
    for path in &args.images {
        let mut img = read_image(path)?;
        let t = std::time::Instant::now();
        let p = model.predict(&img, &settings)?;
        let secs = t.elapsed().as_secs_f64();
        let objects: Vec<_> = p
            .instances
            .iter()
            .map(|i| supervisely::object(&model.manifest.classes[i.class_id].name, i.score, &i.mask))
            .collect();
        let ann = supervisely::annotation(p.height, p.width, objects);
        println!("{}: {} instances in {:.2} s", path.display(), p.instances.len(), secs);
        for i in &p.instances {
            println!("  {:<20} {:.3}  box [{:.1}, {:.1}, {:.1}, {:.1}]", model.manifest.classes[i.class_id].name, i.score, i.bbox[0], i.bbox[1], i.bbox[2], i.bbox[3]);
        }
        if let Some(base) = &args.json {
            let out = output_path(base, path, many, "json");
            d2serve_registry::atomic::write(&out, &serde_json::to_vec_pretty(&ann)?).with_context(|| format!("writing {}", out.display()))?;
            println!("  annotation: {}", out.display());
        }
        if let Some(base) = &args.overlay {
            let out = output_path(base, path, many, "png");
            supervisely::draw_annotation(&mut img.data, img.height, img.width, &ann, &model.manifest.classes);
            save_png(&out, &img)?;
            println!("  overlay: {}", out.display());
        }
    }
    Ok(())
}

pub(crate) fn draw(g: &Global, image: &Path, annotation: &Path, out: &Path, model: Option<&str>) -> Result<()> {
    let catalog = g.catalog()?;
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(annotation).with_context(|| format!("reading {}", annotation.display()))?)
        .with_context(|| format!("{} is not JSON", annotation.display()))?;
    // The colours of --model, else of the model the reply names (native replies
    // do), else of the default zoo model when the reply's classes are its own;
    // otherwise each class gets a palette colour of its own.
    let class_list = |name: &str| -> Result<Vec<d2serve_registry::ClassInfo>> {
        Ok(match catalog.get(name) {
            Some(entry) => catalog.classes(entry).classes,
            None => {
                let key = g.model_key(&catalog, name, None)?;
                let path = g.artifacts.join(&key).join(d2serve_registry::manifest::MANIFEST_FILE);
                d2serve_registry::Manifest::read(&path)
                    .with_context(|| format!("the class colours of `{key}` are in its converted folder, which is not here; give --model a catalog model or leave it out"))?
                    .classes
            }
        })
    };
    let ann = v.get("annotation").cloned().unwrap_or_else(|| v.clone());
    let classes = match (model, v.get("model").and_then(serde_json::Value::as_str)) {
        (Some(m), _) => class_list(m)?,
        (None, Some(named)) => class_list(named).unwrap_or_default(),
        (None, None) => {
            let zoo = class_list("r50-fpn-3x").unwrap_or_default();
            let titles = ann.get("objects").and_then(serde_json::Value::as_array).into_iter().flatten().filter_map(|o| o.get("classTitle").and_then(serde_json::Value::as_str));
            let all_known = titles.clone().all(|t| zoo.iter().any(|c| c.name == t));
            if all_known { zoo } else { Vec::new() }
        }
    };
    let mut img = read_image(image)?;
    let n = supervisely::draw_annotation(&mut img.data, img.height, img.width, &ann, &classes);
    save_png(out, &img)?;
    println!("drew {n} objects on {} -> {}", image.display(), out.display());
    Ok(())
}
