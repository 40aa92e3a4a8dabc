//! BoT-SORT multi-object tracking as Supervisely's serving SDK runs it on
//! videos (its `botsort` tracker: Kalman filter on `[cx, cy, w, h]` and their
//! velocities, a first association of confirmed and lost tracks with the
//! confident detections by score-fused IoU, a second one of the remaining
//! tracks with the unsure detections, unconfirmed tracks confirmed by a match
//! on their second frame, a buffer of lost tracks, duplicate removal, and a
//! score-weighted class per track).
//!
//! What it does not do, and says so ([`TrackerSettings::parse`] refuses them by
//! name): re-identification by appearance (`with_reid`: OSNet weights this
//! project does not ship) and camera-motion compensation (`cmc_method`: optical
//! flow). Track ids start at 1 per tracker, i.e. per request.

use std::collections::HashMap;

/// One detection of a frame: an inclusive pixel box `[left, top, right, bottom]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    pub bbox: [f64; 4],
    pub score: f64,
    pub class_id: usize,
}

/// The settings of Supervisely's `botsort_config.yaml` that this tracker uses.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackerSettings {
    pub track_high_thresh: f64,
    pub track_low_thresh: f64,
    pub new_track_thresh: f64,
    pub track_buffer: u32,
    pub match_thresh: f64,
    /// When false, IoU distances are fused with the detection score.
    pub mot20: bool,
}

impl Default for TrackerSettings {
    fn default() -> Self {
        Self { track_high_thresh: 0.6, track_low_thresh: 0.1, new_track_thresh: 0.7, track_buffer: 30, match_thresh: 0.8, mot20: false }
    }
}

impl TrackerSettings {
    /// What `/get_tracking_settings` reports: the SDK's defaults for what is
    /// implemented, `with_reid: false` and `cmc_method: "none"` for what is not.
    pub fn describe(&self) -> serde_json::Value {
        serde_json::json!({
            "track_high_thresh": self.track_high_thresh,
            "track_low_thresh": self.track_low_thresh,
            "new_track_thresh": self.new_track_thresh,
            "track_buffer": self.track_buffer,
            "match_thresh": self.match_thresh,
            "mot20": self.mot20,
            "with_reid": false,
            "cmc_method": "none",
        })
    }

    /// The defaults updated by a request's `tracker_settings` (as the SDK
    /// `dict.update`s them). Keys the SDK reads but ignores are accepted; asking
    /// for re-identification or camera-motion compensation is refused by name.
    pub fn parse(v: Option<&serde_json::Value>) -> Result<Self, String> {
        let mut s = Self::default();
        let Some(v) = v.filter(|v| !v.is_null()) else { return Ok(s) };
        let obj = v.as_object().ok_or("tracker_settings must be an object")?;
        let num = |k: &str, x: &serde_json::Value| x.as_f64().filter(|f| f.is_finite() && *f >= 0.0).ok_or(format!("tracker_settings.{k} must be a non-negative number, got {x}"));
        for (k, x) in obj {
            match k.as_str() {
                "track_high_thresh" => s.track_high_thresh = num(k, x)?,
                "track_low_thresh" => s.track_low_thresh = num(k, x)?,
                "new_track_thresh" => s.new_track_thresh = num(k, x)?,
                "match_thresh" => s.match_thresh = num(k, x)?,
                "track_buffer" => s.track_buffer = x.as_u64().and_then(|n| u32::try_from(n).ok()).ok_or(format!("tracker_settings.track_buffer must be a whole number of frames, got {x}"))?,
                "mot20" => s.mot20 = x.as_bool().ok_or(format!("tracker_settings.mot20 must be true or false, got {x}"))?,
                "with_reid" if x.as_bool() == Some(true) => {
                    return Err("tracker_settings.with_reid: re-identification by appearance (OSNet) is not implemented by this server; send with_reid: false".into());
                }
                "cmc_method" if !matches!(x.as_str(), Some("none") | None) => {
                    return Err(format!("tracker_settings.cmc_method {x}: camera-motion compensation is not implemented by this server; send \"none\""));
                }
                // Read by the SDK's tracker but without effect there, or settings of what is refused above.
                "with_reid" | "cmc_method" | "fp16" | "min_box_area" | "fuse_score" | "ablation" | "fps" | "device" | "reid_weights" | "proximity_thresh" | "appearance_thresh" => {}
                other => return Err(format!("tracker_settings.{other} is not a BoT-SORT setting (see /get_tracking_settings)")),
            }
        }
        Ok(s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Tracked,
    Lost,
    Removed,
}

type Vec8 = [f64; 8];
type Mat8 = [[f64; 8]; 8];

#[derive(Debug, Clone)]
struct Track {
    id: u64,
    state: State,
    activated: bool,
    mean: Vec8,
    cov: Mat8,
    score: f64,
    /// Score-weighted votes per class.
    classes: HashMap<usize, f64>,
    /// Last frame it was matched on.
    frame: u64,
    start_frame: u64,
}

impl Track {
    /// `[left, top, right, bottom]` of the filter's state.
    fn tlbr(&self) -> [f64; 4] {
        let (cx, cy, w, h) = (self.mean[0], self.mean[1], self.mean[2], self.mean[3]);
        [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0]
    }

    fn class_id(&self) -> usize {
        self.classes.iter().max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(a.0))).map_or(0, |(c, _)| *c)
    }

