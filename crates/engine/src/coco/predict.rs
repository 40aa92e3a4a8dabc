//! A converted model run over a COCO dataset, its answers as COCO results:
//! what `zoo eval` scores. Every detection the graph keeps is scored (no
//! confidence filter beyond the model's own SCORE_THRESH_TEST), as
//! Detectron2's COCOEvaluator scores them.

use std::path::Path;

use serde_json::Value;

use super::dataset::{Dataset, Detection};
use super::rle::Rle;
use crate::pipeline::{LoadedModel, PredictError, Settings};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("the model's classes ({model}) and the dataset's categories ({dataset}) share no name and differ in number, so no detection can be given a category: evaluate on the dataset the model was trained for")]
    NoCategoryMap { model: String, dataset: String },
    #[error("reading {path}: {detail}")]
    Image { path: String, detail: String },
    #[error("{path}: the file is {got_w}x{got_h}, but the annotations say {want_w}x{want_h}")]
    ImageSize { path: String, got_w: usize, got_h: usize, want_w: usize, want_h: usize },
    #[error("{path}: {source}")]
    Predict { path: String, source: PredictError },
}

/// The dataset category of each model class.
#[derive(Debug, Clone)]
pub struct CategoryMap {
    /// category id per model class index (None: the class is not in the dataset).
    pub ids: Vec<Option<i64>>,
    /// How the map was made, for the user.
    pub by: &'static str,
}

/// Classes map to categories by name; when no name is shared and the counts
/// match, by order (class k = the k-th category by id, Detectron2's
/// contiguous-id rule for a dataset registered from its JSON).
pub fn category_map<'a>(classes: impl IntoIterator<Item = &'a str>, gt: &Dataset) -> Result<CategoryMap, RunError> {
    let classes: Vec<&str> = classes.into_iter().collect();
    let by_name: Vec<Option<i64>> = classes.iter().map(|c| gt.categories.iter().find(|k| k.name == *c).map(|k| k.id)).collect();
    if by_name.iter().any(Option::is_some) {
        return Ok(CategoryMap { ids: by_name, by: "name" });
    }
    let mut ids: Vec<i64> = gt.categories.iter().map(|c| c.id).collect();
    ids.sort_unstable();
    if ids.len() == classes.len() {
        return Ok(CategoryMap { ids: ids.into_iter().map(Some).collect(), by: "order" });
    }
    Err(RunError::NoCategoryMap { model: classes.join(", "), dataset: gt.categories.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ") })
}

/// Predict every image of `gt` (files under `images`), calling `progress(done, total)`
/// after each. Returns the detections and the COCO results JSON of them.
pub fn predict_dataset(
    model: &LoadedModel,
    gt: &Dataset,
    images: &Path,
    map: &CategoryMap,
    mut progress: impl FnMut(usize, usize),
) -> Result<(Vec<Detection>, Vec<Value>), RunError> {
    let settings = Settings { conf_thres: 0.0, ..Default::default() };
    let (mut dets, mut json) = (Vec::new(), Vec::new());
    for (n, info) in gt.images.iter().enumerate() {
        let path = images.join(&info.file_name);
        let shown = path.display().to_string();
        let bytes = std::fs::read(&path).map_err(|e| RunError::Image { path: shown.clone(), detail: e.to_string() })?;
        let img = crate::decode(&bytes, 400_000_000).map_err(|e| RunError::Image { path: shown.clone(), detail: e.to_string() })?;
        if (img.width, img.height) != (info.width, info.height) {
            return Err(RunError::ImageSize { path: shown, got_w: img.width, got_h: img.height, want_w: info.width, want_h: info.height });
        }
        let p = model.predict(&img, &settings).map_err(|source| RunError::Predict { path: shown.clone(), source })?;
        for i in &p.instances {
            let Some(category_id) = map.ids[i.class_id] else { continue };
            let rle = Rle::from_region(&i.mask, p.height, p.width);
            let b = i.bbox;
            let bbox = [f64::from(b[0]), f64::from(b[1]), f64::from(b[2] - b[0]), f64::from(b[3] - b[1])];
            let mut v = super::result_json(category_id, i.score, i.bbox, &rle);
            v["image_id"] = Value::from(info.id);
            json.push(v);
            dets.push(Detection { image_id: info.id, category_id, score: f64::from(i.score), bbox, mask: Some(rle), bbox_given: true });
        }
        progress(n + 1, gt.images.len());
    }
    Ok((dets, json))
}