    fn observe(&mut self, d: &Detection, frame: u64) {
        let (mean, cov) = kalman::update(&self.mean, &self.cov, xywh(&d.bbox));
        self.mean = mean;
        self.cov = cov;
        self.state = State::Tracked;
        self.activated = true;
        self.score = d.score;
        self.frame = frame;
        *self.classes.entry(d.class_id).or_default() += d.score;
    }
}

/// `[cx, cy, w, h]` of a box.
fn xywh(b: &[f64; 4]) -> [f64; 4] {
    let (w, h) = (b[2] - b[0], b[3] - b[1]);
    [b[0] + w / 2.0, b[1] + h / 2.0, w, h]
}

/// IoU of two boxes.
/// The output of one frame.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FrameTracks {
    /// Detection index -> track id, for the detections a track took on this frame.
    pub detection_track: Vec<(usize, u64)>,
    /// Confirmed tracks on this frame: (track id, class id, detection index if one matched it).
    pub active: Vec<(u64, usize, Option<usize>)>,
}

/// One tracker per video request.
#[derive(Debug, Clone)]
pub struct BotSort {
    settings: TrackerSettings,
    frame: u64,
    next_id: u64,
    tracked: Vec<Track>,
    lost: Vec<Track>,
}

impl BotSort {
    pub fn new(settings: TrackerSettings) -> Self {
        Self { settings, frame: 0, next_id: 1, tracked: Vec::new(), lost: Vec::new() }
    }

    /// Track one frame's detections (frames in processing order).
    pub fn update(&mut self, dets: &[Detection]) -> FrameTracks {
        self.frame += 1;
        let frame = self.frame;
        let s = self.settings.clone();
        let high: Vec<usize> = (0..dets.len()).filter(|&i| dets[i].score > s.track_high_thresh).collect();
        let low: Vec<usize> = (0..dets.len()).filter(|&i| dets[i].score > s.track_low_thresh && dets[i].score < s.track_high_thresh).collect();
        let mut taken: Vec<(usize, u64)> = Vec::new();

        // b. Unconfirmed and confirmed; the pool of confirmed and lost tracks is predicted.
        let (confirmed, mut unconfirmed): (Vec<Track>, Vec<Track>) = std::mem::take(&mut self.tracked).into_iter().partition(|t| t.activated);
        let mut pool: Vec<Track> = confirmed;
        pool.extend(std::mem::take(&mut self.lost));
        for t in pool.iter_mut() {
            if t.state != State::Tracked {
                t.mean[6] = 0.0;
                t.mean[7] = 0.0;
            }
            let (m, c) = kalman::predict(&t.mean, &t.cov);
            t.mean = m;
            t.cov = c;
        }

        // d. First association: the pool and the confident detections, score-fused IoU.
        let cost = self.cost(&pool, dets, &high, !s.mot20);
        let (matches, unmatched_pool, unmatched_high) = assign(&cost, high.len(), s.match_thresh);
        for (ti, di) in matches {
            let d = high[di];
            pool[ti].observe(&dets[d], frame);
            taken.push((d, pool[ti].id));
        }
        // e. Second association: the still-unmatched tracked ones and the unsure detections.
        let remaining: Vec<usize> = unmatched_pool.into_iter().filter(|&i| pool[i].state == State::Tracked).collect();
        let rest: Vec<Track> = remaining.iter().map(|&i| pool[i].clone()).collect();
        let cost = self.cost(&rest, dets, &low, false);
        let (matches2, unmatched_rest, _) = assign(&cost, low.len(), 0.5);
        for &(ri, di) in &matches2 {
            let d = low[di];
            let ti = remaining[ri];
            pool[ti].observe(&dets[d], frame);
            taken.push((d, pool[ti].id));
        }
        for ri in unmatched_rest {
            pool[remaining[ri]].state = State::Lost;
        }
        // f. Unconfirmed tracks and the confident detections left: confirmed or removed.
        let left_high: Vec<usize> = unmatched_high.iter().map(|&i| high[i]).collect();
        let cost = self.cost(&unconfirmed, dets, &left_high, !s.mot20);
        let (matches3, unmatched_unconf, unmatched_left) = assign(&cost, left_high.len(), 0.7);
        for &(ui, di) in &matches3 {
            let d = left_high[di];
            unconfirmed[ui].observe(&dets[d], frame);
            taken.push((d, unconfirmed[ui].id));
        }
        for ui in unmatched_unconf {
            unconfirmed[ui].state = State::Removed;
        }
        // g. New tracks: confirmed at once only on the first frame.
        let mut born = Vec::new();
        for di in unmatched_left {
            let d = &dets[left_high[di]];
            if d.score < s.new_track_thresh {
                continue;
            }
            let (mean, cov) = kalman::initiate(xywh(&d.bbox));
            let id = self.next_id;
            self.next_id += 1;
            born.push(Track { id, state: State::Tracked, activated: frame == 1, mean, cov, score: d.score, classes: HashMap::from([(d.class_id, d.score)]), frame, start_frame: frame });
            taken.push((left_high[di], id));
        }
        // h. Lists for the next frame; lost too long ago: removed; duplicates: the younger goes.
        let max_lost = u64::from(s.track_buffer);
        let mut tracked: Vec<Track> = Vec::new();
        let mut lost: Vec<Track> = Vec::new();
        for t in pool.into_iter().chain(unconfirmed).chain(born) {
            match t.state {
                State::Tracked => tracked.push(t),
                State::Lost if frame - t.frame <= max_lost => lost.push(t),
                _ => {}
            }
        }
        let mut drop_tracked = vec![false; tracked.len()];
        let mut drop_lost = vec![false; lost.len()];
        for (i, a) in tracked.iter().enumerate() {
            for (j, b) in lost.iter().enumerate() {
                if 1.0 - crate::paste::box_iou(&a.tlbr(), &b.tlbr()) < 0.15 {
                    if frame - a.start_frame > frame - b.start_frame {
                        drop_lost[j] = true;
                    } else {
                        drop_tracked[i] = true;
                    }
                }
            }
        }
        self.tracked = tracked.into_iter().zip(drop_tracked).filter(|(_, d)| !d).map(|(t, _)| t).collect();
        self.lost = lost.into_iter().zip(drop_lost).filter(|(_, d)| !d).map(|(t, _)| t).collect();

        taken.sort_unstable();
        let by_track: HashMap<u64, usize> = taken.iter().map(|&(d, id)| (id, d)).collect();
        let active = self.tracked.iter().filter(|t| t.activated).map(|t| (t.id, t.class_id(), by_track.get(&t.id).copied())).collect();
        FrameTracks { detection_track: taken, active }
    }

    /// `1 - IoU` of tracks × detections `idx`, fused with the detection score when asked.
    fn cost(&self, tracks: &[Track], dets: &[Detection], idx: &[usize], fuse: bool) -> Vec<Vec<f64>> {
        tracks
            .iter()
            .map(|t| {
                let tb = t.tlbr();
                idx.iter()
                    .map(|&d| {
                        let sim = crate::paste::box_iou(&tb, &dets[d].bbox);
                        if fuse { 1.0 - sim * dets[d].score } else { 1.0 - sim }
                    })
                    .collect()
            })
            .collect()
    }
}

/// Minimum-cost assignment of rows to `cols` columns where no pair above `limit` is
/// taken (LAPJV's `extend_cost` with `cost_limit`: each row and column may
/// instead pair with a dummy at `limit / 2`). Returns (matches, unmatched rows,
/// unmatched columns).
pub fn assign(cost: &[Vec<f64>], cols: usize, limit: f64) -> (Vec<(usize, usize)>, Vec<usize>, Vec<usize>) {
    let rows = cost.len();
    if rows == 0 || cols == 0 {
        return (Vec::new(), (0..rows).collect(), (0..cols).collect());
    }
    let n = rows + cols;
    let mut c = vec![vec![limit / 2.0; n]; n];
    // Dummy rows meet dummy columns at no cost.
    for row in c.iter_mut().skip(rows) {
        for x in row.iter_mut().skip(cols) {
            *x = 0.0;
        }
    }
    for i in 0..rows {
        c[i][..cols].copy_from_slice(&cost[i][..cols]);
    }
    let col_of_row = hungarian(&c);
    let mut matches = Vec::new();
    let mut row_done = vec![false; rows];
    let mut col_done = vec![false; cols];
    for (i, &j) in col_of_row.iter().enumerate().take(rows) {
        if j < cols && cost[i][j] <= limit {
            matches.push((i, j));
            row_done[i] = true;
            col_done[j] = true;
        }
    }
    let unmatched = |done: &[bool]| done.iter().enumerate().filter(|(_, d)| !**d).map(|(i, _)| i).collect();
    (matches, unmatched(&row_done), unmatched(&col_done))
}

/// The Hungarian algorithm (shortest augmenting paths with potentials) on a
/// square matrix: the column assigned to each row.
fn hungarian(c: &[Vec<f64>]) -> Vec<usize> {
    let n = c.len();
    let (mut u, mut v) = (vec![0.0; n + 1], vec![0.0; n + 1]);
    let (mut p, mut way) = (vec![0usize; n + 1], vec![0usize; n + 1]);
    for i in 1..=n {
        p[0] = i;
        let mut j0 = 0;
        let mut minv = vec![f64::INFINITY; n + 1];
        let mut used = vec![false; n + 1];
        loop {
            used[j0] = true;
            let i0 = p[j0];
            let (mut delta, mut j1) = (f64::INFINITY, 0);
            for j in 1..=n {
                if !used[j] {
                    let cur = c[i0 - 1][j - 1] - u[i0] - v[j];
                    if cur < minv[j] {
                        minv[j] = cur;
                        way[j] = j0;
                    }
                    if minv[j] < delta {
                        delta = minv[j];
                        j1 = j;
                    }
                }
            }
            for j in 0..=n {
                if used[j] {
                    u[p[j]] += delta;
                    v[j] -= delta;
                } else {
                    minv[j] -= delta;
                }
            }
            j0 = j1;
            if p[j0] == 0 {
                break;
            }
        }
        loop {
            let j1 = way[j0];
            p[j0] = p[j1];
            j0 = j1;
            if j0 == 0 {
                break;
            }
        }
    }
    let mut col_of_row = vec![0; n];
    for j in 1..=n {
        if p[j] > 0 {
            col_of_row[p[j] - 1] = j - 1;
        }
    }
    col_of_row
}

/// The constant-velocity Kalman filter of BoT-SORT on `[cx, cy, w, h]`.
mod kalman {
    use super::{Mat8, Vec8};

    const POS: f64 = 1.0 / 20.0;
    const VEL: f64 = 1.0 / 160.0;

    fn diag(d: &Vec8) -> Mat8 {
        let mut m = [[0.0; 8]; 8];
        for i in 0..8 {
            m[i][i] = d[i];
        }
        m
    }

    pub fn initiate(z: [f64; 4]) -> (Vec8, Mat8) {
        let (w, h) = (z[2], z[3]);
        let std = [2.0 * POS * w, 2.0 * POS * h, 2.0 * POS * w, 2.0 * POS * h, 10.0 * VEL * w, 10.0 * VEL * h, 10.0 * VEL * w, 10.0 * VEL * h];
        (
            [z[0], z[1], z[2], z[3], 0.0, 0.0, 0.0, 0.0],
            diag(&std.map(|s| s * s)),
        )
    }

    pub fn predict(mean: &Vec8, cov: &Mat8) -> (Vec8, Mat8) {
        let (w, h) = (mean[2], mean[3]);
        let q = [POS * w, POS * h, POS * w, POS * h, VEL * w, VEL * h, VEL * w, VEL * h].map(|s| s * s);
        let mut m = *mean;
        for i in 0..4 {
            m[i] += mean[i + 4];
        }
        // F P F^T with F = [[I, I], [0, I]].
        let mut fp = *cov;
        for i in 0..4 {
            for j in 0..8 {
                fp[i][j] += cov[i + 4][j];
            }
        }
        let mut p = fp;
        for i in 0..8 {
            for j in 0..4 {
                p[i][j] += fp[i][j + 4];
            }
        }
        for i in 0..8 {
            p[i][i] += q[i];
        }
        (m, p)
    }

    pub fn update(mean: &Vec8, cov: &Mat8, z: [f64; 4]) -> (Vec8, Mat8) {
        let (w, h) = (mean[2], mean[3]);
        let r = [POS * w, POS * h, POS * w, POS * h].map(|s| s * s);
        // S = H P H^T + R (the top-left 4x4 block), K = P H^T S^-1.
        let mut s = [[0.0; 4]; 4];
        for i in 0..4 {
            for j in 0..4 {
                s[i][j] = cov[i][j];
            }
            s[i][i] += r[i];
        }
        let s_inv = invert4(&s);
        let mut k = [[0.0; 4]; 8];
        for i in 0..8 {
            for j in 0..4 {
                k[i][j] = (0..4).map(|l| cov[i][l] * s_inv[l][j]).sum();
            }
        }
        let y: Vec<f64> = (0..4).map(|i| z[i] - mean[i]).collect();
        let mut m = *mean;
        for i in 0..8 {
            m[i] += (0..4).map(|j| k[i][j] * y[j]).sum::<f64>();
        }
        // P - K S K^T = P - K (H P).
        let mut p = *cov;
        for i in 0..8 {
            for j in 0..8 {
                p[i][j] -= (0..4).map(|l| k[i][l] * cov[l][j]).sum::<f64>();
            }
        }
        (m, p)
    }

    /// Gauss-Jordan with partial pivoting (S is symmetric positive definite).
    fn invert4(a: &[[f64; 4]; 4]) -> [[f64; 4]; 4] {
        let mut m = *a;
        let mut inv = [[0.0; 4]; 4];
        for (i, row) in inv.iter_mut().enumerate() {
            row[i] = 1.0;
        }
        for col in 0..4 {
            let pivot = (col..4).max_by(|&x, &y| m[x][col].abs().total_cmp(&m[y][col].abs())).unwrap_or(col);
            m.swap(col, pivot);
            inv.swap(col, pivot);
            let d = m[col][col];
            if d.abs() < 1e-12 {
                continue;
            }
            for j in 0..4 {
                m[col][j] /= d;
                inv[col][j] /= d;
            }
            for r in 0..4 {
                if r != col {
                    let f = m[r][col];
                    for j in 0..4 {
                        m[r][j] -= f * m[col][j];
                        inv[r][j] -= f * inv[col][j];
                    }
                }
            }
        }
        inv
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(x: f64, y: f64, score: f64) -> Detection {
        Detection { bbox: [x, y, x + 40.0, y + 80.0], score, class_id: 0 }
    }

    fn id_of(out: &FrameTracks, det: usize) -> Option<u64> {
        out.detection_track.iter().find(|(d, _)| *d == det).map(|(_, id)| *id)
    }

    #[test]
    fn a_target_moving_in_a_line_keeps_its_id_through_a_missed_frame() {
        let mut t = BotSort::new(TrackerSettings::default());
        let first = t.update(&[det(10.0, 20.0, 0.9)]);
        assert_eq!(id_of(&first, 0), Some(1));
        assert_eq!(first.active, [(1, 0, Some(0))], "confirmed on the first frame");
        for f in 1..12 {
            let x = 10.0 + 6.0 * f as f64;
            let out = if f == 6 { t.update(&[]) } else { t.update(&[det(x, 20.0, 0.9)]) };
            if f == 6 {
                assert!(out.active.is_empty(), "lost on the frame without a detection");
            } else {
                assert_eq!(id_of(&out, 0), Some(1), "frame {f}");
                assert_eq!(out.active.len(), 1);
            }
        }
    }

    #[test]
    fn two_crossing_targets_keep_their_ids() {
        let mut t = BotSort::new(TrackerSettings::default());
        let mut seen = Vec::new();
        for f in 0..30 {
            let a = det(10.0 + 8.0 * f as f64, 100.0, 0.9); // left to right
            let b = det(250.0 - 8.0 * f as f64, 104.0, 0.85); // right to left
            let out = t.update(&[a, b]);
            seen.push((id_of(&out, 0), id_of(&out, 1)));
        }
        assert_eq!(seen[0], (Some(1), Some(2)));
        assert!(seen.iter().all(|s| *s == (Some(1), Some(2))), "{seen:?}");
    }

    #[test]
    fn unsure_and_weak_detections_do_not_start_tracks() {
        let mut t = BotSort::new(TrackerSettings::default());
        // 0.65 is confident (> 0.6) but under new_track_thresh 0.7; 0.3 is unsure; 0.05 is dropped.
        let out = t.update(&[det(0.0, 0.0, 0.65), det(100.0, 0.0, 0.3), det(200.0, 0.0, 0.05)]);
        assert!(out.detection_track.is_empty() && out.active.is_empty(), "{out:?}");
        // A new track after the first frame is confirmed only by a match on the next one.
        let mut t = BotSort::new(TrackerSettings::default());
        t.update(&[det(0.0, 0.0, 0.9)]);
        let born = t.update(&[det(0.0, 0.0, 0.9), det(300.0, 0.0, 0.9)]);
        assert_eq!(id_of(&born, 1), Some(2));
        assert_eq!(born.active.iter().map(|a| a.0).collect::<Vec<_>>(), [1], "not yet confirmed");
        let next = t.update(&[det(2.0, 0.0, 0.9), det(302.0, 0.0, 0.9)]);
        assert_eq!(next.active.iter().map(|a| a.0).collect::<Vec<_>>(), [1, 2]);
    }

    #[test]
    fn a_track_takes_its_score_weighted_class() {
        let mut t = BotSort::new(TrackerSettings::default());
        let with = |class_id, score| Detection { class_id, ..det(0.0, 0.0, score) };
        t.update(&[with(3, 0.9)]);
        t.update(&[with(5, 0.7)]);
        let out = t.update(&[with(5, 0.7)]);
        assert_eq!(out.active, [(1, 5, Some(0))], "0.7 + 0.7 for class 5 over 0.9 for class 3");
    }

    #[test]
    fn assignment_respects_the_cost_limit() {
        let cost = vec![vec![0.1, 0.9], vec![0.2, 0.95]];
        let (m, ur, uc) = assign(&cost, 2, 0.8);
        assert_eq!(m, [(0, 0)]);
        assert_eq!((ur, uc), (vec![1], vec![1]));
        let (m, _, _) = assign(&[vec![0.4, 0.1], vec![0.1, 0.4]], 2, 0.8);
        assert_eq!(m, [(0, 1), (1, 0)]);
        assert_eq!(assign(&[], 3, 0.5), (vec![], vec![], vec![0, 1, 2]));
    }

    #[test]
    fn settings_take_updates_and_refuse_what_is_not_implemented() {
        let s = TrackerSettings::parse(Some(&serde_json::json!({"track_buffer": 10, "match_thresh": 0.7, "fp16": true}))).unwrap();
        assert_eq!((s.track_buffer, s.match_thresh), (10, 0.7));
        let e = TrackerSettings::parse(Some(&serde_json::json!({"with_reid": true}))).unwrap_err();
        assert!(e.contains("with_reid") && e.contains("not implemented"), "{e}");
        let e = TrackerSettings::parse(Some(&serde_json::json!({"cmc_method": "sparseOptFlow"}))).unwrap_err();
        assert!(e.contains("cmc_method"), "{e}");
        assert!(TrackerSettings::parse(Some(&serde_json::json!({"track_bufer": 3}))).is_err());
        assert_eq!(TrackerSettings::default().describe()["with_reid"], false);
    }
}
